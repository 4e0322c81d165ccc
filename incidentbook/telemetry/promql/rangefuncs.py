"""Range-vector functions: each maps the windows of a selector or subquery to one value per step."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from incidentbook.errors import BadInput
from incidentbook.telemetry.promql.common import (
    _quantile_sorted,
    kahan_add,
    kahan_sum_last,
)


class _Ctx:
    """What a range function sees: windows (S,T,K), counts (S,T), range bounds, extra args."""

    def __init__(self, W: np.ndarray, Wt: np.ndarray, M: np.ndarray, cnt: np.ndarray,
                 rstart: np.ndarray, rend: np.ndarray, times: np.ndarray, extra: list[np.ndarray],
                 version: str = "3"):
        self.W, self.Wt, self.M, self.cnt = W, Wt, M, cnt
        self.version = version
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
                       c.range_s, counter, rate, c.version)
    return val, c.cnt >= 2


def _extrapolate(first: np.ndarray, last: np.ndarray, ft: np.ndarray, lt: np.ndarray, cnt: np.ndarray,
                 corr: np.ndarray | float, rstart: np.ndarray, rend: np.ndarray, range_s: float,
                 counter: bool, rate: bool, version: str = "3") -> np.ndarray:
    """Prometheus's extrapolatedRate: (last - first + resets), extrapolated towards the range edges.

    Both versions extrapolate to an edge when the first/last sample is within 1.1 average sample
    intervals of it, else by half an interval; a counter is never extrapolated below zero. 2.x
    clamps to the zero point before that threshold test, 3.x after it (so in 3.x the zero point
    also limits the half-interval case).
    """
    with np.errstate(all="ignore"):
        result = last - first
        if counter:
            result = result + corr
        dstart = (ft - rstart[None, :]) / 1000.0
        dend = (rend[None, :] - lt) / 1000.0
        sampled = (lt - ft) / 1000.0
        avg = sampled / (cnt - 1)
        thr = avg * 1.1
        if counter:
            dzero = sampled * (first / result)
            clamp = (result > 0) & (first >= 0)
        if version == "2":
            if counter:
                dstart = np.where(clamp & (dzero < dstart), dzero, dstart)
            dstart = np.where(dstart < thr, dstart, avg / 2)
        else:
            dstart = np.where(dstart >= thr, avg / 2, dstart)
            if counter:
                dstart = np.where(clamp & (dzero < dstart), dzero, dstart)
        ext = sampled + dstart + np.where(dend < thr, dend, avg / 2)
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
    return kahan_sum_last(c.W, c.M), c.cnt >= 1


def _avg_ot(c: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    """3.x: compensated sum / n; where the sum overflows though no sample is infinite, the mean of
    v/n (Prometheus switches to an incremental mean there). 2.x: its Kahan incremental mean."""
    if c.version == "2":
        return _avg_ot_v2(c), c.cnt >= 1
    with np.errstate(all="ignore"):
        res = kahan_sum_last(c.W, c.M) / c.cnt
        over = np.isinf(res) & ~(c.M & np.isinf(c.W)).any(-1)
        if over.any():
            res = np.where(over, kahan_sum_last(c.W / c.cnt[..., None], c.M), res)
        return res, c.cnt >= 1


def _avg_ot_v2(c: _Ctx) -> np.ndarray:
    """Prometheus 2.x's avg_over_time: mean, comp = kahanSumInc(v/n - mean/n, mean, comp)."""
    mean = np.zeros(c.cnt.shape)
    comp = np.zeros(c.cnt.shape)
    with np.errstate(all="ignore"):
        for k in range(c.W.shape[-1]):
            live, x = c.M[..., k], c.W[..., k]
            n = float(k + 1)  # samples fill each window from index 0, so this is the count so far
            keep = np.isinf(mean) & ((np.isinf(x) & ((mean > 0) == (x > 0))) | (~np.isinf(x) & ~np.isnan(x)))
            t, cc = kahan_add(mean, comp, x / n - mean / n)
            upd = live & ~keep
            mean, comp = np.where(upd, t, mean), np.where(upd, cc, comp)
        return np.where(np.isinf(mean), mean, mean + comp)


