"""Write a bundle's metrics as OpenMetrics text, the format `promtool tsdb create-blocks-from
openmetrics` backfills into a Prometheus data directory.

No `# TYPE` lines are written: every family is `unknown`, which promtool accepts for any metric
name (declaring `counter` would force the `_total` suffix rules on names that lack it).
NaN values are written as `NaN` (Prometheus stores them as ordinary NaN samples, as the replay
engine treats them); rows with the same series and timestamp keep the last value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from incidentbook.errors import BadInput
from incidentbook.telemetry.bundle import METRIC_COLUMNS

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(v: float) -> str:
    """A sample value as OpenMetrics text: shortest round-trip decimal, `NaN`, `+Inf`, `-Inf`."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _format_ts(ms: np.ndarray) -> list[str]:
    """Millisecond timestamps as seconds with up to three decimals (exact, no float rounding)."""
    out = []
    for t in ms.tolist():
        sec, frac = divmod(int(t), 1000)
        out.append(f"{sec}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(sec))
    return out


def _series_lines(metrics: pd.DataFrame) -> Iterator[str]:
    df = metrics[METRIC_COLUMNS]
    ts = pd.to_datetime(df["timestamp"], utc=True)
    ms = ts.dt.tz_convert(None).astype("datetime64[ms]").astype("int64")
    work = pd.DataFrame({"metric": df["metric"].astype(str).to_numpy(), "labels": df["labels"].astype(str).to_numpy(),
                         "ms": np.asarray(ms, dtype="int64"), "value": df["value"].astype("float64").to_numpy()})
    work = work.drop_duplicates(["metric", "labels", "ms"], keep="last")
    work = work.sort_values(["metric", "labels", "ms"], kind="stable")
    for (metric, labels), grp in work.groupby(["metric", "labels"], sort=False):
        if not _METRIC_NAME.match(metric):
            raise BadInput(f"metric name {metric!r} is not a valid Prometheus name; rename it in the bundle")
        try:
            lab = json.loads(labels) if labels else {}
        except json.JSONDecodeError as e:
            raise BadInput(f"labels {labels!r} of {metric} are not JSON ({e.msg}); re-export the bundle") from None
        parts = []
        for k in sorted(lab):
            if k == "__name__" or lab[k] in ("", None):
                continue
            if not _LABEL_NAME.match(k):
                raise BadInput(f"label name {k!r} of {metric} is not a valid Prometheus label name; rename it")
            parts.append(f'{k}="{escape_label_value(str(lab[k]))}"')
        head = metric + ("{" + ",".join(parts) + "}" if parts else "")
        for t, v in zip(_format_ts(grp["ms"].to_numpy()), grp["value"].tolist()):
            yield f"{head} {format_value(v)} {t}\n"


def to_openmetrics(metrics: pd.DataFrame) -> str:
    """OpenMetrics text for a long-form bundle metrics frame (timestamp, metric, labels, value)."""
    return "".join(_series_lines(metrics)) + "# EOF\n"


def write_openmetrics(metrics: pd.DataFrame, path: str | Path) -> Path:
    """Write `to_openmetrics(metrics)` to `path` line by line and return the path."""
    p = Path(path)
    with p.open("w", encoding="utf-8") as f:
        for line in _series_lines(metrics):
            f.write(line)
        f.write("# EOF\n")
    return p
