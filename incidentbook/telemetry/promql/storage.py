"""Series storage for the replay engine: every series' samples in one flat, sorted array."""

from __future__ import annotations

import json
import re
import warnings
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from incidentbook.errors import BadInput, BundleError
from incidentbook.telemetry.bundle import METRIC_COLUMNS

Labels = tuple[tuple[str, str], ...]

# Sample keys are `series_id << KEY_SHIFT | (ms - base)`, so one searchsorted call finds window
# bounds for every (series, step) pair at once.
KEY_SHIFT = 42
KEY_SPAN = 1 << KEY_SHIFT


# Prometheus writes a stale marker as this NaN bit pattern; a sample holding it ends a series.
STALE_NAN_BITS = 0x7FF0000000000002

try:  # RE2, the engine Prometheus's Go regexp follows (linear time, ASCII \\w \\d \\s, no backrefs)
    import re2 as _re2

    _RE2_ERROR: type[Exception] = _re2.error
    _RE2_OPTIONS = _re2.Options()
    _RE2_OPTIONS.log_errors = False  # the error is raised as BadInput; RE2 need not print it too
except ImportError:  # pragma: no cover - google-re2 is a dependency; only a broken install lacks it
    _re2 = None
    _RE2_ERROR = re.error

_warned_fallback = False


class Regex:
    """A label regex anchored as Prometheus anchors it: the whole value must match.

    Prometheus 3.x compiles `^(?s:re)$` (`.` matches a newline), 2.x `^(?:re)$`.
    """

    def __init__(self, pattern: str, version: str = "3") -> None:
        self.pattern = pattern
        wrapped = f"(?s:{pattern})" if version == "3" else f"(?:{pattern})"
        if _re2 is not None:
            try:
                self._rx = _re2.compile(wrapped, options=_RE2_OPTIONS)
            except (_RE2_ERROR, UnicodeEncodeError) as e:
                raise BadInput(f"invalid regular expression {pattern!r} ({e}); fix the matcher "
                               "(RE2 syntax, as Prometheus uses)") from None
            self.groups = self._rx.groups
            return
        global _warned_fallback
        if not _warned_fallback:
            warnings.warn("google-re2 is not installed: label regexes use Python's re, whose \\w and \\d "
                          "also match non-ASCII; pip install google-re2", RuntimeWarning, stacklevel=2)
            _warned_fallback = True
        try:
            self._rx = re.compile(wrapped, re.ASCII)
        except re.error as e:
            raise BadInput(f"invalid regular expression {pattern!r} ({e}); fix the matcher") from None
        self.groups = self._rx.groups

    def fullmatch(self, value: str) -> Any:
        """The match object if the whole of `value` matches, else None."""
        try:
            return self._rx.fullmatch(value)
        except (UnicodeEncodeError, TypeError):
            # A lone surrogate cannot be UTF-8: Prometheus label values are UTF-8, so it matches nothing.
            return None


@lru_cache(maxsize=512)
def compile_regex(pattern: str, version: str = "3") -> Regex:
    """A fully anchored label regex with Prometheus's semantics for `version` (cached)."""
    return Regex(pattern, version)


def stale_mask(values: np.ndarray) -> np.ndarray:
    """Where `values` hold Prometheus's stale-marker NaN (not any other NaN)."""
    return np.asarray(values, dtype="float64").view("uint64") == STALE_NAN_BITS