def _mad_ot(c: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    """Median absolute deviation: the median of |v - median(v)| over the window."""
    S, T, K = c.W.shape
    half = np.full(S * T, 0.5)
    W = c.W.reshape(S * T, K).T
    M = c.M.reshape(S * T, K).T
    med, ok = _quantile_sorted(half, W, M)
    with np.errstate(invalid="ignore"):
        dev = np.abs(W - med[None, :])
    res, _ = _quantile_sorted(half, dev, M)
    # A NaN sample leaves the median, and so the deviation, undefined: Prometheus answers NaN.
    res = np.where((M & np.isnan(W)).any(axis=0), np.nan, res)
    return res.reshape(S, T), ok.reshape(S, T)


def _ts_of(c: _Ctx, which: str) -> tuple[np.ndarray, np.ndarray]:
    """Timestamp (seconds) of the window's min, max, first or last sample (the last of equal ones)."""
    K = c.W.shape[-1]
    if which == "last":
        pos = c.cnt - 1
    elif which == "first":
        pos = np.zeros_like(c.cnt)
    else:
        # Prometheus keeps the latest sample among equal extremes, and skips NaN unless all are NaN.
        fill = np.inf if which == "min" else -np.inf
        vals = np.where(c.M & ~np.isnan(c.W), c.W, fill)
        rev = vals[..., ::-1]
        pos = K - 1 - (np.argmin(rev, axis=-1) if which == "min" else np.argmax(rev, axis=-1))
        allnan = ~(c.M & ~np.isnan(c.W)).any(-1)
        pos = np.where(allnan, c.cnt - 1, pos)
    return c.at(c.Wt, pos) / 1000.0, c.cnt >= 1


def _des(c: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    """double_exponential_smoothing (holt_winters in 2.x): level and trend smoothed with factors
    sf and tf in (0, 1), over the window's samples in order."""
    sf, tf = c.extra[0], c.extra[1]
    if ((sf <= 0) | (sf >= 1)).any():
        raise BadInput(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {float(sf[((sf <= 0) | (sf >= 1))][0])}")
    if ((tf <= 0) | (tf >= 1)).any():
        raise BadInput(f"invalid trend factor. Expected: 0 < tf < 1, got: {float(tf[((tf <= 0) | (tf >= 1))][0])}")
    S, T, K = c.W.shape
    sfv, tfv = sf[None, :], tf[None, :]
    with np.errstate(all="ignore"):
        s0 = c.W[..., 0]
        b = c.W[..., 1] - c.W[..., 0] if K > 1 else np.zeros((S, T))
        s1 = s0
        for k in range(1, K):
            live = c.M[..., k]
            if k > 1:
                b = np.where(live, tfv * (s1 - s0) + (1 - tfv) * b, b)
            x = c.W[..., k]
            nxt = sfv * x + (1 - sfv) * (s1 + b)
            s0, s1 = np.where(live, s1, s0), np.where(live, nxt, s1)
    return s1, c.cnt >= 2


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
    "mad_over_time": (_mad_ot, 0),
    "first_over_time": (lambda c: (c.W[..., 0], c.cnt >= 1), 0),
    "ts_of_min_over_time": (lambda c: _ts_of(c, "min"), 0),
    "ts_of_max_over_time": (lambda c: _ts_of(c, "max"), 0),
    "ts_of_first_over_time": (lambda c: _ts_of(c, "first"), 0),
    "ts_of_last_over_time": (lambda c: _ts_of(c, "last"), 0),
    "double_exponential_smoothing": (_des, 0),
}

_ENDPOINT_FUNCS = {"rate", "increase", "delta", "irate", "idelta"}
