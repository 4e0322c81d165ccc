"""A vectorised PromQL evaluator with Prometheus 3.x or 2.x semantics.

Every expression is evaluated at all steps at once: an instant vector is a (series × steps)
matrix of values plus a presence mask, so a range query costs about as much as an instant one.
Range functions gather each series' samples per window with one `searchsorted` over all
(series, step) pairs. Anything not implemented raises UnsupportedQuery; it never guesses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from incidentbook.errors import BadInput
from incidentbook.telemetry.promql.aggregate import Aggregations
from incidentbook.telemetry.promql.binary import Binaries
from incidentbook.telemetry.promql.common import (
    _MATCH_OPS,
    CHUNK_CELLS,
    LOOKBACK_MS,
    Value,
    _empty_vector,
    _ms,
    _strict_unique,
    unsupported,
)
from incidentbook.telemetry.promql.functions import Functions
from incidentbook.telemetry.promql.storage import Labels, SeriesStore
from incidentbook.telemetry.promql.values import (
    Matrix,
    Scalar,
    String,
    Vector,
    drop_name,
)


class Evaluator(Functions, Aggregations, Binaries):
    """Evaluates one parsed expression over a SeriesStore at the step times `times` (ms)."""

    def __init__(self, store: SeriesStore, times: np.ndarray, *, start_ms: int, end_ms: int,
                 lookback_ms: int = LOOKBACK_MS) -> None:
        self.store = store
        self.times = np.asarray(times, dtype="int64")
        self.T = len(self.times)
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.lookback = lookback_ms

    # ----------------------------------------------------------------- dispatch
    def eval(self, node: Any) -> Value:
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

    def _eval_SubqueryExpr(self, node: Any) -> Value:
        raise unsupported("subqueries (`expr[range:step]`)")

    def _eval_UnaryExpr(self, node: Any) -> Value:
        val = self.eval(node.expr)
        if isinstance(val, Scalar):
            return Scalar(-val.v)
        if isinstance(val, Vector):
            return _strict_unique(Vector([drop_name(ls) for ls in val.labels], -val.v, val.m))
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

    def _ref_times(self, vs: Any) -> np.ndarray:
        if vs.at is not None:
            kind = str(vs.at.type)
            if kind.endswith("Start"):
                at = self.start_ms
            elif kind.endswith("End"):
                at = self.end_ms
            else:
                at = int(round(vs.at.at.timestamp() * 1000))
            base = np.full(self.T, at, dtype="int64")
        else:
            base = self.times
        return base - _ms(vs.offset)

    def _eval_VectorSelector(self, vs: Any) -> Value:
        st = self.store
        sids = st.select(self._matchers(vs))
        if not len(sids):
            return _empty_vector(self.T)
        ref = self._ref_times(vs)
        hi = np.searchsorted(st.keys, st.query_keys(sids, ref), side="right")
        idx = hi - 1
        ok = idx >= st.offsets[sids][:, None]
        idx = np.maximum(idx, 0)
        ts = st.times[idx]
        ok &= ts >= (ref - self.lookback)[None, :]
        live = np.flatnonzero(ok.any(axis=1))
        return Vector([st.labels[sids[i]] for i in live], st.values[idx[live]], ok[live], ts[live])

    def _eval_MatrixSelector(self, node: Any) -> Value:
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

    def _bounds(self, node: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Series ids with samples in some window, first index and count per (series, step), range start/end."""
        if type(node).__name__ != "MatrixSelector":
            raise unsupported(f"{type(node).__name__} as a range-vector argument")
        vs = node.vector_selector
        st = self.store
        sids = st.select(self._matchers(vs))
        ref = self._ref_times(vs)
        rstart = ref - _ms(node.range)
        if not len(sids):
            return sids, np.empty((0, self.T), dtype="int64"), np.empty((0, self.T), dtype="int64"), rstart, ref
        lo = np.searchsorted(st.keys, st.query_keys(sids, rstart), side="left")
        hi = np.searchsorted(st.keys, st.query_keys(sids, ref), side="right")
        cnt = hi - lo
        live = np.flatnonzero(cnt.any(axis=1))
        return sids[live], lo[live], cnt[live], rstart, ref

    def _windows(self, node: Any) -> Iterator[tuple[list[Labels], np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray, np.ndarray, np.ndarray]]:
        """Per chunk of series: values, times, mask (S,T,K), counts (S,T), range start/end (T,)."""
        sids, lo, cnt, rstart, ref = self._bounds(node)
        if not len(sids):
            return
        st = self.store
        K = int(cnt.max())
        per_row = max(1, self.T * K)
        step = max(1, CHUNK_CELLS // per_row)
        ar = np.arange(K)
        last = len(st.values) - 1
        for a in range(0, len(sids), step):
            b = a + step
            c = cnt[a:b]
            M = ar[None, None, :] < c[:, :, None]
            idx = np.minimum(lo[a:b, :, None] + ar[None, None, :], last)
            yield ([st.labels[s] for s in sids[a:b]], st.values[idx], st.times[idx], M, c, rstart, ref)

