"""A vectorised PromQL evaluator with Prometheus 2.x semantics.

Every expression is evaluated at all steps at once: an instant vector is a (series × steps)
matrix of values plus a presence mask, so a range query costs about as much as an instant one.
Range functions gather each series' samples per window with one `searchsorted` over all
(series, step) pairs. Anything not implemented raises UnsupportedQuery; it never guesses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import promql_parser

from incidentbook.errors import BadInput, UnsupportedQuery
from incidentbook.telemetry.promql.storage import Labels, SeriesStore
from incidentbook.telemetry.promql.values import (
    Matrix,
    Scalar,
    String,
    Vector,
    drop_name,
    format_count_value,
    merge_rows,
)

LOOKBACK_MS = 5 * 60 * 1000
MAX_POINTS = 11_000
# Gathered window cells per chunk (series × steps × samples per window).
CHUNK_CELLS = 2_000_000

Value = Vector | Scalar | String | Matrix


def unsupported(thing: str) -> UnsupportedQuery:
    """The error for a PromQL feature the replay engine does not implement."""
    return UnsupportedQuery(f"not supported in replay: {thing}; query a live Prometheus, "
                            "or rewrite the query with supported functions")


def parse(promql: str) -> Any:
    """Parse PromQL, turning parser errors into BadInput with the parser's message."""
    try:
        return promql_parser.parse(promql)
    except ValueError as e:
        if "unknown function with name 'holt_winters'" in str(e):
            raise unsupported("function holt_winters()") from None
        raise BadInput(f"bad PromQL {promql!r}: {e}") from None


