"""ReplaySource: answer PromQL from a telemetry bundle, as if its Prometheus were still there.

    src = ReplaySource("bundles/INC-42")
    src.query_range('sum by (service) (rate(http_requests_total[5m]))', start, end, step=30)
    src.query_raw('up == 0', time=end)          # the /api/v1/query `data` object

Semantics follow Prometheus 3.x by default, or 2.x (`promql="2"`): the version a bundle records
(`manifest.json` `prometheus.version`), else `[replay] promql` in incidentbook.toml, else 3.
Queries using anything not implemented raise UnsupportedQuery naming the feature; malformed
PromQL raises BadInput with the parser's text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from incidentbook.errors import BadInput
from incidentbook.telemetry.base import TimeLike
from incidentbook.telemetry.bundle import open_bundle, to_utc
from incidentbook.telemetry.promql import (
    DEFAULT_VERSION,
    FEATURES,
    MAX_POINTS,
    SUBQUERY_STEP_MS,
    VERSIONS,
    SeriesStore,
    evaluate_instant,
    evaluate_range,
    instant_query,
    range_query,
)
from incidentbook.telemetry.promql.values import Matrix, Scalar, String, Vector

DEFAULT_MIN_STEP_S = 15.0


def to_ms(value: TimeLike) -> int:
    """Unix milliseconds from a datetime, pandas Timestamp, ISO string or unix seconds."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise BadInput(f"time {value!r} is not finite; give a unix time or an ISO 8601 string")
        return int(round(float(value) * 1000))
    try:
        return int(to_utc(value).value // 1_000_000)
    except (ValueError, TypeError) as e:
        raise BadInput(f"cannot read time {value!r} ({e}); give a unix time or an ISO 8601 string") from None


def to_step_ms(step: Any) -> int:
    """A step in ms from seconds (number), a timedelta, or a duration string such as '30s'."""
    if isinstance(step, (int, float, np.integer, np.floating)) and not isinstance(step, bool):
        return int(round(float(step) * 1000))
    if isinstance(step, pd.Timedelta) or hasattr(step, "total_seconds"):
        return int(round(step.total_seconds() * 1000))
    try:
        return int(pd.Timedelta(str(step)).total_seconds() * 1000)
    except ValueError:
        raise BadInput(f"cannot read step {step!r}; give seconds or a duration such as '30s'") from None


def version_of(prometheus_version: Any) -> str | None:
    """The PromQL semantics ("3" or "2") of a Prometheus release such as "2.42.0", or None."""
    text = str(prometheus_version or "").strip().lstrip("vV")
    major = text.split(".", 1)[0]
    if not major.isdigit():
        return None
    return "2" if int(major) <= 2 else "3"


def check_version(promql: Any) -> str:
    """`promql` as a known version name, or BadInput naming the choices."""
    value = str(promql).strip()
    if value not in VERSIONS:
        raise BadInput(f"PromQL version {promql!r} is not known; use promql = \"3\" (Prometheus 3.x) "
                       "or \"2\" (Prometheus 2.x)")
    return value


def workspace_version() -> str:
    """`[replay] promql` of the workspace's incidentbook.toml, or the default ("3")."""
    from incidentbook.config import load_config

    cfg = load_config()
    replay = getattr(cfg, "replay", None)
    return str(getattr(replay, "promql", DEFAULT_VERSION))


def check_features(features: Any) -> frozenset[str]:
    """`features` as a set of known Prometheus feature-flag names, or BadInput naming the choices."""
    if isinstance(features, str) or not isinstance(features, (list, tuple, set, frozenset)):
        raise BadInput(f"[replay] features must be a list of names, e.g. [\"{sorted(FEATURES)[0]}\"]")
    unknown = sorted(str(f) for f in features if f not in FEATURES)
    if unknown:
        raise BadInput(f"[replay] features: {unknown[0]!r} is not a feature replay follows; "
                       f"use any of {', '.join(sorted(FEATURES))}")
    return frozenset(features)


def workspace_features() -> frozenset[str]:
    """`[replay] features` of the workspace's incidentbook.toml (none by default)."""
    from incidentbook.config import load_config

    replay = getattr(load_config(), "replay", None)
    return check_features(list(getattr(replay, "features", []) or []))


def _positive_seconds(value: Any) -> float | None:
    """A recorded interval in seconds if it is a sane positive number, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < float(value) <= 86_400:
        return float(value)
    return None


def _step_ms(seconds: float | None) -> int:
    if seconds is None:
        return SUBQUERY_STEP_MS
    if not (isinstance(seconds, (int, float)) and 0 < float(seconds) <= 86_400):
        raise BadInput(f"subquery_step_s {seconds!r} is not a positive number of seconds (up to a day)")
    return max(1, int(round(float(seconds) * 1000)))


class ReplaySource:
    """A MetricsSource over a bundle's `metrics.parquet` (or an in-memory metrics frame).

    `promql` ("3" or "2") picks the Prometheus version whose semantics apply; by default the
    version the bundle records, else the workspace's `[replay] promql`, else "3".
    `features` are Prometheus 3.x feature flags (`--enable-feature` names) to follow, by default
    the workspace's `[replay] features` (none).
    `subquery_step_s` is the step of subqueries written without one (`x[1h:]`), Prometheus's
    global evaluation_interval: by default the bundle's recorded one, else 60 s (its default).
    """

    name = "replay"

    def __init__(self, bundle_dir: str | Path, *, name: str = "replay", promql: str | None = None,
                 subquery_step_s: float | None = None, features: Any = None) -> None:
        bundle = open_bundle(bundle_dir)
        self.features = check_features(features) if features is not None else workspace_features()
        self.name = name
        self.window: tuple[pd.Timestamp, pd.Timestamp] | None = bundle.window
        recorded = bundle.manifest.get("prometheus") if isinstance(bundle.manifest.get("prometheus"), dict) else {}
        self.prometheus_version: str | None = str(recorded.get("version")) if recorded.get("version") else None
        if promql is not None:
            self.promql = check_version(promql)
        else:
            self.promql = version_of(self.prometheus_version) or check_version(workspace_version())
        if subquery_step_s is None:
            subquery_step_s = _positive_seconds(recorded.get("evaluation_interval_s"))
        self.subquery_step_ms = _step_ms(subquery_step_s)
        self.store = SeriesStore.from_frame(bundle.metrics)

    @classmethod
    def from_frame(cls, metrics: pd.DataFrame, *, name: str = "replay",
                   window: tuple[TimeLike, TimeLike] | None = None, promql: str = DEFAULT_VERSION,
                   subquery_step_s: float | None = None, features: Any = ()) -> ReplaySource:
        """A source over a long-form metrics frame (timestamp, metric, labels JSON, value)."""
        self = cls.__new__(cls)
        self.features = check_features(features)
        self.name = name
        self.promql = check_version(promql)
        self.subquery_step_ms = _step_ms(subquery_step_s)
        self.prometheus_version = None
        self.store = SeriesStore.from_frame(metrics)
        self.window = (to_utc(window[0]), to_utc(window[1])) if window else None
        return self

    # -------------------------------------------------------------- raw API shape
    def query_range_raw(self, promql: str, start: TimeLike, end: TimeLike, step: Any) -> dict[str, Any]:
        """The /api/v1/query_range `data` object (`resultType` matrix, `result`)."""
        return range_query(self.store, promql, to_ms(start), to_ms(end), to_step_ms(step), self.promql,
                           self.subquery_step_ms, self.features)

    def query_raw(self, promql: str, time: TimeLike | None = None) -> dict[str, Any]:
        """The /api/v1/query `data` object (vector, scalar, string or matrix)."""
        return instant_query(self.store, promql, self._default_time(time), self.promql,
                             self.subquery_step_ms, self.features)

    # ------------------------------------------------------------- DataFrames
    def query_range(self, promql: str, start: TimeLike, end: TimeLike, step: float | None = None) -> pd.DataFrame:
        """A range query as the long metrics frame (timestamp, label columns…, value)."""
        s, e = to_ms(start), to_ms(end)
        step_ms = to_step_ms(step) if step is not None else self.auto_step_ms(s, e)
        series = evaluate_range(self.store, promql, s, e, step_ms, self.promql, self.subquery_step_ms,
                                self.features)
        return _frame(series)

    def query(self, promql: str, time: TimeLike | None = None) -> pd.DataFrame:
        """An instant query as the long metrics frame (one row per series; raw samples for a range selector)."""
        t = self._default_time(time)
        val = evaluate_instant(self.store, promql, t, self.promql, self.subquery_step_ms, self.features)
        if isinstance(val, Vector):
            series = [(ls, np.array([t]), val.v[i, :1]) for i, ls in enumerate(val.labels)]
        elif isinstance(val, Scalar):
            series = [((), np.array([t]), val.v[:1])]
        elif isinstance(val, Matrix):
            series = sorted(val.series, key=lambda s: s[0])
        elif isinstance(val, String):
            raise BadInput(f"{promql!r} is a string, not a metric query; use query_raw() for strings")
        return _frame(series)

    @staticmethod
    def auto_step_ms(start_ms: int, end_ms: int) -> int:
        """A step of at least 15 s that keeps the query under Prometheus's 11,000 points."""
        span = max(0, end_ms - start_ms)
        return max(int(DEFAULT_MIN_STEP_S * 1000), -(-span // (MAX_POINTS - 1)))

    def _default_time(self, time: TimeLike | None) -> int:
        if time is not None:
            return to_ms(time)
        if self.window is not None:
            return int(self.window[1].value // 1_000_000)
        if len(self.store.times):
            return int(self.store.times.max())
        raise BadInput("this replay source holds no samples; give an explicit time")


def _frame(series: list[tuple[Any, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    names = sorted({k for ls, _, _ in series for k, _ in ls}, key=lambda k: (k != "__name__", k))
    if not series:
        return pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[ms, UTC]"),
                             "value": pd.Series([], dtype="float64")})
    lengths = [len(t) for _, t, _ in series]
    cols: dict[str, Any] = {"timestamp": pd.to_datetime(np.concatenate([t for _, t, _ in series]), unit="ms", utc=True)
                            .astype("datetime64[ms, UTC]")}
    for n in names:
        cols[n] = np.repeat(np.array([dict(ls).get(n, "") for ls, _, _ in series], dtype=object), lengths)
    cols["value"] = np.concatenate([np.asarray(v, dtype="float64") for _, _, v in series])
    return pd.DataFrame(cols)
