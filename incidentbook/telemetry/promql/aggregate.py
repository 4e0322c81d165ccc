"""Aggregation operators of the evaluator (sum, avg, topk, quantile, count_values, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from incidentbook.errors import BadInput
from incidentbook.telemetry.promql.common import (
    Value,
    _empty_vector,
    _quantile_sorted,
    _valid_label_name,
    kahan_add,
    kahan_result,
    unsupported,
)
from incidentbook.telemetry.promql.storage import Labels
from incidentbook.telemetry.promql.values import (
    NAME_LABELS,
    Vector,
    format_count_value,
)

_AGG_OPS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk",
            "quantile", "count_values", "limitk", "limit_ratio"}


def _group_incremental_mean(V: np.ndarray, M: np.ndarray, sg: np.ndarray, starts: np.ndarray,
                            G: int) -> np.ndarray:
    """Prometheus 2.x's avg: mean += v/n - mean/n per sample (never overflows), with its Inf rules."""
    pos = np.arange(len(sg)) - starts[sg]
    mean = np.zeros((G, V.shape[1]))
    n = np.zeros((G, V.shape[1]))
    with np.errstate(all="ignore"):
        for k in range(int(pos.max()) + 1 if len(pos) else 0):
            rows = np.flatnonzero(pos == k)
            g = sg[rows]
            live, x = M[rows], V[rows]
            n[g] = n[g] + live
            mg = mean[g]
            keep = np.isinf(mg) & ((np.isinf(x) & ((mg > 0) == (x > 0))) | (~np.isinf(x) & ~np.isnan(x)))
            upd = mg + (x / n[g] - mg / n[g])  # as Go groups it: mean += v/n - mean/n
            mean[g] = np.where(live & ~keep, upd, mg)
    return mean


def _group_kahan(V: np.ndarray, M: np.ndarray, sg: np.ndarray, starts: np.ndarray, G: int) -> np.ndarray:
    """Compensated per-group sums of rows sorted by group (`sg`), in input order within a group."""
    pos = np.arange(len(sg)) - starts[sg]
    s = np.zeros((G, V.shape[1]))
    c = np.zeros((G, V.shape[1]))
    for k in range(int(pos.max()) + 1 if len(pos) else 0):
        rows = np.flatnonzero(pos == k)  # at most one row per group
        g = sg[rows]
        s[g], c[g] = kahan_add(s[g], c[g], np.where(M[rows], V[rows], 0.0))
    return kahan_result(s, c)



class Aggregations:
    """Evaluator methods for aggregation operators; mixed into Evaluator."""

    def _eval_AggregateExpr(self, node: Any) -> Value:
        op = str(node.op)
        if op not in _AGG_OPS:
            raise unsupported(f"aggregation {op}")
        vec = self._vector_arg(node.expr)
        mod = node.modifier
        by = mod is None or str(mod.type).endswith("By")
        names = list(mod.labels) if mod is not None else []
        param: Any = None
        if op in ("topk", "bottomk", "quantile", "limitk", "limit_ratio"):
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
            return tuple(p for p in ls if p[0] not in nameset and p[0] not in NAME_LABELS)

        if op == "count_values":
            return self._count_values(vec, param, group_key)
        if op in ("topk", "bottomk", "limitk"):
            kk = self._k_param(param)  # checked even when there is nothing to select, as Prometheus does
        if op == "limit_ratio" and np.isnan(param).any():
            raise BadInput("Ratio value is NaN; give limit_ratio a number in [-1, 1]")
        gid_of: dict[Labels, int] = {}
        gids = np.empty(len(vec.labels), dtype=int)
        for i, ls in enumerate(vec.labels):
            gids[i] = gid_of.setdefault(group_key(ls), len(gid_of))
        keys = list(gid_of)
        G = len(keys)
        if G == 0:
            return _empty_vector(self.T)
        if op in ("topk", "bottomk", "limitk"):
            k = kk
            if op == "limitk":
                return self._limitk(vec, gids, G, k)
            return self._topk(vec, gids, G, k, op == "topk")
        if op == "limit_ratio":
            raise unsupported("limit_ratio (it samples series by Prometheus's label hash)")
        order = np.argsort(gids, kind="stable")
        sg = gids[order]
        starts = np.flatnonzero(np.r_[True, sg[1:] != sg[:-1]])
        V, M = vec.v[order], vec.m[order]
        cnt = np.add.reduceat(M.astype("int64"), starts, axis=0)
        present = cnt > 0
        with np.errstate(all="ignore"):
            if op in ("stddev", "stdvar") or (op == "sum" and self.version == "2"):
                # Prometheus 2.x adds plainly; 3.x compensates (Kahan) in sum and avg.
                total = np.add.reduceat(np.where(M, V, 0.0), starts, axis=0)
            elif op in ("sum", "avg"):
                total = _group_kahan(V, M, sg, starts, G)
            if op == "sum":
                res = total
            elif op == "avg" and self.version == "2":
                res = _group_incremental_mean(V, M, sg, starts, G)
            elif op == "avg":
                res = total / cnt
                # A sum that overflows although no input is infinite: Prometheus then takes an
                # incremental mean, which stays finite; sum(v / n) is that mean up to rounding.
                inf_in = np.add.reduceat(np.where(M, np.isinf(V), False).astype("int64"), starts, axis=0) > 0
                over = np.isinf(res) & ~inf_in
                if over.any():
                    scaled = np.where(M, V / cnt[sg], 0.0)
                    res = np.where(over, _group_kahan(scaled, M, sg, starts, G), res)
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

    def _k_param(self, k: np.ndarray) -> np.ndarray:
        """topk/bottomk/limitk's k per step as an integer, refused as Prometheus refuses it."""
        if np.isnan(k).any():
            if self.version == "3":
                raise BadInput("Parameter value is NaN; give k as a number")
            raise BadInput("Scalar value NaN overflows int64; give k as a number")
        if (k <= -(2.0 ** 63)).any():
            raise BadInput(f"Scalar value {float(k.min())} underflows int64; give a larger k")
        if (k >= 2.0 ** 63).any():
            raise BadInput(f"Scalar value {float(k.max())} overflows int64; give a smaller k")
        return np.trunc(k).astype("int64")

    def _limitk(self, vec: Vector, gids: np.ndarray, G: int, kk: np.ndarray) -> Value:
        """limitk: the first k present series of each group (ordered by labels), values unchanged."""
        sel = np.zeros_like(vec.m)
        for g in range(G):
            rows = np.flatnonzero(gids == g)
            rows = np.array(sorted(rows.tolist(), key=lambda r: vec.labels[r]), dtype=int)
            rank = np.cumsum(vec.m[rows], axis=0)
            sel[rows] = vec.m[rows] & (rank <= kk[None, :])
        return Vector(vec.labels, vec.v, sel)

    def _topk(self, vec: Vector, gids: np.ndarray, G: int, kk: np.ndarray, top: bool) -> Value:
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

