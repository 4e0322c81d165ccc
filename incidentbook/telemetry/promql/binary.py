"""Binary operators of the evaluator: arithmetic, comparison, set operators and vector matching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from incidentbook.errors import BadInput
from incidentbook.telemetry.promql.common import (
    _ARITH,
    _CMP,
    _SET,
    Value,
    _arith,
    _cmp,
    _empty_vector,
    _fmt_labels,
    unsupported,
)
from incidentbook.telemetry.promql.storage import Labels
from incidentbook.telemetry.promql.values import (
    NAME_LABELS,
    Scalar,
    Vector,
    drop_name,
    merge_rows,
)


class Binaries:
    """Evaluator methods for binary operators; mixed into Evaluator."""

    def _eval_BinaryExpr(self, node: Any) -> Value:
        op = str(node.op)
        mod = node.modifier
        fill_l = mod.fill_values.lhs if mod is not None else None
        fill_r = mod.fill_values.rhs if mod is not None else None
        ret_bool = bool(mod.return_bool) if mod is not None else False
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        if fill_l is not None or fill_r is not None:
            if self.version == "2":
                raise BadInput("fill modifiers do not exist in Prometheus 2.x")
            if op in _SET:
                raise BadInput(f"fill modifiers are not allowed with the set operator {op}")
            if isinstance(lhs, Vector) and isinstance(rhs, Vector):
                lhs, rhs = self._filled(lhs, rhs, mod, fill_l, fill_r)
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

    def _filled(self, lhs: Vector, rhs: Vector, mod: Any, fill_l: float | None,
                 fill_r: float | None) -> tuple[Vector, Vector]:
        """Both sides with a stand-in series (value = the fill) wherever the other side has a
        match group this side lacks at that step (fill_left fills the left, fill_right the right).

        With group_left/group_right a stand-in carries only the match group's labels, as
        Prometheus documents: one series per group on the "many" side, and no included labels
        (`group_left(owner)`) from a missing "one" side."""
        sig = self._signature(mod)
        card = str(mod.card).rsplit(".", 1)[-1]
        grouped = card != "OneToOne"
        if card == "OneToMany":
            # Prometheus swaps the sides of a group_right match before filling, so there
            # fill_left fills the right-hand ("many") side and fill_right the left ("one").
            fill_l, fill_r = fill_r, fill_l

        def groups(vec: Vector) -> dict[Labels, tuple[int, np.ndarray]]:
            out: dict[Labels, tuple[int, np.ndarray]] = {}
            for i, (ls, m) in enumerate(zip(vec.labels, vec.m)):
                k = sig(ls)
                first, seen = out.get(k, (i, np.zeros(self.T, dtype=bool)))
                out[k] = (first, seen | m)
            return out

        gl, gr = groups(lhs), groups(rhs)
        none = np.zeros(self.T, dtype=bool)

        def pad(side: Vector, other: Vector, mine: dict[Labels, tuple[int, np.ndarray]],
                theirs: dict[Labels, tuple[int, np.ndarray]], value: float | None) -> Vector:
            if value is None:
                return side
            labels, masks = [], []
            for k, (row, present) in theirs.items():
                need = present & ~mine.get(k, (0, none))[1]
                if need.any():
                    labels.append(k if grouped else drop_name(other.labels[row]))
                    masks.append(need)
            if not labels:
                return side
            return Vector(side.labels + labels, np.vstack([side.v, np.full((len(labels), self.T), value)]),
                          np.vstack([side.m, np.array(masks)]))

        return pad(lhs, rhs, gl, gr, fill_l), pad(rhs, lhs, gr, gl, fill_r)

    def _vector_scalar(self, op: str, vec: Vector, s: np.ndarray, swap: bool, ret_bool: bool) -> Value:
        lv, rv = (s[None, :], vec.v) if swap else (vec.v, s[None, :])
        if op in _CMP:
            keep = _cmp(op, lv, rv)
            if ret_bool:
                return merge_rows([drop_name(ls) for ls in vec.labels], keep.astype(float), vec.m.copy())
            return Vector(vec.labels, vec.v, vec.m & keep)
        labels = vec.labels if self._keeps_name(op) else [drop_name(ls) for ls in vec.labels]
        return merge_rows(labels, _arith(op, lv, rv), vec.m.copy())

    def _keeps_name(self, op: str) -> bool:
        """Prometheus 2.x keeps the metric name through atan2 (3.x drops it, as for + - * / % ^)."""
        return op == "atan2" and self.version == "2"

    @staticmethod
    def _signature(mod: Any, set_op: bool = False) -> Callable[[Labels], Labels]:
        """The match-group key of a label set. Arithmetic and comparisons match on the
        type-and-unit labels (`__type__`, `__unit__`) like any other; set operators ignore them
        with `__name__`, as Prometheus does."""
        matching = mod.matching if mod is not None else None
        if matching is not None and str(matching.type).endswith("Include"):
            on = set(matching.labels)
            return lambda ls: tuple(p for p in ls if p[0] in on)
        ign = set(matching.labels) | (NAME_LABELS if set_op else {"__name__"}) if matching is not None \
            else (NAME_LABELS if set_op else {"__name__"})
        return lambda ls: tuple(p for p in ls if p[0] not in ign)

    def _set_op(self, op: str, lhs: Vector, rhs: Vector, mod: Any) -> Value:
        sig = self._signature(mod, set_op=True)

        def any_by_sig(vec: Vector) -> dict[Labels, np.ndarray]:
            out: dict[Labels, np.ndarray] = {}
            for ls, m in zip(vec.labels, vec.m):
                k = sig(ls)
                out[k] = out[k] | m if k in out else m.copy()
            return out

        none = np.zeros(self.T, dtype=bool)
        if op == "and":
            r = any_by_sig(rhs)
            m = np.array([mm & r.get(sig(ls), none) for ls, mm in zip(lhs.labels, lhs.m)],
                         dtype=bool).reshape(lhs.m.shape)
            return Vector(lhs.labels, lhs.v, m)
        if op == "unless":
            r = any_by_sig(rhs)
            m = np.array([mm & ~r.get(sig(ls), none) for ls, mm in zip(lhs.labels, lhs.m)],
                         dtype=bool).reshape(lhs.m.shape)
            return Vector(lhs.labels, lhs.v, m)
        left = any_by_sig(lhs)
        # dtype=bool even when a side is empty: an empty float mask would turn the whole mask to floats.
        rm = np.array([mm & ~left.get(sig(ls), none) for ls, mm in zip(rhs.labels, rhs.m)],
                      dtype=bool).reshape(rhs.m.shape)
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
        # 3.x reports ambiguous matches even where a comparison then filters the pairs away.
        matched = m.copy() if self.version == "3" else None
        if op in _CMP:
            keep = _cmp(op, vl, vr)
            if ret_bool:
                val = keep.astype(float)
            else:
                val = vl
                m = m & keep
        else:
            val = _arith(op, vl, vr)
        drop = (op in _ARITH and not self._keeps_name(op)) or ret_bool
        labels: list[Labels] = []
        for i, j in zip(pi, pj):
            d = dict(many.labels[i])
            if drop:
                for n in NAME_LABELS:
                    d.pop(n, None)
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
                for n in NAME_LABELS:
                    d.pop(n, None)
            labels.append(tuple(sorted(d.items())))
        # Matching must be unique per step: one-to-one per match group, many-to-one per result series.
        bucket: dict[Any, list[int]] = {}
        for p, k in enumerate(psig):
            bucket.setdefault(k if card == "OneToOne" else (k, labels[p]), []).append(p)
        check = matched if matched is not None else m
        for rows in bucket.values():
            if len(rows) > 1 and (check[rows].sum(axis=0) > 1).any():
                if card == "OneToOne":
                    raise BadInput("multiple matches for labels: many-to-one matching must be explicit "
                                   "(group_left/group_right)")
                raise BadInput("multiple matches for labels: grouping labels must ensure unique matches")
        return merge_rows(labels, val, m)
