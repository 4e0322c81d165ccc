"""Shared pieces of the PromQL evaluator: constants, parsing, errors, small numeric helpers."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

import numpy as np
import promql_parser

from incidentbook.errors import BadInput, UnsupportedQuery
from incidentbook.telemetry.promql import durations
from incidentbook.telemetry.promql.storage import Labels
from incidentbook.telemetry.promql.text import code_chars
from incidentbook.telemetry.promql.values import (
    Matrix,
    Scalar,
    String,
    Vector,
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


# The Prometheus major versions whose semantics replay follows.
VERSIONS = ("3", "2")
DEFAULT_VERSION = "3"
# A subquery without a step (`x[1h:]`) uses the global evaluation interval, 1m by default.
SUBQUERY_STEP_MS = 60_000

# Prometheus 3.x feature flags (`--enable-feature=...`) replay can follow; all off by default,
# as in Prometheus. Set them with `[replay] features` when the source Prometheus enables them.
FEATURES = frozenset({"promql-duration-expr", "promql-experimental-functions"})

# Functions and aggregations Prometheus 2.x does not have (added in 3.x).
ONLY_IN_3 = frozenset({
    "double_exponential_smoothing", "limitk", "limit_ratio", "sort_by_label", "sort_by_label_desc",
    "mad_over_time", "ts_of_min_over_time", "ts_of_max_over_time", "ts_of_last_over_time",
    "ts_of_first_over_time", "first_over_time", "info", "step", "range", "start", "end", "min_of", "max_of", "histogram_quantiles",
})

_TOKEN = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|#[^\n]*)|([A-Za-z_][A-Za-z0-9_:]*)""")


def _identifiers(promql: str) -> list[tuple[str, int, int]]:
    """Identifiers outside string literals and comments, with their spans."""
    return [(m.group(2), m.start(2), m.end(2)) for m in _TOKEN.finditer(promql) if m.group(2)]


# Bounds on what one query may be: deeper expressions would exhaust the evaluator's stack.
MAX_QUERY_CHARS = 64 * 1024
MAX_DEPTH = 200


def _names_used(node: Any) -> set[str]:
    """Names of every function and aggregation operator in a parsed expression.

    Raises BadInput if the expression nests deeper than MAX_DEPTH."""
    out: set[str] = set()
    stack = [(node, 1)]
    while stack:
        n, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadInput(f"PromQL expression nests deeper than {MAX_DEPTH} levels; simplify the query")
        kind = type(n).__name__
        kids: list[Any] = []
        if kind == "Call":
            out.add(n.func.name)
            kids = list(n.args)
        elif kind == "AggregateExpr":
            out.add(str(n.op))
            kids = [n.expr] + ([n.param] if n.param is not None else [])
        elif kind == "BinaryExpr":
            kids = [n.lhs, n.rhs]
        elif kind in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
            kids = [n.expr]
        stack.extend((k, depth + 1) for k in kids)
    return out


def _paren_depth(promql: str) -> int:
    """The deepest nesting of ( [ { outside string literals (checked before parsing)."""
    depth = best = 0
    for _, ch in code_chars(promql):
        if ch in "([{":
            depth += 1
            best = max(best, depth)
        elif ch in ")]}":
            depth -= 1
    return best