def _ms(td: timedelta | None) -> int:
    if td is None:
        return 0
    return int(td // timedelta(milliseconds=1))


_MATCH_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
_ARITH = {"+", "-", "*", "/", "%", "^", "atan2"}
_CMP = {"==", "!=", ">", "<", ">=", "<="}
_SET = {"and", "or", "unless"}


def _arith(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return np.true_divide(a, b)
        if op == "%":
            return np.fmod(a, b)
        if op == "^":
            return np.power(a, b)
        return np.arctan2(a, b)


def _cmp(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return {"==": np.equal, "!=": np.not_equal, ">": np.greater, "<": np.less,
                ">=": np.greater_equal, "<=": np.less_equal}[op](a, b)


def _empty_vector(t: int) -> Vector:
    return Vector([], np.empty((0, t)), np.zeros((0, t), dtype=bool))


def _strict_unique(vec: Vector) -> Vector:
    """Prometheus rejects a whole result where two non-empty series share a label set."""
    live = vec.m.any(axis=1)
    seen: set[Labels] = set()
    for ls, ok in zip(vec.labels, live):
        if ok:
            if ls in seen:
                raise BadInput("vector cannot contain metrics with the same labelset; "
                               "aggregate or relabel the series before this function")
            seen.add(ls)
    keep = np.flatnonzero(live)
    return Vector([vec.labels[i] for i in keep], vec.v[keep], vec.m[keep])


def _quantile_sorted(q: np.ndarray, values: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus's quantile over axis 0 of (n, T) values where present; NaN sorts first."""
    n = present.sum(axis=0)
    isnan = np.isnan(values) & present
    key = np.where(present, np.where(isnan, -np.inf, values), np.inf)
    srt = np.sort(key, axis=0)
    nnan = isnan.sum(axis=0)
    rows = np.arange(values.shape[0])[:, None]
    srt = np.where(rows < nnan[None, :], np.nan, srt)
    with np.errstate(invalid="ignore"):
        rank = q * (n - 1)
        lower = np.maximum(0, np.floor(rank))
        upper = np.minimum(n - 1, lower + 1)
        weight = rank - np.floor(rank)
        li = np.clip(np.nan_to_num(lower), 0, max(values.shape[0] - 1, 0)).astype(int)
        ui = np.clip(np.nan_to_num(upper), 0, max(values.shape[0] - 1, 0)).astype(int)
        cols = np.arange(values.shape[1])
        res = srt[li, cols] * (1 - weight) + srt[ui, cols] * weight
    res = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, res))
    return res, n > 0


class Evaluator:
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

    # ------------------------------------------------------------------- calls
    def _eval_Call(self, node: Any) -> Value:
        name = node.func.name
        args = list(node.args)
        if name in _RANGE_FUNCS:
            return self._range_call(name, args)
        if name in _ELEMENTWISE:
            return self._elementwise(args, _ELEMENTWISE[name])
        fn = getattr(self, "_fn_" + name, None)
        if fn is None:
            raise unsupported(f"function {name}()")
        return fn(args)

    def _scalar_arg(self, node: Any) -> np.ndarray:
        val = self.eval(node)
        if not isinstance(val, Scalar):
            raise BadInput("expected a scalar argument; wrap it in scalar()")
        return val.v

    def _vector_arg(self, node: Any) -> Vector:
        val = self.eval(node)
        if not isinstance(val, Vector):
            raise BadInput("expected an instant vector argument")
        return val

    def _range_call(self, name: str, args: list[Any]) -> Value:
        fn, arg_pos = _RANGE_FUNCS[name]
        extra = [self._scalar_arg(a) for i, a in enumerate(args) if i != arg_pos]
        msel = args[arg_pos]
        if type(msel).__name__ == "MatrixSelector" and msel.vector_selector.at is not None and name in (
                "rate", "increase", "delta", "irate", "idelta"):
            raise unsupported(f"the @ modifier inside {name}()")
        if name == "absent_over_time":
            return self._absent(msel.vector_selector if type(msel).__name__ == "MatrixSelector" else msel,
                                self._windows(msel), windows=True)
        if name in _ENDPOINT_FUNCS and self.store.resets_finite:
            return self._endpoint_call(name, msel)
        labels: list[Labels] = []
        vals, masks = [], []
        for ls, W, Wt, M, cnt, rstart, rend in self._windows(msel):
            ctx = _Ctx(W, Wt, M, cnt, rstart, rend, self.times, extra)
            v, ok = fn(ctx)
            labels.extend(ls if name == "last_over_time" else [drop_name(x) for x in ls])
            vals.append(v)
            masks.append(ok)
        if not labels:
            return _empty_vector(self.T)
        return _strict_unique(Vector(labels, np.concatenate(vals), np.concatenate(masks)))

    def _endpoint_call(self, name: str, msel: Any) -> Value:
        """rate/increase/delta/irate/idelta from window end points and a cumulative reset sum:
        O(series × steps) whatever the window length."""
        st = self.store
        sids, lo, cnt, rstart, rend = self._bounds(msel)
        if not len(sids):
            return _empty_vector(self.T)
        # Where a window is empty its indices may point past the end; they are masked out anyway.
        top = len(st.values) - 1
        last_i = np.minimum(lo + np.maximum(cnt - 1, 0), top)
        lo = np.minimum(lo, top)
        ok = cnt >= 2
        with np.errstate(all="ignore"):
            if name in ("irate", "idelta"):
                prev_i = np.maximum(last_i - 1, lo)
                last, prev = st.values[last_i], st.values[prev_i]
                lt, pt = st.times[last_i], st.times[prev_i]
                if name == "irate":
                    val = np.where(last < prev, last, last - prev) / ((lt - pt) / 1000.0)
                else:
                    val = last - prev
                ok &= lt != pt
            else:
                counter = name != "delta"
                corr = (st.reset_cumsum[last_i] - st.reset_cumsum[lo]) if counter else 0.0
                val = _extrapolate(st.values[lo], st.values[last_i], st.times[lo], st.times[last_i], cnt, corr,
                                   rstart, rend, _ms(msel.range) / 1000.0, counter, name == "rate")
        labels = [drop_name(st.labels[s]) for s in sids]
        return _strict_unique(Vector(labels, val, ok))

    def _elementwise(self, args: list[Any], f: Callable[[np.ndarray], np.ndarray]) -> Value:
        vec = self._vector_arg(args[0])
        with np.errstate(all="ignore"):
            out = f(vec.v)
        return merge_rows([drop_name(ls) for ls in vec.labels], out, vec.m.copy())

    def _fn_abs(self, a: list[Any]) -> Value:
        return self._elementwise(a, np.abs)

    def _fn_ceil(self, a: list[Any]) -> Value:
        return self._elementwise(a, np.ceil)

    def _fn_floor(self, a: list[Any]) -> Value:
        return self._elementwise(a, np.floor)

    def _fn_exp(self, a: list[Any]) -> Value:
        return self._elementwise(a, np.exp)

    def _fn_sqrt(self, a: list[Any]) -> Value:
        return self._elementwise(a, np.sqrt)

    def _fn_ln(self, a: list[Any]) -> Value:
        return self._elementwise(a, np.log)

    def _fn_log2(self, a: list[Any]) -> Value:
        return self._elementwise(a, np.log2)

    def _fn_log10(self, a: list[Any]) -> Value:
        return self._elementwise(a, np.log10)

    def _fn_sgn(self, a: list[Any]) -> Value:
        return self._elementwise(a, np.sign)

    def _fn_deg(self, a: list[Any]) -> Value:
        return self._elementwise(a, lambda v: v * 180 / math.pi)

    def _fn_rad(self, a: list[Any]) -> Value:
        return self._elementwise(a, lambda v: v * math.pi / 180)

    def _fn_pi(self, a: list[Any]) -> Value:
        return Scalar(np.full(self.T, math.pi))

    def _date_fn(self, a: list[Any], part: Callable[[pd.DatetimeIndex], np.ndarray]) -> Value:
        if not a:
            secs = self.times // 1000
            return Vector([()], part(pd.DatetimeIndex(pd.to_datetime(secs, unit="s")))[None, :].astype(float),
                          np.ones((1, self.T), dtype=bool))
        vec = self._vector_arg(a[0])
        if np.isnan(vec.v[vec.m]).any() or np.isinf(vec.v[vec.m]).any():
            raise unsupported("date functions over NaN or infinite values")
        secs = np.trunc(np.where(vec.m, vec.v, 0.0)).astype("int64")
        out = part(pd.DatetimeIndex(pd.to_datetime(secs.ravel(), unit="s"))).reshape(secs.shape).astype(float)
        return merge_rows([drop_name(ls) for ls in vec.labels], out, vec.m.copy())

    def _fn_minute(self, a: list[Any]) -> Value:
        return self._date_fn(a, lambda d: np.asarray(d.minute))

    def _fn_hour(self, a: list[Any]) -> Value:
        return self._date_fn(a, lambda d: np.asarray(d.hour))

    def _fn_day_of_week(self, a: list[Any]) -> Value:
        return self._date_fn(a, lambda d: (np.asarray(d.day_of_week) + 1) % 7)  # Sunday is 0, as in Go

    def _fn_day_of_month(self, a: list[Any]) -> Value:
        return self._date_fn(a, lambda d: np.asarray(d.day))

    def _fn_day_of_year(self, a: list[Any]) -> Value:
        return self._date_fn(a, lambda d: np.asarray(d.day_of_year))

    def _fn_days_in_month(self, a: list[Any]) -> Value:
        return self._date_fn(a, lambda d: np.asarray(d.days_in_month))

    def _fn_month(self, a: list[Any]) -> Value:
        return self._date_fn(a, lambda d: np.asarray(d.month))

    def _fn_year(self, a: list[Any]) -> Value:
        return self._date_fn(a, lambda d: np.asarray(d.year))

    def _fn_round(self, a: list[Any]) -> Value:
        to = self._scalar_arg(a[1]) if len(a) > 1 else np.ones(self.T)
        inv = 1.0 / to
        return self._elementwise(a[:1], lambda v: np.floor(v * inv[None, :] + 0.5) / inv[None, :])

    def _clamp(self, args: list[Any], lo: np.ndarray | None, hi: np.ndarray | None) -> Value:
        vec = self._vector_arg(args[0])
        out = vec.v
        with np.errstate(all="ignore"):
            if hi is not None:
                out = np.where(np.isnan(hi)[None, :], np.nan, np.minimum(hi[None, :], out))
            if lo is not None:
                out = np.where(np.isnan(lo)[None, :], np.nan, np.maximum(lo[None, :], out))
        m = vec.m.copy()
        if lo is not None and hi is not None:
            m &= ~(hi < lo)[None, :]
        return merge_rows([drop_name(ls) for ls in vec.labels], out, m)

    def _fn_clamp(self, a: list[Any]) -> Value:
        return self._clamp(a, self._scalar_arg(a[1]), self._scalar_arg(a[2]))

    def _fn_clamp_min(self, a: list[Any]) -> Value:
        return self._clamp(a, self._scalar_arg(a[1]), None)

    def _fn_clamp_max(self, a: list[Any]) -> Value:
        return self._clamp(a, None, self._scalar_arg(a[1]))

    def _fn_time(self, a: list[Any]) -> Value:
        return Scalar(self.times / 1000.0)

    def _fn_vector(self, a: list[Any]) -> Value:
        s = self._scalar_arg(a[0])
        return Vector([()], s[None, :].copy(), np.ones((1, self.T), dtype=bool))

    def _fn_scalar(self, a: list[Any]) -> Value:
        vec = self._vector_arg(a[0])
        n = vec.m.sum(axis=0)
        if not len(vec.labels):
            return Scalar(np.full(self.T, np.nan))
        pick = np.argmax(vec.m, axis=0)
        val = vec.v[pick, np.arange(self.T)]
        return Scalar(np.where(n == 1, val, np.nan))

    def _fn_timestamp(self, a: list[Any]) -> Value:
        arg = a[0]
        while type(arg).__name__ == "ParenExpr":
            arg = arg.expr
        vec = self._vector_arg(arg)
        if type(arg).__name__ == "VectorSelector" and vec.ts is not None:
            t = vec.ts / 1000.0
        else:
            t = np.broadcast_to(self.times / 1000.0, vec.v.shape).copy()
        return merge_rows([drop_name(ls) for ls in vec.labels], t, vec.m.copy())

    def _fn_sort(self, a: list[Any]) -> Value:
        return self._vector_arg(a[0])

    def _fn_sort_desc(self, a: list[Any]) -> Value:
        return self._vector_arg(a[0])

    def _absent(self, vs: Any, source: Any, windows: bool = False) -> Value:
        present = np.zeros(self.T, dtype=bool)
        if windows:
            for _ls, _W, _Wt, _M, cnt, _s, _e in source:
                present |= (cnt > 0).any(axis=0)
        else:
            present = source.m.any(axis=0) if len(source.labels) else present
        labels: dict[str, str] = {}
        if type(vs).__name__ == "VectorSelector":
            dropped = set()
            for name, op, value in self._matchers(vs):
                if name == "__name__":
                    continue
                if op == "=" and name not in labels and name not in dropped:
                    labels[name] = value
                else:
                    dropped.add(name)
            for d in dropped:
                labels.pop(d, None)
            labels = {k: v for k, v in labels.items() if v != ""}
        return Vector([tuple(sorted(labels.items()))], np.ones((1, self.T)), (~present)[None, :])

    def _fn_absent(self, a: list[Any]) -> Value:
        arg = a[0]
        return self._absent(arg, self._vector_arg(arg))

    def _fn_label_replace(self, a: list[Any]) -> Value:
        from incidentbook.telemetry.promql.storage import compile_regex

        vec = self._vector_arg(a[0])
        dst, repl, src, regex = (self._string_arg(x) for x in a[1:5])
        rx = compile_regex(regex)
        if not _valid_label_name(dst):
            raise BadInput(f"invalid destination label name in label_replace(): {dst!r}")
        out = []
        for ls in vec.labels:
            d = dict(ls)
            m = rx.match(d.get(src, ""))
            if m is not None:
                res = _go_expand(repl, m)
                if res:
                    d[dst] = res
                else:
                    d.pop(dst, None)
            out.append(tuple(sorted(d.items())))
        return merge_rows(out, vec.v, vec.m)

    def _fn_label_join(self, a: list[Any]) -> Value:
        vec = self._vector_arg(a[0])
        dst, sep = self._string_arg(a[1]), self._string_arg(a[2])
        srcs = [self._string_arg(x) for x in a[3:]]
        if not _valid_label_name(dst):
            raise BadInput(f"invalid destination label name in label_join(): {dst!r}")
        out = []
        for ls in vec.labels:
            d = dict(ls)
            val = sep.join(d.get(s, "") for s in srcs)
            if val:
                d[dst] = val
            else:
                d.pop(dst, None)
            out.append(tuple(sorted(d.items())))
        return merge_rows(out, vec.v, vec.m)

    def _string_arg(self, node: Any) -> str:
        val = self.eval(node)
        if not isinstance(val, String):
            raise BadInput("expected a string argument")
        return val.s

    def _fn_histogram_quantile(self, a: list[Any]) -> Value:
        q = self._scalar_arg(a[0])
        vec = self._vector_arg(a[1])
        groups: dict[Labels, list[tuple[float, int]]] = {}
        order: list[Labels] = []
        for i, ls in enumerate(vec.labels):
            d = dict(ls)
            try:
                ub = float(_go_parse_float(d.get("le", "")))
            except ValueError:
                continue
            key = tuple(p for p in ls if p[0] not in ("__name__", "le"))
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append((ub, i))
        out_l, out_v, out_m = [], [], []
        for key in order:
            v, m = _bucket_quantile(q, groups[key], vec.v, vec.m)
            out_l.append(key)
            out_v.append(v)
            out_m.append(m)
        if not out_l:
            return _empty_vector(self.T)
        return Vector(out_l, np.array(out_v), np.array(out_m))

    # ------------------------------------------------------------- aggregation
    def _eval_AggregateExpr(self, node: Any) -> Value:
        op = str(node.op)
        if op not in _AGG_OPS:
            raise unsupported(f"aggregation {op}")
        vec = self._vector_arg(node.expr)
        mod = node.modifier
        by = mod is None or str(mod.type).endswith("By")
        names = list(mod.labels) if mod is not None else []
        param: Any = None
        if op in ("topk", "bottomk", "quantile"):
            param = self._scalar_arg(node.param)
        elif op == "count_values":
            param = self._string_arg(node.param)
            if not _valid_label_name(param):
                raise BadInput(f"invalid label name {param!r} in count_values()")
            if by:
                names = names + [param]
        nameset = set(names)

        def group_key(ls: Labels) -> Labels:
            if by:
                return tuple(p for p in ls if p[0] in nameset)
            return tuple(p for p in ls if p[0] not in nameset and p[0] != "__name__")

        if op == "count_values":
            return self._count_values(vec, param, group_key)
        gid_of: dict[Labels, int] = {}
        gids = np.empty(len(vec.labels), dtype=int)
        for i, ls in enumerate(vec.labels):
            gids[i] = gid_of.setdefault(group_key(ls), len(gid_of))
        keys = list(gid_of)
        G = len(keys)
        if G == 0:
            return _empty_vector(self.T)
        if op in ("topk", "bottomk"):
            return self._topk(vec, gids, G, param, op == "topk")
        order = np.argsort(gids, kind="stable")
        sg = gids[order]
        starts = np.flatnonzero(np.r_[True, sg[1:] != sg[:-1]])
        V, M = vec.v[order], vec.m[order]
        cnt = np.add.reduceat(M.astype("int64"), starts, axis=0)
        present = cnt > 0
        with np.errstate(all="ignore"):
            if op in ("sum", "avg", "stddev", "stdvar"):
                total = np.add.reduceat(np.where(M, V, 0.0), starts, axis=0)
            if op == "sum":
                res = total
            elif op == "avg":
                res = total / cnt
            elif op == "count":
                res = cnt.astype(float)
            elif op == "group":
                res = np.ones(cnt.shape)
            elif op == "min":
                res = np.fmin.reduceat(np.where(M, V, np.nan), starts, axis=0)
            elif op == "max":
                res = np.fmax.reduceat(np.where(M, V, np.nan), starts, axis=0)
            elif op in ("stddev", "stdvar"):
                mean = total / cnt
                dev = np.where(M, (V - mean[sg]) ** 2, 0.0)
                res = np.add.reduceat(dev, starts, axis=0) / cnt
                lo = np.fmin.reduceat(np.where(M, V, np.nan), starts, axis=0)
                hi = np.fmax.reduceat(np.where(M, V, np.nan), starts, axis=0)
                res = np.where((lo == hi) & np.isfinite(lo), 0.0, res)
                if op == "stddev":
                    res = np.sqrt(res)
            elif op == "quantile":
                res = np.empty(cnt.shape)
                bounds = list(starts) + [len(sg)]
                for g in range(G):
                    r, _ = _quantile_sorted(param, V[bounds[g]:bounds[g + 1]], M[bounds[g]:bounds[g + 1]])
                    res[g] = r
        # reduceat groups come out in group-id order, which is first-appearance order.
        return Vector(keys, res, present)

    def _topk(self, vec: Vector, gids: np.ndarray, G: int, k: np.ndarray, top: bool) -> Value:
        kk = np.where(np.isnan(k), 0, np.trunc(k)).astype("int64") if len(k) else k
        sel = np.zeros_like(vec.m)
        for g in range(G):
            rows = np.flatnonzero(gids == g)
            V, M = vec.v[rows], vec.m[rows]
            cls = np.where(M, np.where(np.isnan(V), 1, 0), 2)
            score = -V if top else V
            score = np.where(np.isnan(score), 0, score)
            order = np.lexsort((score, cls), axis=0)
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(len(rows))[:, None].repeat(self.T, axis=1), axis=0)
            sel[rows] = M & (rank < kk[None, :])
        return Vector(vec.labels, vec.v, sel)

    def _count_values(self, vec: Vector, label: str, group_key: Callable[[Labels], Labels]) -> Value:
        present = np.argwhere(vec.m)
        if not len(present):
            return _empty_vector(self.T)
        vals = vec.v[vec.m]
        uniq, inv = np.unique(vals, return_inverse=True)
        strs = [format_count_value(x) for x in uniq.tolist()]
        out: dict[Labels, int] = {}
        counts: list[np.ndarray] = []
        cache: dict[tuple[int, int], int] = {}
        for (row, step), u in zip(present.tolist(), inv.tolist()):
            ck = (row, u)
            j = cache.get(ck)
            if j is None:
                d = dict(vec.labels[row])
                d[label] = strs[u]
                key = group_key(tuple(sorted(d.items())))
                j = out.get(key)
                if j is None:
                    j = out[key] = len(counts)
                    counts.append(np.zeros(self.T))
                cache[ck] = j
            counts[j][step] += 1
        arr = np.array(counts)
        return Vector(list(out), arr, arr > 0)

    # ---------------------------------------------------------------- binaries
    def _eval_BinaryExpr(self, node: Any) -> Value:
        op = str(node.op)
        mod = node.modifier
        if mod is not None and (mod.fill_values.lhs is not None or mod.fill_values.rhs is not None):
            raise unsupported("fill() modifiers")
        ret_bool = bool(mod.return_bool) if mod is not None else False
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        if op not in _ARITH | _CMP | _SET:
            raise unsupported(f"binary operator {op}")
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            if op in _CMP:
                return Scalar(_cmp(op, lhs.v, rhs.v).astype(float))
            return Scalar(_arith(op, lhs.v, rhs.v))
        if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
            return self._vector_scalar(op, lhs, rhs.v, False, ret_bool)
        if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
            return self._vector_scalar(op, rhs, lhs.v, True, ret_bool)
        if isinstance(lhs, Vector) and isinstance(rhs, Vector):
            if op in _SET:
                return self._set_op(op, lhs, rhs, mod)
            return self._vector_vector(op, lhs, rhs, mod, ret_bool)
        raise unsupported(f"operator {op} between these operand types")

    def _vector_scalar(self, op: str, vec: Vector, s: np.ndarray, swap: bool, ret_bool: bool) -> Value:
        lv, rv = (s[None, :], vec.v) if swap else (vec.v, s[None, :])
        if op in _CMP:
            keep = _cmp(op, lv, rv)
            if ret_bool:
                return merge_rows([drop_name(ls) for ls in vec.labels], keep.astype(float), vec.m.copy())
            return Vector(vec.labels, vec.v, vec.m & keep)
        return merge_rows([drop_name(ls) for ls in vec.labels], _arith(op, lv, rv), vec.m.copy())

    @staticmethod
    def _signature(mod: Any) -> Callable[[Labels], Labels]:
        matching = mod.matching if mod is not None else None
        if matching is not None and str(matching.type).endswith("Include"):
            on = set(matching.labels)
            return lambda ls: tuple(p for p in ls if p[0] in on)
        ign = set(matching.labels) if matching is not None else set()
        return lambda ls: tuple(p for p in ls if p[0] not in ign and p[0] != "__name__")

    def _set_op(self, op: str, lhs: Vector, rhs: Vector, mod: Any) -> Value:
        sig = self._signature(mod)

        def any_by_sig(vec: Vector) -> dict[Labels, np.ndarray]:
            out: dict[Labels, np.ndarray] = {}
            for ls, m in zip(vec.labels, vec.m):
                k = sig(ls)
                out[k] = out[k] | m if k in out else m.copy()
            return out

        none = np.zeros(self.T, dtype=bool)
        if op == "and":
            r = any_by_sig(rhs)
            m = np.array([mm & r.get(sig(ls), none) for ls, mm in zip(lhs.labels, lhs.m)]).reshape(lhs.m.shape)
            return Vector(lhs.labels, lhs.v, m)
        if op == "unless":
            r = any_by_sig(rhs)
            m = np.array([mm & ~r.get(sig(ls), none) for ls, mm in zip(lhs.labels, lhs.m)]).reshape(lhs.m.shape)
            return Vector(lhs.labels, lhs.v, m)
        left = any_by_sig(lhs)
        rm = np.array([mm & ~left.get(sig(ls), none) for ls, mm in zip(rhs.labels, rhs.m)]).reshape(rhs.m.shape)
        return merge_rows(lhs.labels + rhs.labels, np.concatenate([lhs.v, rhs.v]), np.concatenate([lhs.m, rm]))

    def _vector_vector(self, op: str, lhs: Vector, rhs: Vector, mod: Any, ret_bool: bool) -> Value:
        card = str(mod.card).rsplit(".", 1)[-1] if mod is not None else "OneToOne"
        if card == "ManyToMany":
            raise unsupported(f"many-to-many matching with {op}")
        sig = self._signature(mod)
        matching = mod.matching if mod is not None else None
        on = matching is not None and str(matching.type).endswith("Include")
        match_names = set(matching.labels) if matching is not None else set()
        include = list(mod.group_labels or []) if mod is not None else []
        swapped = card == "OneToMany"
        many, one = (rhs, lhs) if swapped else (lhs, rhs)
        both = many.m.any(axis=0) & one.m.any(axis=0)
        one_rows: dict[Labels, list[int]] = {}
        for j, ls in enumerate(one.labels):
            one_rows.setdefault(sig(ls), []).append(j)
        for k, rows in one_rows.items():
            if len(rows) > 1 and ((one.m[rows].sum(axis=0) > 1) & both).any():
                side = "left" if swapped else "right"
                raise BadInput(f"found duplicate series for the match group {_fmt_labels(k)} on the {side} "
                               "hand-side of the operation; many-to-many matching not allowed: matching "
                               "labels must be unique on one side")
        pi, pj, psig = [], [], []
        for i, ls in enumerate(many.labels):
            k = sig(ls)
            for j in one_rows.get(k, ()):
                pi.append(i)
                pj.append(j)
                psig.append(k)
        if not pi:
            return _empty_vector(self.T)
        many_idx, one_idx = np.array(pi), np.array(pj)
        mv, ov = many.v[many_idx], one.v[one_idx]
        vl, vr = (ov, mv) if swapped else (mv, ov)
        m = many.m[many_idx] & one.m[one_idx]
        if op in _CMP:
            keep = _cmp(op, vl, vr)
            if ret_bool:
                val = keep.astype(float)
            else:
                val = vl
                m = m & keep
        else:
            val = _arith(op, vl, vr)
        drop = op in _ARITH or ret_bool
        labels: list[Labels] = []
        for i, j in zip(pi, pj):
            d = dict(many.labels[i])
            if op in _ARITH:
                d.pop("__name__", None)
            if card == "OneToOne":
                if on:
                    d = {k: v for k, v in d.items() if k in match_names}
                else:
                    for n in match_names:
                        d.pop(n, None)
            if include:
                od = dict(one.labels[j])
                for n in include:
                    if od.get(n, ""):
                        d[n] = od[n]
                    else:
                        d.pop(n, None)
            if drop:
                d.pop("__name__", None)
            labels.append(tuple(sorted(d.items())))
        # Matching must be unique per step: one-to-one per match group, many-to-one per result series.
        bucket: dict[Any, list[int]] = {}
        for p, k in enumerate(psig):
            bucket.setdefault(k if card == "OneToOne" else (k, labels[p]), []).append(p)
        for rows in bucket.values():
            if len(rows) > 1 and (m[rows].sum(axis=0) > 1).any():
                if card == "OneToOne":
                    raise BadInput("multiple matches for labels: many-to-one matching must be explicit "
                                   "(group_left/group_right)")
                raise BadInput("multiple matches for labels: grouping labels must ensure unique matches")
        return merge_rows(labels, val, m)


# Elementwise math functions beyond the ones with their own methods (Prometheus drops __name__).
_ELEMENTWISE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "asinh": np.arcsinh, "acosh": np.arccosh,
    "atanh": np.arctanh,
}


