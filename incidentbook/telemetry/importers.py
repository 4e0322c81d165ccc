"""Import long-form metrics (CSV or Parquet) and a topology file as a replayable bundle.

Long form: one row per sample, columns `timestamp` (unix seconds or milliseconds, or ISO 8601),
`service`, `metric`, `value`, and optionally `statistic` (e.g. CloudWatch's `Average`, `p99`,
`Sum`). Any other column becomes a label of the series (its name must be a Prometheus label
name). Each (service, metric, statistic, labels) is one series `<metric>{service=..., statistic=...}`.

Topology (JSON or YAML): a mapping `{caller: [callee, ...]}`, a list of `[caller, callee]`
pairs, or `{"edges": [{"source": caller, "target": callee}, ...]}`.

The baseline: an investigator without alerts takes the first half of the window as the
baseline (with alerts, the time before the first alert). An import therefore needs to know
when the incident started: from `alerts/` payloads, `--onset`, or the case's truth record
(`onset`). When the data runs on long after the onset, the window is cut so that the baseline
ends before the onset; when nothing tells the onset, the import is refused.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from incidentbook.errors import BadInput
from incidentbook.telemetry.bundle import iso, labels_key, to_utc, write_bundle

REQUIRED = ("timestamp", "service", "metric", "value")
OPTIONAL = ("statistic",)
MIN_BASELINE = pd.Timedelta("10min")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _metric_name(raw: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_:]", "_", raw.strip()).strip("_") or "value"
    return name if re.match(r"[a-zA-Z_:]", name) else f"m_{name}"


def check_name(value: Any, where: str, field: str) -> str:
    """A service (or label) value that is safe to use: non-empty, no control characters or lone surrogates."""
    if not isinstance(value, str):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            raise BadInput(f"{where}: {field} is empty; every row needs a {field}")
        value = str(value)
    s = value.strip()
    if not s:
        raise BadInput(f"{where}: {field} is empty; every row needs a {field}")
    bad = next((ch for ch in s if ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF), None)
    if bad is not None:
        raise BadInput(f"{where}: {field} {s[:40]!r} holds the control character or lone surrogate U+{ord(bad):04X}; "
                       "remove it from the file")
    if len(s) > 256:
        raise BadInput(f"{where}: {field} is {len(s)} characters; at most 256")
    return s


def read_long_form(path: str | Path, kind: str | None = None) -> pd.DataFrame:
    """Read and validate a long-form metrics file; BadInput names the row and field.

    `kind`: "csv" or "parquet"; by default the file's extension decides (.parquet/.pq, else CSV).
    """
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{p} does not exist; give the long-form metrics file (CSV or Parquet)")
    kind = kind or ("parquet" if p.suffix.lower() in (".parquet", ".pq") else "csv")
    try:
        if kind == "parquet":
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p, dtype={"service": "string", "metric": "string", "statistic": "string"},
                             keep_default_na=False, na_values=[""], encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{p} is not UTF-8 text; save it as UTF-8 CSV") from None
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise BadInput(f"cannot read {p} ({str(e).splitlines()[0][:160]}); give a CSV with a header row or a Parquet file") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise BadInput(f"{p} lacks the column {missing[0]!r}; long form needs columns "
                       f"{', '.join(REQUIRED)} (and optionally statistic); it has: {', '.join(df.columns[:12])}")
    for c in df.columns:
        if c not in REQUIRED + OPTIONAL and not _LABEL.fullmatch(c):
            raise BadInput(f"{p}: column {c[:40]!r} is not a valid label name; rename it to letters, digits and _")
    if df.empty:
        raise BadInput(f"{p} has a header but no rows; export the samples too")
    return _validate(df, str(p))


def _times(col: pd.Series, where: str) -> pd.Series:
    empty = col.isna() | (col.astype(str).str.strip() == "")
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0]) + 2  # 1-based, after the header
        raise BadInput(f"{where}: row {row}: timestamp is empty; every row needs a time (unix seconds or ISO 8601)")
    num = pd.to_numeric(col, errors="coerce")
    if num.notna().any() and num.isna().any():  # unix times with a stray text value in between
        row = int(np.flatnonzero(num.isna().to_numpy())[0])
        raise BadInput(f"{where}: row {row + 2}: cannot read timestamp {str(col.iloc[row])[:40]!r}; "
                       "the column holds unix times, so write this one as a unix time too")
    if num.notna().all():
        if not np.isfinite(num.to_numpy(dtype=float)).all():
            raise BadInput(f"{where}: a timestamp is not finite; use unix seconds or ISO 8601")
        unit = "ms" if float(num.abs().max()) > 1e11 else "s"  # millisecond epochs are common too
        return pd.to_datetime(num, unit=unit, utc=True)
    out = pd.to_datetime(col.astype(str), utc=True, errors="coerce", format="mixed")
    bad = out.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise BadInput(f"{where}: row {row + 2}: cannot read timestamp {str(col.iloc[row])[:40]!r}; use unix seconds or ISO 8601")
    return out


def _validate(df: pd.DataFrame, where: str) -> pd.DataFrame:
    out = pd.DataFrame({"timestamp": _times(df["timestamp"], where)})
    for c in ("service", "metric"):
        col = df[c]
        checked = {}
        values = []
        for i, v in enumerate(col.tolist()):
            key = v if isinstance(v, str) else repr(v)
            if key not in checked:
                checked[key] = check_name(v, f"{where}: row {i + 2}", c)
            values.append(checked[key])
        out[c] = values
    out["statistic"] = [check_name(v, f"{where}: row {i + 2}", "statistic") if isinstance(v, str) and v.strip() else ""
                        for i, v in enumerate(df["statistic"].tolist())] if "statistic" in df.columns else ""
    vals = pd.to_numeric(df["value"], errors="coerce")
    bad = vals.isna() & df["value"].notna() & (df["value"].astype(str).str.strip().str.lower() != "nan")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise BadInput(f"{where}: row {row + 2}: value {str(df['value'].iloc[row])[:40]!r} is not a number")
    out["value"] = vals.astype("float64")
    extra = [c for c in df.columns if c not in REQUIRED + OPTIONAL]
    for c in extra:
        out[f"label:{c}"] = ["" if (v is None or (isinstance(v, float) and np.isnan(v))) else check_name(v, f"{where}: row {i + 2}", c)
                             for i, v in enumerate(df[c].tolist())]
    keys = ["service", "metric", "statistic", *[f"label:{c}" for c in extra]]
    # time must move forward within each series, in file order: a reordered export is usually a broken one
    diffs = out.groupby(keys, sort=False)["timestamp"].diff()
    back = diffs.notna() & (diffs <= pd.Timedelta(0))
    if back.any():
        row = int(np.flatnonzero(back.to_numpy())[0])
        r = out.iloc[row]
        what = "repeats" if diffs.iloc[row] == pd.Timedelta(0) else "goes backwards"
        raise BadInput(f"{where}: row {row + 2}: time {what} for series {r['metric']}{{service={r['service']!r}"
                       f"{', statistic=' + repr(r['statistic']) if r['statistic'] else ''}}} ({iso(r['timestamp'])}); "
                       "sort the rows by timestamp and drop duplicates")
    return out.dropna(subset=["value"]).reset_index(drop=True)


def read_topology(path: str | Path | None) -> dict[str, list[str]]:
    """A caller -> callees mapping from a JSON or YAML topology file (see the module docstring)."""
    if path is None:
        return {}
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"--topology {p} does not exist; give a JSON or YAML file of caller -> callees") from None
    except UnicodeDecodeError:
        raise BadInput(f"--topology {p} is not UTF-8 text") from None
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as e:  # json and yaml raise their own error types
        raise BadInput(f"--topology {p} is not valid {'YAML' if p.suffix.lower() in ('.yaml', '.yml') else 'JSON'} "
                       f"({str(e).splitlines()[0][:120]})") from None
    where = f"--topology {p}"
    edges: list[tuple[Any, Any]] = []
    if isinstance(doc, Mapping) and "edges" in doc:
        items = doc["edges"]
        if not isinstance(items, list):
            raise BadInput(f"{where}: edges must be a list of {{source, target}} objects")
        for n, e in enumerate(items):
            if not isinstance(e, Mapping) or not {"source", "target"} <= set(e):
                raise BadInput(f"{where}: edges[{n}] needs source and target")
            edges.append((e["source"], e["target"]))
    elif isinstance(doc, Mapping):
        for k, v in doc.items():
            if v is None:
                v = []
            if not isinstance(v, list):
                raise BadInput(f"{where}: {str(k)[:40]!r} must map to a list of callees, got {type(v).__name__}")
            edges.append((k, None))
            edges += [(k, x) for x in v]
    elif isinstance(doc, list):
        for n, e in enumerate(doc):
            if not isinstance(e, (list, tuple)) or len(e) != 2:
                raise BadInput(f"{where}: item {n} must be a [caller, callee] pair")
            edges.append((e[0], e[1]))
    else:
        raise BadInput(f"{where}: expected a mapping of caller -> callees, a list of pairs, or {{edges: [...]}}")
    topo: dict[str, list[str]] = {}
    for a, b in edges:
        src = check_name(a, where, "caller")
        topo.setdefault(src, [])
        if b is not None:
            dst = check_name(b, where, "callee")
            topo.setdefault(dst, [])
            if dst not in topo[src]:
                topo[src].append(dst)
    return topo


def _alert_payloads(alerts_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    if not alerts_dir.is_dir():
        raise BadInput(f"--alerts {alerts_dir} is not a directory; give the directory of Alertmanager webhook payloads")
    out = []
    for p in sorted(alerts_dir.glob("*.json")):
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise BadInput(f"--alerts {p} is not valid JSON; fix or remove it") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
            raise BadInput(f"--alerts {p} is not an Alertmanager webhook payload (no alerts list)")
        out.append((p, doc))
    if not out:
        raise BadInput(f"--alerts {alerts_dir} holds no *.json payloads")
    return out


def _first_alert(payloads: Iterable[tuple[Path, dict[str, Any]]]) -> pd.Timestamp | None:
    times = []
    for _, doc in payloads:
        for a in doc["alerts"]:
            t = a.get("startsAt") if isinstance(a, dict) else None
            if t:
                try:
                    times.append(to_utc(t))
                except (ValueError, TypeError):
                    continue
    return min(times) if times else None


def derive_window(start: pd.Timestamp, end: pd.Timestamp, onset: pd.Timestamp | None,
                  first_alert: pd.Timestamp | None) -> tuple[pd.Timestamp, pd.Timestamp, str]:
    """(start, end, why): a window whose baseline ends before the onset; BadInput when that is impossible.

    Without alerts the baseline is the window's first half, so the end is cut to at most
    `onset + (onset - start)`. With alerts it is the time before the first alert (at least a quarter).
    """
    anchor = onset if onset is not None else first_alert
    if anchor is None:
        raise BadInput("cannot tell where the baseline ends: no alerts/, no --onset and no onset in the truth; "
                       "pass --onset TIME (when the incident started) or --alerts DIR (docs/evals.md)")
    if not start <= anchor <= end:
        raise BadInput(f"the onset {iso(anchor)} is outside the data ({iso(start)} .. {iso(end)}); fix --onset or the truth")
    if anchor - start < MIN_BASELINE:
        raise BadInput(f"the onset {iso(anchor)} is {int((anchor - start).total_seconds())} s after the data starts; "
                       f"an investigator needs at least {int(MIN_BASELINE.total_seconds() // 60)} minutes of baseline")
    if first_alert is not None:
        # the investigator's baseline: before first alert - 15 min, but at least the first quarter
        cut_max = start + (anchor - start) * 4  # keeps the quarter-window floor before the onset
        if end > cut_max:
            return start, cut_max, "cut so that the first quarter of the window ends before the onset"
        return start, end, "alerts/"
    limit = anchor + (anchor - start)
    if end > limit:
        return start, limit, "cut so that the first half of the window (the baseline without alerts) ends at the onset"
    return start, end, "onset"


def build_long_form_bundle(frame: pd.DataFrame, out: str | Path, topology: Mapping[str, list[str]] | None = None,
                           *, onset: Any = None, alerts_dir: str | Path | None = None,
                           changes: Iterable[Mapping[str, Any]] = (), namespace: str = "",
                           source: str = "import:long-form", overwrite: bool = False) -> Path:
    """Write a bundle at `out` from a validated long-form frame (see `read_long_form`)."""
    out = Path(out)
    label_cols = [c for c in frame.columns if c.startswith("label:")]
    names = frame["metric"].map(_metric_name)
    lab_rows = []
    stat = frame["statistic"].tolist() if "statistic" in frame.columns else [""] * len(frame)
    cache: dict[tuple[str, ...], str] = {}
    extra_vals = [frame[c].tolist() for c in label_cols]
    for i, svc in enumerate(frame["service"].tolist()):
        key = (svc, stat[i], *(v[i] for v in extra_vals))
        if key not in cache:
            labels = {"service": svc}
            if stat[i]:
                labels["statistic"] = stat[i]
            for c, v in zip(label_cols, key[2:]):
                if v:
                    labels[c[len("label:"):]] = v
            if namespace:
                labels["namespace"] = namespace
            cache[key] = labels_key(labels)
        lab_rows.append(cache[key])
    metrics = pd.DataFrame({"timestamp": frame["timestamp"], "metric": names, "labels": lab_rows, "value": frame["value"]})
    t = frame["timestamp"].sort_values()
    start = t.iloc[0]
    step_td = t.drop_duplicates().diff().median() if t.nunique() > 1 else pd.Timedelta(seconds=60)
    step = float(step_td.total_seconds())
    end = t.iloc[-1] + pd.Timedelta(seconds=step)
    payloads = _alert_payloads(Path(alerts_dir)) if alerts_dir else []
    first = _first_alert(payloads)
    onset_ts = None
    if onset is not None and onset != "":
        try:
            onset_ts = to_utc(float(onset) if re.fullmatch(r"\d+(\.\d+)?", str(onset)) else onset)
        except (ValueError, TypeError):
            raise BadInput(f"--onset {onset!r}: use unix seconds or ISO 8601") from None
    w_start, w_end, why = derive_window(start, end, onset_ts, first)
    metrics = metrics[(metrics.timestamp >= w_start) & (metrics.timestamp < w_end)]
    services = sorted(set(frame["service"]) | set(topology or {}))
    manifest: dict[str, Any] = {"window": {"start": w_start, "end": w_end}, "services": services,
                                "topology": {k: list(v) for k, v in (topology or {}).items()}, "namespace": namespace,
                                "source": source, "scrape_interval_s": step, "ground_truth": None,
                                "window_from": why}
    if not overwrite and out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} exists and is not empty; remove it or choose another --out")
    write_bundle(out, manifest, metrics, changes=list(changes))
    if payloads:
        (out / "alerts").mkdir(exist_ok=True)
        for p, _ in payloads:
            shutil.copyfile(p, out / "alerts" / p.name)
    return out


def read_changes(path: str | Path | None) -> list[dict[str, Any]]:
    """Changes (deploys, config, flags) from a JSONL file, as `changes.jsonl` holds them."""
    if path is None:
        return []
    p = Path(path)
    rows = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise BadInput(f"--changes {p}: cannot read it as UTF-8 JSON Lines") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInput(f"--changes {p}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or "timestamp" not in row or "service" not in row:
            raise BadInput(f"--changes {p}:{n}: a change needs timestamp and service")
        rows.append(row)
    return rows


def import_long_form(path: str | Path, out: str | Path, topology: str | Path | None = None, *,
                     kind: str | None = None, onset: Any = None, alerts_dir: str | Path | None = None,
                     changes: str | Path | None = None, namespace: str = "") -> Path:
    """Convert a long-form metrics file (+ topology, alerts, changes) into a bundle at `out`.

    The onset that places the baseline comes from `onset` (the caller may take it from the case's
    truth record: `incidentbook.evals.truth.onset_of`), else the first alert in `alerts_dir`.
    """
    frame = read_long_form(path, kind)
    topo = read_topology(topology)
    return build_long_form_bundle(frame, out, topo, onset=onset, alerts_dir=alerts_dir, changes=read_changes(changes),
                                  namespace=namespace, source=f"import:{Path(path).name}")
