"""Prometheus connector: PromQL over the HTTP API, answered as long-form DataFrames.

HTTP (headers, TLS, timeouts, retries) goes through prometheus-api-client's `PrometheusConnect`.
Requests are sent through its configured session rather than `custom_query_range`, because that
method keeps only `data.result` (losing `resultType`) and folds Prometheus's `error` text into an
opaque exception string; an on-call engineer needs Prometheus's own words for a bad query.

The JSON -> DataFrame conversion is ours (`result_to_frame`): one pass over the series, numpy for
the samples, several times faster than `MetricRangeDataFrame` (see bench/bench_json_to_frame.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from incidentbook.errors import BadInput, SourceError
from incidentbook.telemetry.base import SourceStatus, TimeLike
from incidentbook.telemetry.bundle import to_utc

MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
MIN_STEP_S = 15.0
# Steps an automatic choice snaps to, so panels and exports line up across queries.
_STR = pd.Series([""]).dtype  # pandas' default string dtype
NICE_STEPS_S = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def to_unix(value: TimeLike) -> float:
    """Unix seconds (float) from a datetime, pandas Timestamp, ISO string or number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return to_utc(value).value / 1e9


def auto_step(start: float, end: float, min_step: float = MIN_STEP_S,
              max_points: int = MAX_POINTS) -> float:
    """The smallest 'nice' step >= `min_step` that keeps a range query under `max_points` per series."""
    span = max(end - start, 0.0)
    for s in NICE_STEPS_S:
        if s >= min_step and span / s + 1 <= max_points:
            return float(s)
    return float(math.ceil(span / (max_points - 1)))


def align(start: float, end: float, step: float) -> tuple[float, float]:
    """Snap `start` down and `end` up to multiples of `step` so repeated queries share timestamps."""
    return math.floor(start / step) * step, math.ceil(end / step) * step


def empty_metrics_frame(label_names: Sequence[str] = ()) -> pd.DataFrame:
    """A metrics long frame with no rows (and the documented dtypes)."""
    cols: dict[str, Any] = {"timestamp": pd.Series([], dtype="datetime64[ms, UTC]")}
    for name in label_names:
        cols[name] = pd.Series([], dtype=object).astype(str)
    cols["value"] = pd.Series([], dtype="float64")
    return pd.DataFrame(cols)


def result_to_frame(data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                    result_type: str | None = None) -> pd.DataFrame:
    """Convert a Prometheus `data` object (or a bare `result` list) to the metrics long frame.

    Handles `matrix`, `vector`, `scalar` and `string` results. A label missing from a series is
    the empty string (Prometheus treats both alike). Rows keep Prometheus's series order, time
    ascending within a series.
    """
    if isinstance(data, Mapping):
        result_type = str(data.get("resultType", result_type or "matrix"))
        result: Any = data.get("result", [])
    else:
        result, result_type = data, result_type or "matrix"
    if result_type in ("scalar", "string"):
        if not result:
            return empty_metrics_frame()
        ts = np.array([float(result[0])])
        vals = np.array([float(result[1])]) if result_type == "scalar" else np.array([math.nan])
        return pd.DataFrame({"timestamp": _ms(ts), "value": vals})
    if not result:
        return empty_metrics_frame()
    if result_type == "vector":
        samples: list[Sequence[Any]] = [[s["value"]] for s in result]
    else:
        samples = [s.get("values", ()) for s in result]
    counts = np.fromiter((len(v) for v in samples), dtype=np.int64, count=len(samples))
    total = int(counts.sum())
    flat = list(chain.from_iterable(samples))
    ts = np.array([p[0] for p in flat], dtype=np.float64) if total else np.empty(0)
    # numpy parses "NaN", "+Inf" and decimal strings the way Prometheus writes them.
    vals = np.array([p[1] for p in flat], dtype=np.float64) if total else np.empty(0)
    metrics = [s.get("metric", {}) for s in result]
    names: dict[str, None] = {}
    for m in metrics:
        names.update(dict.fromkeys(m))
    label_names = sorted(names, key=lambda n: (n != "__name__", n))
    out: dict[str, Any] = {"timestamp": _ms(ts)}
    # Label columns: one small per-series array, expanded with an Arrow `take` straight into
    # pandas' string dtype (no per-row Python strings to infer).
    take = pa.array(np.repeat(np.arange(len(metrics), dtype=np.int32), counts))
    for name in label_names:
        per_series = pa.array([m.get(name, "") for m in metrics], type=pa.string())
        out[name] = _strings(per_series.take(take))
    out["value"] = vals
    return pd.DataFrame(out)


