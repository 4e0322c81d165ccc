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
    unsupported,
)
from incidentbook.telemetry.promql.storage import Labels
from incidentbook.telemetry.promql.values import (
    Vector,
    format_count_value,
)

_AGG_OPS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk",
            "quantile", "count_values"}



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

