"""Function calls of the evaluator (instant-vector, range-vector and label functions)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from incidentbook.errors import BadInput
from incidentbook.telemetry.promql.common import (
    Value,
    _empty_vector,
    _go_parse_float,
    _strict_unique,
    _strip_parens,
    _valid_label_name,
    unsupported,
)
from incidentbook.telemetry.promql.rangefuncs import (
    _ENDPOINT_FUNCS,
    _RANGE_FUNCS,
    _Ctx,
    _extrapolate,
)
from incidentbook.telemetry.promql.storage import Labels
from incidentbook.telemetry.promql.values import (
    Scalar,
    String,
    Vector,
    drop_name,
    merge_rows,
)


class Functions:
    """Evaluator methods for function calls; mixed into Evaluator."""

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
        msel = _strip_parens(args[arg_pos])
        bounds = self._bounds(msel)
        if name == "absent_over_time":
            vs = msel.vector_selector if type(msel).__name__ == "MatrixSelector" else msel
            return self._absent(vs, self._windows(bounds), windows=True)
        if name in _ENDPOINT_FUNCS and bounds.store.resets_finite:
            return self._endpoint_call(name, bounds)
        labels: list[Labels] = []
        vals, masks = [], []
        keep_name = name in ("last_over_time", "first_over_time")
        for ls, W, Wt, M, cnt, rstart, rend in self._windows(bounds):
            ctx = _Ctx(W, Wt, M, cnt, rstart, rend, self.times, extra, self.version)
            v, ok = fn(ctx)
            labels.extend(ls if keep_name else [drop_name(x) for x in ls])
            vals.append(v)
            masks.append(ok)
        if not labels:
            return _empty_vector(self.T)
        return _strict_unique(Vector(labels, np.concatenate(vals), np.concatenate(masks)), self.version)

    def _endpoint_call(self, name: str, b: Any) -> Value:
        """rate/increase/delta/irate/idelta from window end points and a cumulative reset sum:
        O(series × steps) whatever the window length."""
        st, sids, lo, cnt = b.store, b.sids, b.lo, b.cnt
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
                                   b.rstart, b.ref, b.range_ms / 1000.0, counter, name == "rate",
                                   self.version)
        labels = [drop_name(st.labels[s]) for s in sids]
        return _strict_unique(Vector(labels, val, ok), self.version)

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

    def _fn_step(self, a: list[Any]) -> Value:
        """The query step in seconds (0 for an instant query)."""
        step = float(self.times[1] - self.times[0]) / 1000.0 if self.T > 1 else 0.0
        return Scalar(np.full(self.T, step))

    def _fn_range(self, a: list[Any]) -> Value:
        return Scalar(np.full(self.T, (self.end_ms - self.start_ms) / 1000.0))

    def _fn_start(self, a: list[Any]) -> Value:
        return Scalar(np.full(self.T, self.start_ms / 1000.0))

    def _fn_end(self, a: list[Any]) -> Value:
        return Scalar(np.full(self.T, self.end_ms / 1000.0))

    def _fn_min_of(self, a: list[Any]) -> Value:
        return Scalar(np.minimum(self._scalar_arg(a[0]), self._scalar_arg(a[1])))

    def _fn_max_of(self, a: list[Any]) -> Value:
        return Scalar(np.maximum(self._scalar_arg(a[0]), self._scalar_arg(a[1])))

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
        rx = compile_regex(regex, self.version)
        if not _valid_label_name(dst):
            raise BadInput(f"invalid destination label name in label_replace(): {dst!r}")
        out = []
        for ls in vec.labels:
            d = dict(ls)
            m = rx.fullmatch(d.get(src, ""))
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
        # Buckets group by every label but `le` (the metric name included); the result drops the
        # name, so two histograms differing only in name collide, and Prometheus refuses that.
        groups: dict[Labels, list[tuple[float, int]]] = {}
        for i, ls in enumerate(vec.labels):
            d = dict(ls)
            try:
                ub = float(_go_parse_float(d.get("le", "")))
            except ValueError:
                continue
            groups.setdefault(tuple(p for p in ls if p[0] != "le"), []).append((ub, i))
        out_l, out_v, out_m = [], [], []
        for key, buckets in groups.items():
            v, m = _bucket_quantile(q, buckets, vec.v, vec.m)
            out_l.append(drop_name(key))
            out_v.append(v)
            out_m.append(m)
        if not out_l:
            return _empty_vector(self.T)
        return merge_rows(out_l, np.array(out_v), np.array(out_m))

    def _fn_histogram_quantiles(self, a: list[Any]) -> Value:
        """histogram_quantiles(buckets, "label", q1, q2, ...): one histogram_quantile per q, told
        apart by `label` = q (written as 0.5, 1.0)."""
        if self.version != "3":
            raise BadInput('unknown function with name "histogram_quantiles" in Prometheus 2.x')
        label = self._string_arg(a[1])
        if not _valid_label_name(label):
            raise BadInput(f"invalid label name {label!r} in histogram_quantiles()")
        if len(a) < 3:
            raise BadInput("histogram_quantiles() needs at least one quantile after the label name")
        out_l: list[Labels] = []
        vs, ms = [], []
        for q_node in a[2:]:
            q = self._scalar_arg(q_node)
            one = self._fn_histogram_quantile([q_node, a[0]])
            assert isinstance(one, Vector)
            text = _q_label(float(q[0])) if len(q) else ""
            for ls, v, m in zip(one.labels, one.v, one.m):
                d = dict(ls)
                d[label] = text
                out_l.append(tuple(sorted(d.items())))
                vs.append(v)
                ms.append(m)
        if not out_l:
            return _empty_vector(self.T)
        return merge_rows(out_l, np.array(vs), np.array(ms))

    def _fn_sort_by_label(self, a: list[Any]) -> Value:
        return self._vector_arg(a[0])  # the order is applied to the instant result

    def _fn_sort_by_label_desc(self, a: list[Any]) -> Value:
        return self._vector_arg(a[0])


# Elementwise math functions beyond the ones with their own methods (Prometheus drops __name__).
_ELEMENTWISE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "asinh": np.arcsinh, "acosh": np.arccosh,
    "atanh": np.arctanh,
}



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



def _q_label(q: float) -> str:
    """A quantile as histogram_quantiles labels it: shortest form, whole numbers with ".0"."""
    if q != q:
        return "NaN"
    if q in (math.inf, -math.inf):
        return "+Inf" if q > 0 else "-Inf"
    text = repr(q)
    return text if ("." in text or "e" in text) else text + ".0"


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