class SeriesStore:
    """All series of a bundle: label sets, and samples sorted by (series, time)."""

    def __init__(self, labels: list[Labels], times: np.ndarray, values: np.ndarray, offsets: np.ndarray):
        self.labels = labels
        self.times = times.astype("int64")
        self.values = values.astype("float64")
        self.offsets = offsets.astype("int64")
        n = len(labels)
        sid = np.repeat(np.arange(n, dtype="int64"), np.diff(self.offsets))
        if len(self.times):
            self.base = int(self.times.min()) - (KEY_SPAN >> 1)
        else:
            self.base = 0
        self.keys = (sid << KEY_SHIFT) | (self.times - self.base)
        self._columns: dict[str, np.ndarray] = {}
        self.stale = stale_mask(self.values)
        self.has_stale = bool(self.stale.any())
        self._fresh: SeriesStore | None = None
        # Running sum of counter-reset corrections (the value before each drop), so increase()
        # over any window is (last - first) + the difference of two entries.
        contrib = np.zeros(len(self.values))
        if len(self.values) > 1:
            same = sid[1:] == sid[:-1]
            with np.errstate(invalid="ignore"):
                drop = same & (self.values[1:] < self.values[:-1])
            contrib[1:] = np.where(drop, self.values[:-1], 0.0)
        self.resets_finite = bool(np.isfinite(contrib).all())
        # Accumulated per series, so one series' large drops never cost another precision.
        self.reset_cumsum = np.empty(len(self.values))
        for a, b in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist()):
            np.cumsum(contrib[a:b], out=self.reset_cumsum[a:b])

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> SeriesStore:
        """Build from a bundle metrics frame (timestamp, metric, labels JSON, value)."""
        missing = [c for c in METRIC_COLUMNS if c not in df.columns]
        if missing:
            raise BundleError(f"metrics frame lacks columns {missing}; expected {METRIC_COLUMNS}")
        ts = pd.to_datetime(df["timestamp"], utc=True)
        ms = ts.dt.tz_convert(None).astype("datetime64[ms]").astype("int64").to_numpy()
        m_codes, m_uniq = pd.factorize(df["metric"].astype(str).to_numpy(dtype=object))
        l_codes, l_uniq = pd.factorize(df["labels"].astype(str).to_numpy(dtype=object))
        codes, pairs = pd.factorize(m_codes.astype("int64") * max(1, len(l_uniq)) + l_codes)
        uniques = [(str(m_uniq[p // max(1, len(l_uniq))]), str(l_uniq[p % max(1, len(l_uniq))])) for p in pairs.tolist()]
        values = df["value"].astype("float64").to_numpy()
        order = np.lexsort((ms, codes))
        codes, ms, values = codes[order], ms[order], values[order]
        if len(codes):
            # Keep the last row of duplicate (series, timestamp) pairs, as the backfill does.
            last = np.ones(len(codes), dtype=bool)
            last[:-1] = (codes[1:] != codes[:-1]) | (ms[1:] != ms[:-1])
            codes, ms, values = codes[last], ms[last], values[last]
        labels: list[Labels] = []
        for metric, lab in uniques:
            try:
                d = json.loads(lab) if lab else {}
            except json.JSONDecodeError as e:
                raise BundleError(f"labels {lab!r} of {metric} are not JSON ({e.msg}); re-export the bundle") from None
            d = {k: str(v) for k, v in d.items() if v not in (None, "") and k != "__name__"}
            d["__name__"] = metric
            labels.append(tuple(sorted(d.items())))
        offsets = np.zeros(len(labels) + 1, dtype="int64")
        np.cumsum(np.bincount(codes, minlength=len(labels)), out=offsets[1:])
        return cls(labels, ms, values, offsets)

    def without_stale(self) -> SeriesStore:
        """This store without stale markers: what range selectors see (Prometheus drops them)."""
        if not self.has_stale:
            return self
        if self._fresh is None:
            keep = ~self.stale
            sid = np.repeat(np.arange(len(self.labels)), np.diff(self.offsets))[keep]
            offsets = np.zeros(len(self.labels) + 1, dtype="int64")
            np.cumsum(np.bincount(sid, minlength=len(self.labels)), out=offsets[1:])
            self._fresh = SeriesStore(self.labels, self.times[keep], self.values[keep], offsets)
        return self._fresh

    def column(self, name: str) -> np.ndarray:
        """The value of label `name` for every series ("" where absent), as an object array."""
        col = self._columns.get(name)
        if col is None:
            col = np.array([dict(ls).get(name, "") for ls in self.labels], dtype=object)
            self._columns[name] = col
        return col

    def select(self, matchers: list[tuple[str, str, str]], version: str = "3") -> np.ndarray:
        """Ids of the series matching every (name, op, value) matcher; op is = != =~ !~."""
        keep = np.ones(len(self.labels), dtype=bool)
        for name, op, value in matchers:
            col = self.column(name)
            if op == "=":
                keep &= col == value
            elif op == "!=":
                keep &= col != value
            else:
                rx = compile_regex(value, version)
                uniq = set(col[keep].tolist())
                hits = {u for u in uniq if rx.fullmatch(u) is not None}
                m = np.fromiter((c in hits for c in col), dtype=bool, count=len(col))
                keep &= m if op == "=~" else ~m
        return np.flatnonzero(keep)

    def query_keys(self, sids: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """Search keys for series `sids` (S,) at times `ms` (T,) or (S,T): shape (S,T)."""
        rel = np.clip(np.asarray(ms, dtype="int64") - self.base, 0, KEY_SPAN - 1)
        return (sids.astype("int64")[:, None] << KEY_SHIFT) | rel