def parse(promql: str, version: str = DEFAULT_VERSION, *, features: frozenset[str] = frozenset(),
          step_ms: int = 0, range_ms: int = 0) -> Any:
    """Parse PromQL as Prometheus `version` would, turning parser errors into BadInput.

    `features` are the Prometheus 3.x `--enable-feature` names replay honours (see FEATURES);
    with `promql-duration-expr`, duration arithmetic is worked out first, `step()` as `step_ms`
    and `range()` as `range_ms` (both 0 for an instant query).

    Prometheus 2.x has `holt_winters`, which 3.x renamed `double_exponential_smoothing`; a
    function the chosen version lacks is refused as that Prometheus refuses it.
    """
    if len(promql) > MAX_QUERY_CHARS:
        raise BadInput(f"PromQL query of {len(promql):,} characters is longer than {MAX_QUERY_CHARS:,}; "
                       "shorten it")
    if _paren_depth(promql) > MAX_DEPTH:
        raise BadInput(f"PromQL expression nests deeper than {MAX_DEPTH} levels; simplify the query")
    text = promql
    if version == "3" and durations.FEATURE in features:
        text = durations.rewrite(promql, step_ms, range_ms)
    if version == "3" and "promql-experimental-functions" in features and "info" in text.lower():
        from incidentbook.telemetry.promql.info import protect_selector

        text = protect_selector(text)
    if version == "2":
        idents = _identifiers(promql)
        for name, _a, _b in idents:
            # Checked in the text: after the rename below the parse tree cannot tell them apart.
            if name == "double_exponential_smoothing" and promql[_b:].lstrip().startswith("("):
                raise BadInput(f'bad PromQL {promql!r}: parse error: unknown function with name "{name}" '
                               'in Prometheus 2.x; set [replay] promql = "3" if the source runs 3.x')
        for name, a, b in reversed(idents):
            if name == "holt_winters":
                text = text[:a] + "double_exponential_smoothing" + text[b:]
    try:
        node = promql_parser.parse(text)
    except ValueError as e:
        msg = str(e).replace("double_exponential_smoothing", "holt_winters") if version == "2" else str(e)
        msg = re.sub(r"unknown function with name '([^']*)'", r'parse error: unknown function with name "\1"', msg)
        raise BadInput(f"bad PromQL {promql!r}: {msg}") from None
    used = _names_used(node)
    if version == "3" and "info" in used and "promql-experimental-functions" not in features:
        raise BadInput(f'bad PromQL {promql!r}: parse error: function "info" is not enabled; set [replay] '
                       'features = ["promql-experimental-functions"] if the source Prometheus enables it')
    if version == "2":
        bad = (used & ONLY_IN_3) - {"double_exponential_smoothing"}
        if bad:
            name = sorted(bad)[0]
            raise BadInput(f'bad PromQL {promql!r}: parse error: unknown function with name "{name}" '
                           'in Prometheus 2.x; set [replay] promql = "3" if the source runs 3.x')
    return node


def _strip_parens(node: Any) -> Any:
    while type(node).__name__ == "ParenExpr":
        node = node.expr
    return node


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


def _strict_unique(vec: Vector, version: str = "3") -> Vector:
    """Two series with one label set (names dropped by a function or unary minus) are an error.

    Prometheus 3.x checks each step, so series that never overlap in time merge; 2.x rejects
    the whole result if any two such series have samples at all."""
    live = vec.m.any(axis=1)
    keep = np.flatnonzero(live)
    if version == "3":
        return merge_rows([vec.labels[i] for i in keep], vec.v[keep], vec.m[keep])
    seen: set[Labels] = set()
    for i in keep.tolist():
        if vec.labels[i] in seen:
            raise BadInput("vector cannot contain metrics with the same labelset; "
                           "aggregate or relabel the series before this function")
        seen.add(vec.labels[i])
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



def _fmt_labels(ls: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in ls) + "}"


def kahan_add(s: np.ndarray, c: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of Prometheus's Kahan-Neumaier summation (kahanSumInc), elementwise."""
    with np.errstate(all="ignore"):
        t = s + x
        big = np.abs(s) >= np.abs(x)
        c = np.where(np.isinf(t), 0.0, c + np.where(big, (s - t) + x, (x - t) + s))
    return t, c


def kahan_result(s: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The compensated sum: the running sum plus its correction (unless it overflowed)."""
    with np.errstate(all="ignore"):
        return np.where(np.isinf(s), s, s + c)


def kahan_sum_last(W: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Compensated sum over the last axis of the present values (absent ones add nothing)."""
    s = np.zeros(W.shape[:-1])
    c = np.zeros(W.shape[:-1])
    for k in range(W.shape[-1]):
        s, c = kahan_add(s, c, np.where(M[..., k], W[..., k], 0.0))
    return kahan_result(s, c)
