"""PromQL over recorded samples, answering exactly as the Prometheus HTTP API would.

`range_query` and `instant_query` return the API's `data` object (`resultType`, `result`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from incidentbook.errors import BadInput
from incidentbook.telemetry.promql.common import (
    DEFAULT_VERSION,
    FEATURES,
    MAX_POINTS,
    SUBQUERY_STEP_MS,
    VERSIONS,
    parse,
    unsupported,
)
from incidentbook.telemetry.promql.engine import Evaluator
from incidentbook.telemetry.promql.storage import Labels, SeriesStore
from incidentbook.telemetry.promql.values import (
    Matrix,
    Scalar,
    String,
    Vector,
    format_value,
    format_values,
)

__all__ = ["DEFAULT_VERSION", "FEATURES", "SUBQUERY_STEP_MS", "VERSIONS", "SeriesStore", "Series", "evaluate_range", "evaluate_instant", "range_query",
           "instant_query", "to_api_data"]

# One result series: labels, sample times (ms), values.
Series = tuple[Labels, np.ndarray, np.ndarray]


def _ts(ms: int) -> float | int:
    """A timestamp as Prometheus writes it: whole seconds as an integer, else seconds.millis."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000.0


def _strip(node: Any) -> Any:
    while type(node).__name__ == "ParenExpr":
        node = node.expr
    return node


def evaluate_range(store: SeriesStore, promql: str, start_ms: int, end_ms: int,
                   step_ms: int, version: str = DEFAULT_VERSION,
                   subquery_step_ms: int = SUBQUERY_STEP_MS,
                   features: frozenset[str] = frozenset()) -> list[Series]:
    """Evaluate a range query; series sorted by labels, as Prometheus sorts them.

    `version` ("3" or "2") is the Prometheus major version whose semantics apply; `features`
    the Prometheus feature flags to follow (see FEATURES)."""
    if step_ms <= 0:
        raise BadInput("zero or negative query resolution step widths are not accepted; give a positive step")
    if end_ms < start_ms:
        raise BadInput("end timestamp must not be before start time; swap start and end")
    n = (end_ms - start_ms) // step_ms + 1
    if n > MAX_POINTS:
        raise BadInput("exceeded maximum resolution of 11,000 points per timeseries; "
                       "try decreasing the query resolution (a larger step)")
    node = parse(promql, version, features=features, step_ms=step_ms, range_ms=end_ms - start_ms)
    times = start_ms + step_ms * np.arange(n, dtype="int64")
    val = Evaluator(store, times, start_ms=start_ms, end_ms=end_ms, version=version,
                    subquery_step_ms=subquery_step_ms).eval(node)
    if isinstance(val, Scalar):
        return [((), times, val.v)]
    if not isinstance(val, Vector):
        kind = "range vector" if isinstance(val, Matrix) else "string"
        raise BadInput(f'invalid expression type "{kind}" for range query, must be Scalar or instant Vector')
    out = []
    for i in sorted(range(len(val.labels)), key=lambda i: val.labels[i]):
        m = val.m[i]
        if m.any():
            out.append((val.labels[i], times[m], val.v[i][m]))
    return out


def evaluate_instant(store: SeriesStore, promql: str, t_ms: int,
                     version: str = DEFAULT_VERSION,
                     subquery_step_ms: int = SUBQUERY_STEP_MS,
                     features: frozenset[str] = frozenset()) -> Vector | Scalar | String | Matrix:
    """Evaluate an instant query; vector rows come in Prometheus's output order."""
    node = parse(promql, version, features=features)
    val = Evaluator(store, np.array([t_ms], dtype="int64"), start_ms=t_ms, end_ms=t_ms,
                    version=version, subquery_step_ms=subquery_step_ms).eval(node)
    if isinstance(val, Vector):
        keep = np.flatnonzero(val.m[:, 0])
        top = _strip(node)
        kind = type(top).__name__
        name = top.func.name if kind == "Call" else (str(top.op) if kind == "AggregateExpr" else "")
        vals = val.v[keep, 0]
        if name in ("sort", "topk", "sort_desc", "bottomk"):
            desc = name in ("sort_desc", "topk")
            # NaN sorts last in sort, sort_desc, topk and bottomk alike.
            nan = np.isnan(vals)
            key = np.where(nan, 0, -vals if desc else vals)
            keep = keep[np.lexsort((key, nan))]
        elif name in ("sort_by_label", "sort_by_label_desc"):
            keep = _sort_by_label(top, val, keep, desc=name.endswith("_desc"))
        val = Vector([val.labels[i] for i in keep], val.v[keep], val.m[keep])
    return val


def _natural_key(value: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: runs of digits compare as numbers, the rest as text."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.findall(r"\d+|\D+", value))


def _sort_by_label(call: Any, val: Vector, keep: np.ndarray, desc: bool) -> np.ndarray:
    """Rows of an instant vector in sort_by_label order: the named labels in natural order, then
    the full label set."""
    names = []
    for arg in call.args[1:]:
        arg = _strip(arg)
        if type(arg).__name__ != "StringLiteral":
            raise BadInput("sort_by_label() takes label names as string literals")
        names.append(arg.val)
    rows = sorted(keep.tolist(), key=lambda i: (tuple(_natural_key(dict(val.labels[i]).get(n, "")) for n in names),
                                               val.labels[i]), reverse=desc)
    return np.array(rows, dtype=int)


def range_query(store: SeriesStore, promql: str, start_ms: int, end_ms: int, step_ms: int,
                version: str = DEFAULT_VERSION, subquery_step_ms: int = SUBQUERY_STEP_MS,
                features: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The `data` object of /api/v1/query_range."""
    result = []
    for labels, t, v in evaluate_range(store, promql, start_ms, end_ms, step_ms, version, subquery_step_ms,
                                       features):
        result.append({"metric": dict(labels),
                       "values": [[_ts(x), s] for x, s in zip(t.tolist(), format_values(v))]})
    return {"resultType": "matrix", "result": result}


def instant_query(store: SeriesStore, promql: str, t_ms: int, version: str = DEFAULT_VERSION,
                  subquery_step_ms: int = SUBQUERY_STEP_MS, features: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The `data` object of /api/v1/query."""
    return to_api_data(evaluate_instant(store, promql, t_ms, version, subquery_step_ms, features), t_ms)


def to_api_data(val: Vector | Scalar | String | Matrix, t_ms: int) -> dict[str, Any]:
    """An instant result as the HTTP API's `data` object."""
    if isinstance(val, Scalar):
        return {"resultType": "scalar", "result": [_ts(t_ms), format_value(float(val.v[0]))]}
    if isinstance(val, String):
        return {"resultType": "string", "result": [_ts(t_ms), val.s]}
    if isinstance(val, Matrix):
        return {"resultType": "matrix", "result": [
            {"metric": dict(ls), "values": [[_ts(x), s] for x, s in zip(t.tolist(), format_values(v))]}
            for ls, t, v in sorted(val.series, key=lambda s: s[0])]}
    if isinstance(val, Vector):
        vals = format_values(val.v[:, 0]) if len(val.labels) else []
        return {"resultType": "vector", "result": [
            {"metric": dict(ls), "value": [_ts(t_ms), s]} for ls, s in zip(val.labels, vals)]}
    raise unsupported(f"result type {type(val).__name__}")
