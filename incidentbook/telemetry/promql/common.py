"""Shared pieces of the PromQL evaluator: constants, parsing, errors, small numeric helpers."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import promql_parser

from incidentbook.errors import BadInput, UnsupportedQuery
from incidentbook.telemetry.promql.storage import Labels
from incidentbook.telemetry.promql.values import (
    Matrix,
    Scalar,
    String,
    Vector,
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
