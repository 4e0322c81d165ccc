"""`info(v, {selector})` (Prometheus 3.x, `promql-experimental-functions`): add info-series labels.

As Prometheus documents it: the identifying labels are `instance` and `job`; by default only
`target_info` series enrich, a `__name__` matcher picks others (only negated ones: any `.+_info`
except those). At every step each series of `v` takes the data labels of the matching info
series (the newest sample wins among series of one info metric; two info metrics disagreeing on
a label is an error; labels `v` already has are kept). With data-label matchers only those labels
are added, and a series with no matching info series is dropped if a matcher refuses the empty
string. Series of `v` that are themselves such info series pass through unchanged. Info series
are read at the time the first selector in `v` reads its samples (its `@` and `offset`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from incidentbook.errors import BadInput
from incidentbook.telemetry.promql.common import _MATCH_OPS, Value, _strip_parens
from incidentbook.telemetry.promql.durations import _matching
from incidentbook.telemetry.promql.storage import Labels, compile_regex
from incidentbook.telemetry.promql.text import code_chars
from incidentbook.telemetry.promql.values import Vector

FEATURE = "promql-experimental-functions"
IDENTIFYING = ("instance", "job")
# Put into info()'s second argument before parsing: the parser demands a matcher that refuses
# the empty string, which Prometheus does not demand of this argument. Removed again here.
SENTINEL = "__incidentbook_info_selector__"

Matcher = tuple[str, str, str]


def _matches(m: Matcher, value: str, version: str) -> bool:
    _name, op, want = m
    if op == "=":
        return value == want
    if op == "!=":
        return value != want
    hit = compile_regex(want, version).fullmatch(value) is not None
    return hit if op == "=~" else not hit


def _effective_name_matchers(name_ms: list[Matcher]) -> list[Matcher]:
    if any(op in ("=", "=~") for _n, op, _v in name_ms):
        return name_ms
    if name_ms:  # negated ones alone cannot say which metrics are info metrics
        return [("__name__", "=~", ".+_info"), *name_ms]
    return [("__name__", "=", "target_info")]


def _first_selector(node: Any, path: list[Any]) -> tuple[Any, list[Any]] | None:
    """The first vector selector in `node` (depth first) and the subqueries around it."""
    node = _strip_parens(node)
    kind = type(node).__name__
    if kind == "VectorSelector":
        return node, path
    if kind == "MatrixSelector":
        return node.vector_selector, path
    kids: list[Any] = []
    if kind == "SubqueryExpr":
        return _first_selector(node.expr, [*path, node])
    if kind == "Call":
        kids = list(node.args)
    elif kind == "AggregateExpr":
        kids = [k for k in (node.param, node.expr) if k is not None]
    elif kind == "BinaryExpr":
        kids = [node.lhs, node.rhs]
    elif kind in ("UnaryExpr", "ParenExpr"):
        kids = [node.expr]
    for k in kids:
        found = _first_selector(k, path)
        if found is not None:
            return found
    return None


def _top_level_comma(text: str, start: int, end: int) -> int:
    """Index of the first `,` between `start` and `end` outside brackets and strings, or -1."""
    depth = 0
    for k, ch in code_chars(text, start, end):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            return k
    return -1


def protect_selector(text: str) -> str:
    """`text` with a placeholder matcher added to each `info(…, {…})` selector (see SENTINEL).

    Only calls of `info` outside string literals are touched."""
    from incidentbook.telemetry.promql.common import _identifiers

    inserts: list[int] = []
    for name, _a, b in _identifiers(text):
        if name != "info":
            continue
        j = b
        while j < len(text) and text[j] in " \t\n":
            j += 1
        if j >= len(text) or text[j] != "(":
            continue
        end = _matching(text, j, "(", ")")
        comma = _top_level_comma(text, j + 1, end) if end > 0 else -1
        if comma < 0:
            continue
        brace = comma + 1
        while brace < end and text[brace] in " \t\n":
            brace += 1
        if text[brace] == "{":
            inserts.append(brace + 1)
    for at in sorted(inserts, reverse=True):
        empty = text[at:].lstrip().startswith("}")
        text = text[:at] + f'{SENTINEL}=~".+"' + ("" if empty else ", ") + text[at:]
    return text


class Info:
    """The info() evaluation; mixed into Evaluator (uses its selector machinery)."""

    def _fn_info(self: Any, a: list[Any]) -> Value:
        if not a or len(a) > 2:
            raise BadInput("info() takes an instant vector and an optional label selector {…}")
        matchers: list[Matcher] = []
        if len(a) == 2:
            sel = _strip_parens(a[1])
            if type(sel).__name__ != "VectorSelector":
                raise BadInput("info()'s second argument must be a label selector such as {k8s_cluster=~\".+\"}")
            if sel.name:
                matchers.append(("__name__", "=", sel.name))
            matchers += [(m.name, _MATCH_OPS[str(m.op)], m.value) for m in sel.matchers.matchers
                         if m.name != SENTINEL]
        base: Vector = self._vector_arg(a[0])
        version = self.version
        name_ms = [m for m in matchers if m[0] == "__name__"]
        data_ms = [m for m in matchers if m[0] != "__name__"]
        data_names = {m[0] for m in data_ms}
        need_info = not all(_matches(m, "", version) for m in data_ms)
        eff = _effective_name_matchers(name_ms if len(a) == 2 else [])

        def ident(ls: Labels) -> tuple[tuple[str, str], ...]:
            d = dict(ls)
            return tuple((k, d[k]) for k in IDENTIFYING if d.get(k))

        ignored = [all(_matches(m, dict(ls).get("__name__", ""), version) for m in eff) for ls in base.labels]
        wanted = {ident(ls) for ls, ig in zip(base.labels, ignored) if not ig and ident(ls)}
        T = base.v.shape[1]
        # Info series, read as of the first selector's own time.
        iv = None
        if wanted:
            sids = self.store.select(data_ms + eff, version=version)
            if len(sids):
                iv = self._instant_at(sids, self._info_ref_times(a[0]))
        by_sig: dict[tuple[Any, ...], dict[str, list[int]]] = {}
        if iv is not None:
            for j, ls in enumerate(iv.labels):
                sig = ident(ls)
                if sig in wanted:
                    by_sig.setdefault(sig, {}).setdefault(dict(ls).get("__name__", ""), []).append(j)
        out: dict[Labels, tuple[np.ndarray, np.ndarray]] = {}

        def put(ls: Labels, i: int, t: int) -> None:
            row = out.get(ls)
            if row is None:
                row = out[ls] = (np.zeros(T), np.zeros(T, dtype=bool))
            if row[1][t]:
                raise BadInput("vector cannot contain metrics with the same labelset; "
                               "aggregate or relabel the series before info()")
            row[0][t], row[1][t] = base.v[i, t], True

        for i, ls in enumerate(base.labels):
            steps = np.flatnonzero(base.m[i])
            if ignored[i]:
                for t in steps.tolist():
                    put(ls, i, t)
                continue
            groups = by_sig.get(ident(ls), {})
            have = dict(ls)
            for t in steps.tolist():
                added: dict[str, str] = {}
                seen = False
                for rows in groups.values():
                    live = [j for j in rows if iv.m[j, t]]
                    if not live:
                        continue
                    newest = max(int(iv.ts[j, t]) for j in live)
                    pick = [j for j in live if int(iv.ts[j, t]) == newest]
                    if len(pick) > 1:
                        raise BadInput(f"found duplicate series for info metric at {newest} ms; "
                                       "give info() a selector that tells them apart")
                    seen = True
                    for k, v in iv.labels[pick[0]]:
                        if k == "__name__" or (data_names and k not in data_names):
                            continue
                        if added.get(k, v) != v:
                            raise BadInput(f"conflicting label: {k} (two info metrics give it different "
                                           "values; narrow info()'s __name__ matcher)")
                        if k not in have:
                            added[k] = v
                if not seen and need_info:
                    continue
                put(tuple(sorted({**have, **added}.items())), i, t)
        labels = sorted(out)
        if not labels:
            return Vector([], np.empty((0, T)), np.zeros((0, T), dtype=bool))
        return Vector(labels, np.array([out[k][0] for k in labels]), np.array([out[k][1] for k in labels]))

    def _info_ref_times(self: Any, arg: Any) -> np.ndarray:
        """When the first selector in `arg` reads samples, per step: the innermost `@` among it
        and its enclosing subqueries anchors the time, shifted by the offsets up to that node."""
        found = _first_selector(arg, [])
        if found is None:
            return self.times
        vs, path = found
        chain = [vs, *reversed(path)]
        offset = 0
        for node in chain:
            offset += self._offset_ms(node)
            if node.at is not None:
                return self._at_times(node) - offset
        return self.times - offset
