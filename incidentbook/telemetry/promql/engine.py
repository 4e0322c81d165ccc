"""A vectorised PromQL evaluator with Prometheus 3.x or 2.x semantics.

Every expression is evaluated at all steps at once: an instant vector is a (series × steps)
matrix of values plus a presence mask, so a range query costs about as much as an instant one.
Range functions gather each series' samples per window with one `searchsorted` over all
(series, step) pairs. Anything not implemented raises UnsupportedQuery; it never guesses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from incidentbook.errors import BadInput
from incidentbook.telemetry.promql.aggregate import Aggregations
from incidentbook.telemetry.promql.binary import Binaries
from incidentbook.telemetry.promql.common import (
    _MATCH_OPS,
    CHUNK_CELLS,
    DEFAULT_VERSION,
    LOOKBACK_MS,
    SUBQUERY_STEP_MS,
    VERSIONS,
    Value,
    _empty_vector,
    _ms,
    _strict_unique,
    _strip_parens,
    unsupported,
)
from incidentbook.telemetry.promql.functions import Functions
from incidentbook.telemetry.promql.info import Info
from incidentbook.telemetry.promql.storage import Labels, SeriesStore
from incidentbook.telemetry.promql.values import (
    Matrix,
    Scalar,
    String,
    Vector,
    drop_name,
)


class Bounds(NamedTuple):
    """Where each (series, step) window lies in `store`: first sample index and sample count."""

    store: SeriesStore
    sids: np.ndarray
    lo: np.ndarray
    cnt: np.ndarray
    rstart: np.ndarray
    ref: np.ndarray
    range_ms: int


def _go_div(a: int, b: int) -> int:
    """Go's integer division (truncates towards zero), as Prometheus aligns subquery steps."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


