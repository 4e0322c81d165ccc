"""Telemetry bundles: the replayable record of an incident, as a directory.

Layout (schema version 1):

- `manifest.json`: `schema_version`, `created`, `window` (`start`, `end`, ISO 8601 UTC),
  `services`, `topology` (service -> list of services it calls), `namespace`, `source`
  (where the bundle came from), `prometheus` (`version` of the Prometheus the metrics came
  from, when it told; replay follows that version's PromQL semantics) and `ground_truth` (only for simulated or archived incidents:
  `root_cause_service`, `fault_kind`, `onset`, `remediation`) or null.
- `metrics.parquet`: long form, columns `timestamp` (UTC, millisecond precision), `metric`
  (name), `labels` (JSON object string, sorted keys, without `__name__`), `value` (float64).
- `logs.jsonl`: `{"timestamp", "labels": {...}, "line"}` per line.
- `events.jsonl`: Kubernetes events `{"timestamp", "namespace", "kind", "name", "type",
  "reason", "message", "count"}`.
- `changes.jsonl`: deploys, config and flag changes `{"timestamp", "service", "kind",
  "description", "author", "details"}`.
- `context.jsonl`: planned events `{"start", "end", "kind", "title", "services", "details"}`.

Investigators must never read `ground_truth`; only `evals/` compares against it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from incidentbook.errors import BundleError

SCHEMA_VERSION = 1
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
JSONL_FILES = ("logs", "events", "changes", "context")
METRIC_COLUMNS = ["timestamp", "metric", "labels", "value"]


def labels_key(labels: Mapping[str, str]) -> str:
    """The canonical `labels` column value: JSON, sorted keys, no `__name__`."""
    return json.dumps({k: str(v) for k, v in sorted(labels.items()) if k != "__name__"},
                      separators=(",", ":"), sort_keys=True)


def to_utc(value: Any) -> pd.Timestamp:
    """A timezone-aware UTC Timestamp from a datetime, ISO string or unix seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return pd.Timestamp(value, unit="s", tz="UTC")
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def iso(value: Any) -> str:
    """ISO 8601 UTC with millisecond precision and a `Z`, e.g. `2026-11-23T10:00:00.000Z`."""
    return to_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def normalise_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Coerce a metrics frame to the bundle's column types and sort it (metric, labels, time)."""
    missing = [c for c in METRIC_COLUMNS if c not in df.columns]
    if missing:
        raise BundleError(f"metrics frame lacks columns {missing}; expected {METRIC_COLUMNS}")
    out = df[METRIC_COLUMNS].copy()
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).astype("datetime64[ms, UTC]")
    out["metric"] = out["metric"].astype(str)
    out["labels"] = out["labels"].astype(str)
    out["value"] = out["value"].astype("float64")
    return out.sort_values(["metric", "labels", "timestamp"], kind="stable").reset_index(drop=True)


def _json_default(o: Any) -> Any:
    if isinstance(o, (pd.Timestamp, datetime)):
        return iso(o)
    if isinstance(o, float) and math.isnan(o):
        return None
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, default=_json_default, sort_keys=True) + "\n")


def write_bundle(
    out: str | Path,
    manifest: Mapping[str, Any],
    metrics: pd.DataFrame,
    logs: Iterable[Mapping[str, Any]] = (),
    events: Iterable[Mapping[str, Any]] = (),
    changes: Iterable[Mapping[str, Any]] = (),
    context: Iterable[Mapping[str, Any]] = (),
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path:
    """Write a bundle directory at `out` and return its path.

    `manifest` needs at least `window` (`start`, `end`); `schema_version` and `created` are
    filled in. Raises BundleError when the bundle is over `max_bytes`.
    """
    out = Path(out)
    if "window" not in manifest or not {"start", "end"} <= set(manifest["window"]):
        raise BundleError("bundle manifest needs window.start and window.end")
    out.mkdir(parents=True, exist_ok=True)
    m = dict(manifest)
    m["schema_version"] = SCHEMA_VERSION
    m.setdefault("created", iso(datetime.now(timezone.utc)))
    m["window"] = {"start": iso(m["window"]["start"]), "end": iso(m["window"]["end"])}
    m.setdefault("services", [])
    m.setdefault("topology", {})
    m.setdefault("ground_truth", None)
    normalise_metrics(metrics).to_parquet(out / "metrics.parquet", index=False)
    for name, rows in zip(JSONL_FILES, (logs, events, changes, context)):
        _write_jsonl(out / f"{name}.jsonl", rows)
    (out / "manifest.json").write_text(json.dumps(m, indent=2, default=_json_default, sort_keys=True) + "\n",
                                       encoding="utf-8")
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    if size > max_bytes:
        raise BundleError(f"bundle {out} is {size} bytes, over the budget of {max_bytes}; narrow the window or the services")
    return out


@dataclass
class Bundle:
    """A bundle directory opened for reading. Frames are loaded on first use."""

    path: Path
    manifest: dict[str, Any]

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        w = self.manifest["window"]
        return to_utc(w["start"]), to_utc(w["end"])

    @property
    def services(self) -> list[str]:
        return list(self.manifest.get("services", []))

    @property
    def topology(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.manifest.get("topology", {}).items()}

    @cached_property
    def metrics(self) -> pd.DataFrame:
        p = self.path / "metrics.parquet"
        try:
            df = pd.read_parquet(p)
        except FileNotFoundError:
            raise BundleError(f"{p} is missing; re-export the bundle") from None
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise BundleError(f"{p} is not a readable parquet file ({e}); re-export the bundle") from None
        missing = [c for c in METRIC_COLUMNS if c not in df.columns]
        if missing:
            raise BundleError(f"{p} lacks columns {missing}; expected {METRIC_COLUMNS}")
        return df

    def _jsonl(self, name: str) -> list[dict[str, Any]]:
        p = self.path / f"{name}.jsonl"
        if not p.exists():
            return []
        rows = []
        with p.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise BundleError(f"{p}:{n}: not valid JSON ({e.msg}); fix or remove the line") from None
        return rows

    @cached_property
    def logs(self) -> list[dict[str, Any]]:
        return self._jsonl("logs")

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        return self._jsonl("events")

    @cached_property
    def changes(self) -> list[dict[str, Any]]:
        return self._jsonl("changes")

    @cached_property
    def context(self) -> list[dict[str, Any]]:
        return self._jsonl("context")


def open_bundle(path: str | Path) -> Bundle:
    """Open and validate a bundle directory (manifest present, schema version supported)."""
    p = Path(path)
    mf = p / "manifest.json"
    if not p.is_dir():
        raise BundleError(f"{p} is not a bundle directory; give the directory holding manifest.json")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{mf} is missing; this is not a bundle (export one with `incidentbook bundle export`)") from None
    except json.JSONDecodeError as e:
        raise BundleError(f"{mf} is not valid JSON ({e.msg}); re-export the bundle") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{mf} is not a JSON object; re-export the bundle")
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise BundleError(f"{mf} has no integer schema_version; re-export the bundle")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{p} has bundle schema version {version}, newer than this incidentbook supports "
            f"({SCHEMA_VERSION}); upgrade incidentbook"
        )
    if "window" not in manifest:
        raise BundleError(f"{mf} has no window; re-export the bundle")
    window = manifest["window"]
    try:
        to_utc(window["start"]), to_utc(window["end"])
    except (TypeError, KeyError, ValueError):
        raise BundleError(f"{mf} has an unreadable window {window!r}; it needs ISO 8601 start and end") from None
    return Bundle(path=p, manifest=manifest)
