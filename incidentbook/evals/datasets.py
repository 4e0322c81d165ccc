"""Import public RCA datasets in the common "wide CSV" layout as telemetry bundles.

Layout: one time column (unix seconds or ISO 8601; named `time` or `timestamp`, else the first
column) and one column per `<service>_<metric>`, e.g. `cartservice_cpu`, `frontend_latency-90`.
The split is at the first underscore. Each column becomes the series `<metric>{service="<service>"}`
(metric names sanitised to Prometheus rules). The fault injection time and root cause given on
the command line become the bundle's ground truth, so the bundle is an eval case.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from incidentbook.errors import BadInput
from incidentbook.telemetry.bundle import iso, labels_key, to_utc, write_bundle

TIME_COLUMNS = ("time", "timestamp", "ts", "datetime")


def _metric_name(raw: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_:]", "_", raw.strip()).strip("_") or "value"
    return name if re.match(r"[a-zA-Z_:]", name) else f"m_{name}"


def _times(col: pd.Series, where: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col):
        unit = "ms" if float(col.max()) > 1e11 else "s"  # millisecond epochs are common too
        return pd.to_datetime(col, unit=unit, utc=True)
    try:
        return pd.to_datetime(col, utc=True)
    except (ValueError, TypeError):
        raise BadInput(f"{where}: the time column holds values like {str(col.iloc[0])!r}; use unix seconds or ISO 8601") from None


def import_wide_csv(path: str | Path, out: str | Path, inject_time: str, root_cause: str,
                    namespace: str = "", remediation: str = "") -> Path:
    """Convert the wide CSV at `path` into a bundle at `out`; `root_cause` is `SERVICE[:KIND]`."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {path} as CSV ({e}); give a comma-separated file with a header row") from None
    if df.shape[1] < 2 or df.empty:
        raise BadInput(f"{path} needs a time column and at least one <service>_<metric> column with rows")
    tcol = next((c for c in df.columns if str(c).strip().lower() in TIME_COLUMNS), df.columns[0])
    t = _times(df[tcol], str(path))
    frames, services = [], []
    for col in df.columns:
        if col == tcol:
            continue
        svc, sep, metric = str(col).partition("_")
        if not sep or not svc or not metric:
            raise BadInput(f"{path}: column {col!r} is not <service>_<metric>; rename it, e.g. cart_cpu")
        values = pd.to_numeric(df[col], errors="coerce")
        frames.append(pd.DataFrame({"timestamp": t, "metric": _metric_name(metric),
                                    "labels": labels_key({"service": svc, **({"namespace": namespace} if namespace else {})}),
                                    "value": values}).dropna(subset=["value"]))
        if svc not in services:
            services.append(svc)
    service, _, kind = root_cause.partition(":")
    if service not in services:
        raise BadInput(f"--root-cause {root_cause!r}: {service!r} is not a service of {path} ({', '.join(services)})")
    try:
        onset = to_utc(float(inject_time) if re.fullmatch(r"\d+(\.\d+)?", inject_time) else inject_time)
    except ValueError:
        raise BadInput(f"--inject-time {inject_time!r}: use unix seconds or ISO 8601") from None
    start, end = t.min(), t.max()
    if not start <= onset <= end:
        raise BadInput(f"--inject-time {iso(onset)} is outside the data ({iso(start)} .. {iso(end)})")
    step = float(t.sort_values().diff().median().total_seconds()) if len(t) > 1 else 1.0
    action, _, target = remediation.partition(":")
    manifest: dict[str, Any] = {
        "window": {"start": start, "end": end + pd.Timedelta(seconds=step)}, "services": services,
        "topology": {}, "namespace": namespace, "source": f"dataset:{path.name}", "scrape_interval_s": step,
        "ground_truth": {"root_cause_service": service, "fault_kind": kind or "unknown", "onset": iso(onset),
                         "is_incident": kind != "planned_load",
                         "remediation": {"action": action, "target": target or service} if action else None},
    }
    return write_bundle(out, manifest, pd.concat(frames, ignore_index=True))
