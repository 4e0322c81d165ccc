"""Loki connector: LogQL over Loki's HTTP API (`/loki/api/v1/query_range`, `/loki/api/v1/query`).

`requests` is the client (no Python Loki client library is maintained). Log queries return the
logs frame (`timestamp, <stream labels…>, line`); metric queries (`count_over_time`, `rate`, …)
return the metrics long frame, like Prometheus.

Paging: Loki caps one response at `limit` entries (and a server-side maximum, 5000 by default).
For a larger `limit` we page like logcli: request `page_size` entries, then move the window's
open end to the last timestamp seen (end is exclusive, start inclusive) and drop entries already
returned at that boundary timestamp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from incidentbook.errors import BadInput, SourceError
from incidentbook.telemetry.base import SourceStatus, TimeLike
from incidentbook.telemetry.bundle import to_utc
from incidentbook.telemetry.prometheus import result_to_frame

DEFAULT_PAGE_SIZE = 5000  # Loki's default max_entries_limit_per_query
_METRIC_QUERY = re.compile(
    r"^\s*(sum|avg|min|max|count|stddev|stdvar|topk|bottomk|sort|sort_desc|"
    r"count_over_time|rate|bytes_over_time|bytes_rate|absent_over_time|sum_over_time|avg_over_time|"
    r"max_over_time|min_over_time|quantile_over_time|first_over_time|last_over_time|rate_counter|"
    r"stddev_over_time|stdvar_over_time|label_replace|vector)\s*(\(|by|without)")


def is_metric_query(logql: str) -> bool:
    """True when `logql` is a metric query (returns samples, not log lines)."""
    return bool(_METRIC_QUERY.match(logql))


def to_ns(value: TimeLike) -> int:
    """Unix nanoseconds from a datetime, pandas Timestamp, ISO string or unix seconds."""
    return int(to_utc(value).value)


def empty_logs_frame(label_names: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """A logs frame with no rows."""
    cols: dict[str, Any] = {"timestamp": pd.Series([], dtype="datetime64[ns, UTC]")}
    for n in label_names:
        cols[n] = pd.Series([], dtype=object).astype(str)
    cols["line"] = pd.Series([], dtype=object).astype(str)
    return pd.DataFrame(cols)


def entries_to_frame(entries: list[tuple[int, dict[str, str], str]],
                     direction: str = "backward") -> pd.DataFrame:
    """(ns timestamp, labels, line) tuples -> logs frame, newest first for `backward`."""
    if not entries:
        return empty_logs_frame()
    names: dict[str, None] = {}
    for _, labels, _ in entries:
        names.update(dict.fromkeys(labels))
    label_names = sorted(names)
    ts = np.array([e[0] for e in entries], dtype=np.int64)
    order = np.argsort(ts, kind="stable")
    if direction == "backward":
        order = order[::-1]
    out: dict[str, Any] = {"timestamp": pd.DatetimeIndex(ts[order].view("datetime64[ns]"), tz="UTC")}
    for n in label_names:
        out[n] = [entries[i][1].get(n, "") for i in order]
    out["line"] = [entries[i][2] for i in order]
    return pd.DataFrame(out)


class LokiSource:
    """A live Loki answering LogQL."""

    kind = "loki"

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, verify_tls: bool | str = True,
                 timeout_s: float = 30.0, retries: int = 2, name: str = "loki",
                 page_size: int = DEFAULT_PAGE_SIZE, tenant: str | None = None,
                 header_envs: Mapping[str, str] | None = None) -> None:
        """`tenant` sets `X-Scope-OrgID` for multi-tenant Loki; `page_size` entries per request."""
        if not url:
            raise BadInput(f"[sources.{name}] has no url; set url = \"http://loki:3100\"")
        self.url = url.rstrip("/")
        self.name = name
        self.timeout_s = float(timeout_s)
        self.page_size = int(page_size)
        self.header_envs = dict(header_envs or {})
        self.session = requests.Session()
        self.session.headers.update(dict(headers or {}))
        if tenant:
            self.session.headers["X-Scope-OrgID"] = tenant
        self.session.verify = verify_tls
        retry = Retry(total=retries, backoff_factor=0.25, status_forcelist=(429, 502, 503, 504),
                      allowed_methods=("GET",), raise_on_status=False)
        self.session.mount(self.url, HTTPAdapter(max_retries=retry))

    @classmethod
    def from_config(cls, cfg: Any, name: str = "loki") -> LokiSource:
        """Build from a `[sources.NAME]` section; header values come from the env vars in `headers_env`."""
        headers = cfg.header_values(name)
        extra = cfg.model_extra or {}
        return cls(cfg.url, headers=headers, verify_tls=cfg.verify_tls, timeout_s=cfg.timeout_s,
                   retries=int(extra.get("retries", 2)), name=name,
                   page_size=int(extra.get("page_size", DEFAULT_PAGE_SIZE)),
                   tenant=extra.get("tenant"), header_envs=cfg.headers_env)

    def _get(self, path: str, params: Mapping[str, Any], query: str = "") -> dict[str, Any]:
        url = f"{self.url}{path}"
        try:
            resp = self.session.get(url, params=dict(params), timeout=self.timeout_s)
        except requests.exceptions.Timeout:
            raise SourceError(f"Loki at {self.url} did not answer within {self.timeout_s:g}s; narrow "
                              f"the time range or raise [sources.{self.name}] timeout_s") from None
        except requests.exceptions.ConnectionError as e:
            if "timed out" in str(e):
                raise SourceError(f"Loki at {self.url} did not answer within {self.timeout_s:g}s; narrow "
                                  f"the time range or raise [sources.{self.name}] timeout_s") from None
            raise SourceError(f"cannot reach Loki at {self.url}; is Loki running? check "
                              f"[sources.{self.name}] url") from None
        except requests.exceptions.RequestException as e:
            raise SourceError(f"request to Loki at {self.url} failed: {str(e)[:160]}") from None
        if resp.status_code in (401, 403):
            hint = (", ".join(f"${e}" for e in self.header_envs.values()) if self.header_envs
                    else "headers_env in [sources." + self.name + "]")
            raise SourceError(f"Loki at {self.url} answered {resp.status_code}; check the auth header "
                              f"set from {hint}")
        if resp.status_code >= 400:
            # Loki answers errors as plain text (e.g. "parse error at line 1, col 3: …").
            text = resp.text.strip()[:500]
            try:
                text = str(resp.json().get("error") or resp.json().get("message") or text)
            except (ValueError, AttributeError):
                pass
            if resp.status_code == 400:
                raise BadInput(f"Loki rejected the query {query!r}: {text}")
            raise SourceError(f"Loki at {self.url} failed (HTTP {resp.status_code}): {text}")
        try:
            body = resp.json()
        except ValueError:
            raise SourceError(f"Loki at {self.url} answered without JSON; is the url Loki's API?") from None
        if body.get("status") != "success":
            raise SourceError(f"Loki at {self.url} failed: {body.get('error', body)!s:.300}")
        return body.get("data") or {}

    def query_range_raw(self, logql: str, start: TimeLike, end: TimeLike, limit: int = 1000,
                        direction: str = "backward", step: float | None = None) -> dict[str, Any]:
        """One `/loki/api/v1/query_range` call; the `data` object as Loki returns it."""
        return self._range_ns(logql, to_ns(start), to_ns(end), limit, direction, step)

    def _range_ns(self, logql: str, lo: int, hi: int, limit: int = 1000, direction: str = "backward",
                  step: float | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"query": logql, "start": lo, "end": hi,
                                  "limit": int(limit), "direction": direction}
        if step is not None:
            params["step"] = f"{step:g}"
        return self._get("/loki/api/v1/query_range", params, logql)

    def query_logs(self, logql: str, start: TimeLike, end: TimeLike, limit: int = 1000,
                   direction: Literal["forward", "backward"] = "backward") -> pd.DataFrame:
        """Log lines (up to `limit`, paged) as a logs frame; a metric query gives a metrics frame."""
        if direction not in ("forward", "backward"):
            raise BadInput(f"direction must be 'forward' or 'backward', got {direction!r}")
        if is_metric_query(logql):
            return self.query_metrics(logql, start, end)
        lo, hi = to_ns(start), to_ns(end)
        if hi < lo:
            raise BadInput("log query range ends before it starts; swap start and end")
        entries: list[tuple[int, dict[str, str], str]] = []
        seen: set[tuple[int, str, str]] = set()
        at_boundary = 0  # entries already returned at the boundary timestamp come back again
        while len(entries) < limit:
            want = min(self.page_size, limit - len(entries) + at_boundary)
            data = self._range_ns(logql, lo, hi, want, direction)
            if data.get("resultType", "streams") != "streams":
                return result_to_frame(data)
            page: list[tuple[int, dict[str, str], str]] = []
            for stream in data.get("result", []):
                labels = stream.get("stream", {})
                key = repr(sorted(labels.items()))
                for ts_s, line in stream.get("values", []):
                    ts = int(ts_s)
                    if (ts, key, line) in seen:
                        continue
                    seen.add((ts, key, line))
                    page.append((ts, labels, line))
            raw_count = sum(len(s.get("values", [])) for s in data.get("result", []))
            page.sort(key=lambda e: e[0], reverse=direction == "backward")
            entries.extend(page[: limit - len(entries)])
            if raw_count < want or not page:
                break
            # Next page: continue from the boundary timestamp (kept inclusive, duplicates dropped).
            boundary = page[-1][0]
            at_boundary = sum(1 for e in entries if e[0] == boundary)
            if direction == "backward":
                hi = boundary + 1
            else:
                lo = boundary
        return entries_to_frame(entries, direction)

    def query_metrics(self, logql: str, start: TimeLike, end: TimeLike,
                      step: float | None = None) -> pd.DataFrame:
        """A LogQL metric query over a range, as a metrics long frame."""
        if step is None:
            span = (to_ns(end) - to_ns(start)) / 1e9
            step = max(float(int(span / 250)), 1.0)  # Loki's own default resolution
        return result_to_frame(self.query_range_raw(logql, start, end, step=step))

    def query_instant(self, logql: str, time: TimeLike) -> pd.DataFrame:
        """A LogQL metric query at one instant (`/loki/api/v1/query`), as a metrics long frame."""
        return result_to_frame(self._get("/loki/api/v1/query", {"query": logql, "time": to_ns(time)}, logql))

    def status(self) -> SourceStatus:
        """Reachable and ready? Never raises."""
        try:
            resp = self.session.get(f"{self.url}/ready", timeout=min(self.timeout_s, 5.0))
        except requests.exceptions.RequestException:
            return SourceStatus(self.name, self.kind, False,
                                f"cannot reach Loki at {self.url}; is Loki running? check [sources.{self.name}] url")
        if resp.status_code in (401, 403):
            return SourceStatus(self.name, self.kind, False, f"Loki at {self.url} answered {resp.status_code}; check the auth header")
        if resp.status_code != 200:
            return SourceStatus(self.name, self.kind, False, f"Loki at {self.url} not ready (HTTP {resp.status_code})")
        return SourceStatus(self.name, self.kind, True, f"reachable at {self.url}")