class Evaluator(Functions, Info, Aggregations, Binaries):
    """Evaluates one parsed expression over a SeriesStore at the step times `times` (ms).

    `version` is the Prometheus major version whose semantics apply: "3" (range windows and the
    lookback window are left-open, `(t-r, t]`) or "2" (closed, `[t-r, t]`).
    """

    def __init__(self, store: SeriesStore, times: np.ndarray, *, start_ms: int, end_ms: int,
                 lookback_ms: int = LOOKBACK_MS, version: str = DEFAULT_VERSION,
                 subquery_step_ms: int = SUBQUERY_STEP_MS) -> None:
        if version not in VERSIONS:
            raise BadInput(f"PromQL version {version!r} is not known; use one of {', '.join(VERSIONS)}")
        self.store = store
        self.times = np.asarray(times, dtype="int64")
        self.T = len(self.times)
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.lookback = lookback_ms
        self.version = version
        self.left_open = version == "3"
        self.subquery_step_ms = subquery_step_ms

    def _child(self, times: np.ndarray) -> Evaluator:
        """An evaluator over the same data at other step times (a subquery's inner steps)."""
        return Evaluator(self.store, times, start_ms=self.start_ms, end_ms=self.end_ms,
                         lookback_ms=self.lookback, version=self.version,
                         subquery_step_ms=self.subquery_step_ms)

    # ----------------------------------------------------------------- dispatch
    def eval(self, node: Any) -> Value:
        """The value of `node` at every step."""
        kind = type(node).__name__
        method: Callable[[Any], Value] | None = getattr(self, "_eval_" + kind, None)
        if method is None:
            raise unsupported(f"{kind} expressions")
        return method(node)

    def _eval_ParenExpr(self, node: Any) -> Value:
        return self.eval(node.expr)

    def _eval_NumberLiteral(self, node: Any) -> Value:
        return Scalar(np.full(self.T, float(node.val)))

    def _eval_StringLiteral(self, node: Any) -> Value:
        return String(node.val)

    def _eval_UnaryExpr(self, node: Any) -> Value:
        val = self.eval(node.expr)
        if isinstance(val, Scalar):
            return Scalar(-val.v)
        if isinstance(val, Vector):
            return _strict_unique(Vector([drop_name(ls) for ls in val.labels], -val.v, val.m), self.version)
        raise unsupported("unary minus on this expression")

    # ---------------------------------------------------------------- selectors
    def _matchers(self, vs: Any) -> list[tuple[str, str, str]]:
        out = []
        if vs.name:
            out.append(("__name__", "=", vs.name))
        if vs.matchers.or_matchers:
            raise unsupported("`or` inside a selector")
        for m in vs.matchers.matchers:
            out.append((m.name, _MATCH_OPS[str(m.op)], m.value))
        return out

    def _select(self, vs: Any) -> np.ndarray:
        return self.store.select(self._matchers(vs), version=self.version)

    def _ref_times(self, node: Any) -> np.ndarray:
        """Per step, the time a selector or subquery is evaluated at: `@` and `offset` applied."""
        if node.at is not None:
            kind = str(node.at.type)
            if kind.endswith("Start"):
                at = self.start_ms
            elif kind.endswith("End"):
                at = self.end_ms
            else:
                at = int(round(node.at.at.timestamp() * 1000))
            base = np.full(self.T, at, dtype="int64")
        else:
            base = self.times
        return base - _ms(node.offset)

    def _at_times(self, node: Any) -> np.ndarray:
        """The `@` time of `node` at every step (it must have one)."""
        kind = str(node.at.type)
        if kind.endswith("Start"):
            at = self.start_ms
        elif kind.endswith("End"):
            at = self.end_ms
        else:
            at = int(round(node.at.at.timestamp() * 1000))
        return np.full(self.T, at, dtype="int64")

    @staticmethod
    def _offset_ms(node: Any) -> int:
        return _ms(node.offset)

    def _eval_VectorSelector(self, vs: Any) -> Value:
        sids = self._select(vs)
        if not len(sids):
            return _empty_vector(self.T)
        return self._instant_at(sids, self._ref_times(vs))

    def _instant_at(self, sids: np.ndarray, ref: np.ndarray) -> Vector:
        """Series `sids` as an instant vector read at times `ref` (lookback and staleness applied)."""
        st = self.store
        hi = np.searchsorted(st.keys, st.query_keys(sids, ref), side="right")
        idx = hi - 1
        ok = idx >= st.offsets[sids][:, None]
        idx = np.maximum(idx, 0)
        ts = st.times[idx]
        floor = (ref - self.lookback)[None, :]
        ok &= (ts > floor) if self.left_open else (ts >= floor)
        if st.has_stale:
            ok &= ~st.stale[idx]  # the newest sample is a stale marker: the series has ended
        live = np.flatnonzero(ok.any(axis=1))
        return Vector([st.labels[sids[i]] for i in live], st.values[idx[live]], ok[live], ts[live])

    def _range_value(self, node: Any) -> Value:
        """A range vector (selector or subquery) as the result of an instant query."""
        if self.T != 1:
            raise BadInput("invalid expression type \"range vector\" for range query, must be Scalar "
                           "or instant Vector; wrap it in a function such as rate()")
        series = []
        for labels, W, Wt, M, _cnt, _s, _e in self._windows(node):
            for i, ls in enumerate(labels):
                mm = M[i, 0]
                if mm.any():
                    series.append((ls, Wt[i, 0][mm], W[i, 0][mm]))
        return Matrix(series)

    def _eval_MatrixSelector(self, node: Any) -> Value:
        return self._range_value(node)

    def _eval_SubqueryExpr(self, node: Any) -> Value:
        return self._range_value(node)

    def _subquery_store(self, node: Any) -> tuple[SeriesStore, np.ndarray]:
        """Evaluate a subquery's inner expression at its own aligned steps, as a series store.

        Inner steps are multiples of the subquery step (absolute time, as Prometheus aligns
        them) from the first one inside the earliest outer window to the latest outer time.
        """
        step = _ms(node.step) or self.subquery_step_ms
        if step <= 0:
            raise BadInput("zero or negative subquery step; give a positive step such as [1h:1m]")
        rng = _ms(node.range)
        ref = self._ref_times(node)
        first = int(ref.min()) - rng
        start = step * _go_div(first, step)
        if start < first or (self.left_open and start == first):
            start += step
        stop = int(ref.max())
        if stop < start:
            return SeriesStore([], np.empty(0), np.empty(0), np.zeros(1)), ref
        n = (stop - start) // step + 1
        if n * max(1, len(self.store.labels)) > 50_000_000:
            raise BadInput(f"subquery {node} would evaluate {n:,} steps; use a larger subquery step")
        times = start + step * np.arange(n, dtype="int64")
        inner = self._child(times).eval(node.expr)
        if isinstance(inner, Scalar):
            raise BadInput("subquery is only allowed on instant vector, got scalar; wrap it in vector()")
        if not isinstance(inner, Vector):
            raise BadInput("subquery is only allowed on instant vector; put the range inside a function")
        keep = np.flatnonzero(inner.m.any(axis=1))
        m = inner.m[keep]
        labels = [inner.labels[i] for i in keep]
        offsets = np.zeros(len(labels) + 1, dtype="int64")
        np.cumsum(m.sum(axis=1), out=offsets[1:])
        t = np.broadcast_to(times[None, :], m.shape)[m]
        return SeriesStore(labels, t, inner.v[keep][m], offsets), ref

    def _bounds(self, node: Any) -> Bounds:
        """Series with samples in some window; first index and count per (series, step)."""
        node = _strip_parens(node)
        kind = type(node).__name__
        if kind == "MatrixSelector":
            st = self.store.without_stale()
            sids = st.select(self._matchers(node.vector_selector), version=self.version)
            ref = self._ref_times(node.vector_selector)
        elif kind == "SubqueryExpr":
            st, ref = self._subquery_store(node)
            sids = np.arange(len(st.labels), dtype="int64")
        else:
            raise BadInput(f"expected type range vector in call to function, got {kind}; "
                           "give a range selector such as x[5m] or a subquery such as x[1h:1m]")
        range_ms = _ms(node.range)
        rstart = ref - range_ms
        if not len(sids):
            empty = np.empty((0, self.T), dtype="int64")
            return Bounds(st, sids, empty, empty, rstart, ref, range_ms)
        lo = np.searchsorted(st.keys, st.query_keys(sids, rstart), side="right" if self.left_open else "left")
        hi = np.searchsorted(st.keys, st.query_keys(sids, ref), side="right")
        cnt = hi - lo
        live = np.flatnonzero(cnt.any(axis=1))
        return Bounds(st, sids[live], lo[live], cnt[live], rstart, ref, range_ms)

    def _windows(self, node: Any) -> Iterator[tuple[list[Labels], np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray, np.ndarray, np.ndarray]]:
        """Per chunk of series: values, times, mask (S,T,K), counts (S,T), range start/end (T,).

        `node` is a range selector or subquery, or its Bounds already computed."""
        b = node if isinstance(node, Bounds) else self._bounds(node)
        if not len(b.sids):
            return
        st, sids, lo, cnt = b.store, b.sids, b.lo, b.cnt
        K = int(cnt.max())
        per_row = max(1, self.T * K)
        step = max(1, CHUNK_CELLS // per_row)
        ar = np.arange(K)
        last = len(st.values) - 1
        for a in range(0, len(sids), step):
            c = cnt[a:a + step]
            M = ar[None, None, :] < c[:, :, None]
            idx = np.minimum(lo[a:a + step, :, None] + ar[None, None, :], last)
            yield ([st.labels[s] for s in sids[a:a + step]], st.values[idx], st.times[idx], M, c, b.rstart, b.ref)
