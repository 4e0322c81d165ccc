"""Value types of the evaluator and Prometheus-exact formatting of results."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from incidentbook.errors import BadInput
from incidentbook.telemetry.promql.storage import Labels


@dataclass
class Vector:
    """An instant vector evaluated at every step: row i is series `labels[i]`.

    `v` (S, T) values, `m` (S, T) presence, `ts` (S, T) sample times in ms where known
    (selectors only; used by `timestamp()`).
    """

    labels: list[Labels]
    v: np.ndarray
    m: np.ndarray
    ts: np.ndarray | None = None


@dataclass
class Scalar:
    """A scalar per step, shape (T,)."""

    v: np.ndarray


@dataclass
class String:
    """A string literal."""

    s: str


@dataclass
class Matrix:
    """Raw samples of a range selector (only as the result of an instant query)."""

    series: list[tuple[Labels, np.ndarray, np.ndarray]]


# Dropped together: Prometheus's type-and-unit labels (`__type__`, `__unit__`, present only when
# the source ran with --enable-feature=type-and-unit-labels) are handled as `__name__` is.
NAME_LABELS = frozenset({"__name__", "__type__", "__unit__"})


def drop_name(ls: Labels) -> Labels:
    """The label set without `__name__` (and the type-and-unit labels that go with it)."""
    return tuple(p for p in ls if p[0] not in NAME_LABELS)


def merge_rows(labels: list[Labels], v: np.ndarray, m: np.ndarray) -> Vector:
    """Fold rows with equal label sets into one; two present at the same step is an error."""
    index: dict[Labels, int] = {}
    groups: list[list[int]] = []
    for i, ls in enumerate(labels):
        j = index.get(ls)
        if j is None:
            index[ls] = len(groups)
            groups.append([i])
        else:
            groups[j].append(i)
    if len(groups) == len(labels):
        return Vector(labels, v, m)
    out_l, out_v, out_m = [], np.empty((len(groups), v.shape[1])), np.zeros((len(groups), v.shape[1]), dtype=bool)
    for g, rows in enumerate(groups):
        out_l.append(labels[rows[0]])
        if len(rows) == 1:
            out_v[g], out_m[g] = v[rows[0]], m[rows[0]]
            continue
        mm = m[rows]
        if (mm.sum(axis=0) > 1).any():
            raise BadInput("vector cannot contain metrics with the same labelset; "
                           "aggregate or relabel the series before this operation")
        pick = np.argmax(mm, axis=0)
        out_v[g] = v[np.asarray(rows)[pick], np.arange(v.shape[1])]
        out_m[g] = mm.any(axis=0)
    return Vector(out_l, out_v, out_m)


def format_value(x: float) -> str:
    """A sample value exactly as the Prometheus HTTP API writes it."""
    if x != x:
        return "NaN"
    if x in (math.inf, -math.inf):
        return "+Inf" if x > 0 else "-Inf"
    a = abs(x)
    s = repr(x)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        return s  # Go's 'e' format: 1e-07, 1.5e+22 (Python's repr agrees)
    if "e" in s:
        return np.format_float_positional(x, unique=True, trim="-")
    return s[:-2] if s.endswith(".0") else s


def format_values(arr: np.ndarray) -> list[str]:
    """`format_value` over an array (fast path for the common integer-valued case)."""
    out = []
    for x in arr.tolist():
        if x == x and x.is_integer() and abs(x) < 1e15:
            out.append(str(int(x)) if x != 0 or math.copysign(1, x) > 0 else "-0")
        else:
            out.append(format_value(x))
    return out


def format_count_value(x: float) -> str:
    """Go's strconv.FormatFloat(x, 'f', -1, 64), as count_values labels its output."""
    if x != x:
        return "NaN"
    if x in (math.inf, -math.inf):
        return "+Inf" if x > 0 else "-Inf"
    s = np.format_float_positional(x, unique=True, trim="-")
    return s