class _Ctx:
    """What a range function sees: windows (S,T,K), counts (S,T), range bounds, extra args."""

    def __init__(self, W: np.ndarray, Wt: np.ndarray, M: np.ndarray, cnt: np.ndarray,
                 rstart: np.ndarray, rend: np.ndarray, times: np.ndarray, extra: list[np.ndarray]):
        self.W, self.Wt, self.M, self.cnt = W, Wt, M, cnt
        self.rstart, self.rend, self.times, self.extra = rstart, rend, times, extra
        self.range_s = float((rend[0] - rstart[0]) / 1000.0) if len(rend) else 0.0

    def at(self, arr: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return np.take_along_axis(arr, np.maximum(pos, 0)[..., None], axis=-1)[..., 0]

    @property
    def last(self) -> np.ndarray:
        return self.at(self.W, self.cnt - 1)

    @property
    def last_t(self) -> np.ndarray:
        return self.at(self.Wt, self.cnt - 1)


def _extrapolated(c: _Ctx, counter: bool, rate: bool) -> tuple[np.ndarray, np.ndarray]:
    corr: np.ndarray | float = 0.0
    if counter and c.W.shape[-1] > 1:
        prev, cur = c.W[..., :-1], c.W[..., 1:]
        with np.errstate(invalid="ignore"):
            corr = np.where(c.M[..., 1:] & (cur < prev), prev, 0.0).sum(axis=-1)
    val = _extrapolate(c.W[..., 0], c.last, c.Wt[..., 0], c.last_t, c.cnt, corr, c.rstart, c.rend,
                       c.range_s, counter, rate)
    return val, c.cnt >= 2


def _extrapolate(first: np.ndarray, last: np.ndarray, ft: np.ndarray, lt: np.ndarray, cnt: np.ndarray,
                 corr: np.ndarray | float, rstart: np.ndarray, rend: np.ndarray, range_s: float,
                 counter: bool, rate: bool) -> np.ndarray:
    """Prometheus's extrapolatedRate: (last - first + resets), extrapolated towards the range edges."""
    with np.errstate(all="ignore"):
        result = last - first
        if counter:
            result = result + corr
        dstart = (ft - rstart[None, :]) / 1000.0
        dend = (rend[None, :] - lt) / 1000.0
        sampled = (lt - ft) / 1000.0
        avg = sampled / (cnt - 1)
        if counter:
            dzero = sampled * (first / result)
            dstart = np.where((result > 0) & (first >= 0) & (dzero < dstart), dzero, dstart)
        thr = avg * 1.1
        ext = sampled + np.where(dstart < thr, dstart, avg / 2) + np.where(dend < thr, dend, avg / 2)
        factor = ext / sampled
        if rate:
            factor = factor / range_s
        return result * factor


def _instant(c: _Ctx, rate: bool) -> tuple[np.ndarray, np.ndarray]:
    ok = c.cnt >= 2
    with np.errstate(all="ignore"):
        last, prev = c.last, c.at(c.W, c.cnt - 2)
        lt, pt = c.last_t, c.at(c.Wt, c.cnt - 2)
        if rate:
            res = np.where(last < prev, last, last - prev) / ((lt - pt) / 1000.0)
        else:
            res = last - prev
    return res, ok & (lt != pt)


def _regression(c: _Ctx, intercept_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    M = c.M
    n = c.cnt.astype(float)
    with np.errstate(all="ignore"):
        x = np.where(M, (c.Wt - intercept_t[..., None]) / 1e3, 0.0)
        y = np.where(M, c.W, 0.0)
        sx, sy = x.sum(-1), y.sum(-1)
        sxy, sx2 = (x * y).sum(-1), (x * x).sum(-1)
        cov = sxy - sx * sy / n
        var = sx2 - sx * sx / n
        slope = cov / var
        intercept = sy / n - slope * sx / n
        first = c.W[..., 0]
        const = ~(M & (c.W != first[..., None])).any(-1)
        slope = np.where(const, np.where(np.isinf(first), np.nan, 0.0), slope)
        intercept = np.where(const, np.where(np.isinf(first), np.nan, first), intercept)
    return slope, intercept


def _deriv(c: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    slope, _ = _regression(c, c.Wt[..., 0])
    return slope, c.cnt >= 2


def _predict_linear(c: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    slope, icpt = _regression(c, np.broadcast_to(c.times[None, :], c.cnt.shape))
    return slope * c.extra[0][None, :] + icpt, c.cnt >= 2


def _masked(c: _Ctx, fill: float) -> np.ndarray:
    return np.where(c.M, c.W, fill)


def _sum_ot(c: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    return _masked(c, 0.0).sum(-1), c.cnt >= 1


def _avg_ot(c: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        return _masked(c, 0.0).sum(-1) / c.cnt, c.cnt >= 1


def _var_ot(c: _Ctx) -> np.ndarray:
    with np.errstate(all="ignore"):
        mean = _masked(c, 0.0).sum(-1) / c.cnt
        var = np.where(c.M, (c.W - mean[..., None]) ** 2, 0.0).sum(-1) / c.cnt
        lo, hi = np.fmin.reduce(_masked(c, np.nan), axis=-1), np.fmax.reduce(_masked(c, np.nan), axis=-1)
        return np.where((lo == hi) & np.isfinite(lo), 0.0, var)


def _quantile_ot(c: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    S, T, K = c.W.shape
    q = np.broadcast_to(c.extra[0][None, :], (S, T)).reshape(-1)
    W = c.W.reshape(S * T, K).T
    M = c.M.reshape(S * T, K).T
    res, ok = _quantile_sorted(q, W, M)
    return res.reshape(S, T), ok.reshape(S, T)


def _changes(c: _Ctx, resets: bool) -> tuple[np.ndarray, np.ndarray]:
    prev, cur, mm = c.W[..., :-1], c.W[..., 1:], c.M[..., 1:]
    with np.errstate(invalid="ignore"):
        if resets:
            hit = cur < prev
        else:
            hit = (cur != prev) & ~(np.isnan(cur) & np.isnan(prev))
    return (mm & hit).sum(-1).astype(float), c.cnt >= 1


_RANGE_FUNCS: dict[str, tuple[Callable[[_Ctx], tuple[np.ndarray, np.ndarray]], int]] = {
    "rate": (lambda c: _extrapolated(c, True, True), 0),
    "increase": (lambda c: _extrapolated(c, True, False), 0),
    "delta": (lambda c: _extrapolated(c, False, False), 0),
    "irate": (lambda c: _instant(c, True), 0),
    "idelta": (lambda c: _instant(c, False), 0),
    "deriv": (_deriv, 0),
    "predict_linear": (_predict_linear, 0),
    "changes": (lambda c: _changes(c, False), 0),
    "resets": (lambda c: _changes(c, True), 0),
    "sum_over_time": (_sum_ot, 0),
    "avg_over_time": (_avg_ot, 0),
    "count_over_time": (lambda c: (c.cnt.astype(float), c.cnt >= 1), 0),
    "min_over_time": (lambda c: (np.fmin.reduce(_masked(c, np.nan), axis=-1), c.cnt >= 1), 0),
    "max_over_time": (lambda c: (np.fmax.reduce(_masked(c, np.nan), axis=-1), c.cnt >= 1), 0),
    "last_over_time": (lambda c: (c.last, c.cnt >= 1), 0),
    "present_over_time": (lambda c: (np.ones(c.cnt.shape), c.cnt >= 1), 0),
    "stdvar_over_time": (lambda c: (_var_ot(c), c.cnt >= 1), 0),
    "stddev_over_time": (lambda c: (np.sqrt(_var_ot(c)), c.cnt >= 1), 0),
    "quantile_over_time": (_quantile_ot, 1),
    "absent_over_time": (lambda c: (c.cnt, c.cnt), 0),
}

_ENDPOINT_FUNCS = {"rate", "increase", "delta", "irate", "idelta"}

_AGG_OPS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk",
            "quantile", "count_values"}


def _bucket_quantile(q: np.ndarray, buckets: list[tuple[float, int]], V: np.ndarray,
                     Mall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """histogram_quantile for one group at every step (Prometheus's bucketQuantile, vectorised)."""
    T = V.shape[1]
    buckets = sorted(buckets, key=lambda b: b[0])
    bounds_l: list[float] = []
    rows_v: list[np.ndarray] = []
    rows_m: list[np.ndarray] = []
    for ub, i in buckets:  # coalesce equal upper bounds (summing the present ones)
        if bounds_l and bounds_l[-1] == ub:
            rows_v[-1] = rows_v[-1] + np.where(Mall[i], V[i], 0.0)
            rows_m[-1] = rows_m[-1] | Mall[i]
        else:
            bounds_l.append(ub)
            rows_v.append(np.where(Mall[i], V[i], 0.0))
            rows_m.append(Mall[i].copy())
    bounds = np.array(bounds_l)
    C, M = np.array(rows_v), np.array(rows_m)
    B = len(bounds)
    out_m = M.any(axis=0)
    if np.isnan(np.where(M, C, 0.0)).any():
        raise unsupported("histogram_quantile over buckets holding NaN")
    res = np.full(T, np.nan)
    inf_ok = np.isposinf(bounds[-1]) & M[-1]
    nb = M.sum(axis=0)
    with np.errstate(all="ignore"):
        mono = np.maximum.accumulate(np.where(M, C, -np.inf), axis=0)
        obs = mono[-1]
        valid = inf_ok & (nb >= 2) & (obs != 0)
        rank = q * obs
        rows = np.arange(B)[:, None]
        # The previous present bucket of each row, per step (-1 if none).
        pres_idx = np.where(M, rows, -1)
        prev_present = np.vstack([np.full((1, T), -1), np.maximum.accumulate(pres_idx, axis=0)[:-1]])
        cand = M & (mono >= rank[None, :]) & (rows < B - 1)
        has = cand.any(axis=0)
        b = np.where(has, np.argmax(cand, axis=0), B - 1)
        cols = np.arange(T)
        pb = prev_present[b, cols]
        upper = bounds[b]
        prev_bound = np.where(pb >= 0, bounds[np.maximum(pb, 0)], 0.0)
        prev_count = np.where(pb >= 0, mono[np.maximum(pb, 0), cols], 0.0)
        count = mono[b, cols] - prev_count
        interp = prev_bound + (upper - prev_bound) * ((rank - prev_count) / count)
        # b is the +Inf bucket: the answer is the upper bound of the last finite present bucket.
        at_inf = ~has
        res = np.where(at_inf, prev_bound, interp)
        first_nonpos = (pb < 0) & (upper <= 0)
        res = np.where(first_nonpos & ~at_inf, upper, res)
        res = np.where(valid, res, np.nan)
        res = np.where(np.isnan(q), np.nan, np.where(q < 0, -np.inf, np.where(q > 1, np.inf, res)))
    return res, out_m


def _valid_label_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) is not None


def _go_parse_float(s: str) -> float:
    t = s.strip().lower()
    if t in ("+inf", "inf", "infinity", "+infinity"):
        return math.inf
    if t in ("-inf", "-infinity"):
        return -math.inf
    if t == "nan":
        return math.nan
    if not s or s != s.strip() or "_" in s:
        raise ValueError(s)
    return float(s)


def _go_expand(template: str, m: Any) -> str:
    """Go's regexp.Expand: `$1`, `${1}`, `$name`, `${name}`, `$$`; unknown groups expand to ''."""
    import re

    def group(name: str) -> str:
        try:
            idx: int | str = int(name) if name.isdigit() else name
            g = m.group(idx)
        except (IndexError, error_type):
            return ""
        return g or ""

    error_type = re.error
    out, i = [], 0
    while i < len(template):
        ch = template[i]
        if ch != "$" or i + 1 >= len(template):
            out.append(ch)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            end = template.find("}", i + 2)
            name = template[i + 2:end] if end > 0 else ""
            if end < 0 or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                out.append(ch)
                i += 1
                continue
            out.append(group(name))
            i = end + 1
            continue
        mm = re.match(r"[A-Za-z0-9_]+", template[i + 1:])
        if not mm:
            out.append(ch)
            i += 1
            continue
        out.append(group(mm.group(0)))
        i += 1 + len(mm.group(0))
    return "".join(out)


def _fmt_labels(ls: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in ls) + "}"