def _strings(arr: pa.Array) -> Any:
    if _STR is np.dtype(object) or str(_STR) == "object":  # pandas 2: no string dtype default
        return arr.to_numpy(zero_copy_only=False)
    return pd.array(arr, dtype=_STR)


def _ms(ts: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.rint(ts * 1000.0).astype("int64").view("datetime64[ms]"), tz="UTC")


class PrometheusSource:
    """A live Prometheus (or Thanos/Mimir/VictoriaMetrics querier) answering PromQL."""

    kind = "prometheus"

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, verify_tls: bool | str = True,
                 timeout_s: float = 30.0, retries: int = 2, name: str = "prometheus",
                 header_envs: Mapping[str, str] | None = None) -> None:
        """`header_envs` (header -> env var) only improves messages: a 401 names the variable."""
        if not url:
            raise BadInput(f"[sources.{name}] has no url; set url = \"http://prometheus:9090\"")
        self.url = url.rstrip("/")
        self.name = name
        self.timeout_s = float(timeout_s)
        self.header_envs = dict(header_envs or {})
        retry = Retry(total=retries, connect=retries, read=retries, backoff_factor=0.25,
                      status_forcelist=(429, 502, 503, 504), allowed_methods=("GET", "POST"),
                      raise_on_status=False)
        self.client = PrometheusConnect(url=self.url, headers=dict(headers or {}),
                                        disable_ssl=verify_tls is False, retry=retry,
                                        timeout=self.timeout_s)
        if isinstance(verify_tls, str):  # a CA bundle path
            self.client._session.verify = verify_tls

    @classmethod
    def from_config(cls, cfg: Any, name: str = "prometheus") -> PrometheusSource:
        """Build from a `[sources.NAME]` section; header values come from the env vars in `headers_env`."""
        headers = cfg.header_values(name)
        extra = cfg.model_extra or {}
        return cls(cfg.url, headers=headers, verify_tls=cfg.verify_tls, timeout_s=cfg.timeout_s,
                   retries=int(extra.get("retries", 2)), name=name, header_envs=cfg.headers_env)

    # -- raw API ---------------------------------------------------------------------------
    def _request(self, path: str, params: Mapping[str, Any], query: str = "") -> dict[str, Any]:
        session = self.client._session
        url = f"{self.url}{path}"
        try:
            resp = session.request("GET", url, params=dict(params), headers=self.client.headers,
                                   verify=session.verify, timeout=self.timeout_s)
        except requests.exceptions.Timeout:
            raise SourceError(f"Prometheus at {self.url} did not answer within {self.timeout_s:g}s; "
                              f"narrow the time range or raise [sources.{self.name}] timeout_s") from None
        except requests.exceptions.SSLError as e:
            raise SourceError(f"TLS to Prometheus at {self.url} failed ({_short(e)}); set "
                              f"[sources.{self.name}] verify_tls to a CA bundle path") from None
        except requests.exceptions.ConnectionError as e:
            if "timed out" in str(e):  # a read timeout after retries surfaces as ConnectionError
                raise SourceError(f"Prometheus at {self.url} did not answer within {self.timeout_s:g}s; "
                                  f"narrow the time range or raise [sources.{self.name}] timeout_s") from None
            raise SourceError(f"cannot reach Prometheus at {self.url} ({_short(e)}); is Prometheus "
                              f"running? check [sources.{self.name}] url") from None
        except requests.exceptions.RequestException as e:
            raise SourceError(f"request to Prometheus at {self.url} failed: {_short(e)}") from None
        if resp.status_code in (401, 403):
            raise SourceError(self._auth_message(resp.status_code))
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            snippet = resp.text[:200].strip()
            raise SourceError(f"Prometheus at {self.url} answered HTTP {resp.status_code} without JSON "
                              f"({snippet!r}); is the url a Prometheus API endpoint?")
        if body.get("status") != "success":
            err = body.get("error") or f"HTTP {resp.status_code}"
            etype = body.get("errorType", "")
            if resp.status_code in (400, 422) or etype in ("bad_data",):
                raise BadInput(f"Prometheus rejected the query {query!r}: {err}")
            raise SourceError(f"Prometheus at {self.url} failed ({etype or resp.status_code}): {err}")
        return body.get("data") or {}

    def _auth_message(self, code: int) -> str:
        what = "not authenticated" if code == 401 else "not allowed"
        if self.header_envs:
            envs = ", ".join(f"{h} from ${e}" for h, e in self.header_envs.items())
            return (f"Prometheus at {self.url} answered {code} ({what}); check the header(s) {envs} "
                    f"set by [sources.{self.name}] headers_env")
        return (f"Prometheus at {self.url} answered {code} ({what}); set headers_env = "
                f"{{ Authorization = \"PROM_AUTH\" }} in [sources.{self.name}] and export PROM_AUTH")

    def query_range_raw(self, promql: str, start: TimeLike, end: TimeLike,
                        step: float | None = None) -> dict[str, Any]:
        """The `data` object of `/api/v1/query_range`; `step` (s) is chosen when None."""
        s, e = to_unix(start), to_unix(end)
        if e < s:
            raise BadInput(f"query range ends ({to_utc(e)}) before it starts ({to_utc(s)}); swap start and end")
        if step is None:
            step = auto_step(s, e)
            s, e = align(s, e, step)
        elif step <= 0:
            raise BadInput(f"step must be positive, got {step}")
        elif (e - s) / step + 1 > MAX_POINTS:
            raise BadInput(f"step {step:g}s gives more than {MAX_POINTS} points per series; use "
                           f"step >= {auto_step(s, e, min_step=1):g} or leave it out")
        return self._request("/api/v1/query_range",
                             {"query": promql, "start": _fmt(s), "end": _fmt(e), "step": _fmt(step)}, promql)

    def query_raw(self, promql: str, time: TimeLike | None = None) -> dict[str, Any]:
        """The `data` object of `/api/v1/query` (instant query; `time` defaults to now)."""
        params: dict[str, Any] = {"query": promql}
        if time is not None:
            params["time"] = _fmt(to_unix(time))
        return self._request("/api/v1/query", params, promql)

    # -- MetricsSource -----------------------------------------------------------------------
    def query_range(self, promql: str, start: TimeLike, end: TimeLike,
                    step: float | None = None) -> pd.DataFrame:
        """Range query as a metrics long frame."""
        return result_to_frame(self.query_range_raw(promql, start, end, step))

    def query(self, promql: str, time: TimeLike | None = None) -> pd.DataFrame:
        """Instant query as a metrics long frame (one row per series)."""
        return result_to_frame(self.query_raw(promql, time))

    def status(self) -> SourceStatus:
        """Reachable and answering queries? Never raises."""
        try:
            self._request("/api/v1/query", {"query": "1"}, "1")
        except Exception as e:  # status must never raise
            return SourceStatus(self.name, self.kind, False, str(e))
        return SourceStatus(self.name, self.kind, True, f"reachable at {self.url}")


def _fmt(x: float) -> str:
    return repr(round(x, 3)) if x != int(x) else str(int(x))


def _short(e: Exception) -> str:
    text = str(e)
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "No route to host", "certificate verify failed"):
        if marker in text:
            return marker
    return text[:160]
