"""Robust anomaly scoring and onset (change-point) detection for one time series.

A baseline window (before the incident) gives a median and a MAD; the incident window is scored
in robust z units. Where the series covers at least two seasonal periods, the value one period
earlier is subtracted first so a daily peak is not mistaken for an anomaly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Direction = Literal["up", "down"]
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Anomaly:
    """How far a series moved from its baseline, in robust z units, and when it started."""

    score: float  # robust z of the incident level (positive = in `direction`)
    direction: Direction
    baseline: float  # baseline median
    spread: float  # baseline MAD scaled to sigma (floored)
    level: float  # typical incident-window value (median after the onset)
    peak: float  # most extreme incident-window value in `direction`
    onset: pd.Timestamp | None

    @property
    def change(self) -> float:
        """Incident level minus baseline, in the series' own units."""
        return self.level - self.baseline

    @property
    def ratio(self) -> float:
        """Incident level over baseline (inf when the baseline is zero)."""
        return self.level / self.baseline if self.baseline else (np.inf if self.level else 1.0)


def _clean(series: pd.Series) -> pd.Series:
    # called several times per series per investigation: skip the copies when already clean
    s = series if series.dtype == "float64" else pd.to_numeric(series, errors="coerce").astype("float64")
    finite = np.isfinite(s.to_numpy())
    if not finite.all():
        s = s[finite]
    return s if s.index.is_monotonic_increasing else s.sort_index()


DAY = pd.Timedelta("1D")


def deseasonalise(series: pd.Series, period: pd.Timedelta = DAY) -> pd.Series:
    """The series minus its value one `period` earlier, when it spans two periods; else unchanged."""
    s = _clean(series)
    if s.empty or s.index[-1] - s.index[0] < 2 * period:
        return s
    prior = s.copy()
    prior.index = prior.index + period
    aligned = prior.reindex(s.index, method="nearest", tolerance=period / 48)
    out = (s - aligned).dropna()
    return out if len(out) >= 10 else s


def robust_stats(values: pd.Series | np.ndarray, floor: float = 0.0) -> tuple[float, float]:
    """Median and MAD scaled to a standard deviation (never below `floor`)."""
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * MAD_TO_SIGMA
    return med, max(mad, floor)


def detect_onset(series: pd.Series, baseline_end: pd.Timestamp, direction: Direction = "up",
                 threshold: float = 4.0, min_run: int = 3, rel_floor: float = 0.05,
                 abs_floor: float = 1e-9) -> pd.Timestamp | None:
    """First time after `baseline_end` the series leaves its baseline for `min_run` points.

    The baseline is everything before `baseline_end`. A point is out when its robust z in
    `direction` exceeds `threshold`; the spread is floored at `rel_floor` of the baseline level
    so a perfectly flat baseline does not make every wiggle an anomaly. The onset is walked back
    to where the excursion began (the last point still inside one threshold's half).
    """
    s = _clean(series)
    base = s[s.index < baseline_end]
    rest = s[s.index >= baseline_end]
    if len(base) < 3 or rest.empty:
        return None
    med, spread = robust_stats(base, floor=max(abs_floor, rel_floor * abs(float(np.median(base)))))
    sign = 1.0 if direction == "up" else -1.0
    z = sign * (s.to_numpy() - med) / spread
    out = z > threshold
    start = len(base)  # the series is sorted, so the incident window starts here
    run = 0
    for i in range(start, len(z)):
        run = run + 1 if out[i] else 0
        if run >= min_run:
            first = i - min_run + 1
            # walk back to where the rise began (still above half the threshold)
            while first > start and z[first - 1] > threshold / 2:
                first -= 1
            return pd.Timestamp(s.index[first])
    return None


def score_anomaly(series: pd.Series, baseline_end: pd.Timestamp, direction: Direction = "up",
                  threshold: float = 4.0, min_run: int = 3, rel_floor: float = 0.05,
                  abs_floor: float = 1e-9, seasonal_period: pd.Timedelta | None = DAY,
                  ) -> Anomaly | None:
    """Score the part of `series` after `baseline_end` against the part before it.

    Returns None when there is too little data. `score` is the robust z of the incident level
    (the median after the onset, or of the whole incident window when no onset is found).
    """
    s = _clean(series)
    if seasonal_period is not None:
        s = deseasonalise(s, seasonal_period) if len(s) else s
    base = s[s.index < baseline_end]
    rest = s[s.index >= baseline_end]
    if len(base) < 3 or rest.empty:
        return None
    med, spread = robust_stats(base, floor=max(abs_floor, rel_floor * abs(float(np.median(base)))))
    onset = detect_onset(s, baseline_end, direction, threshold, min_run, rel_floor, abs_floor)
    after = rest[rest.index >= onset] if onset is not None else rest
    level = float(np.median(after.to_numpy()))
    peak = float(after.max() if direction == "up" else after.min())
    sign = 1.0 if direction == "up" else -1.0
    return Anomaly(score=sign * (level - med) / spread, direction=direction, baseline=med,
                   spread=spread, level=level, peak=peak, onset=onset)


def trend_slope(series: pd.Series) -> float:
    """Least-squares slope per hour (series units), for slow growth such as a leak."""
    s = _clean(series)
    if len(s) < 3:
        return 0.0
    x = (s.index - s.index[0]).total_seconds().to_numpy() / 3600.0
    y = s.to_numpy()
    if np.ptp(x) == 0:
        return 0.0
    return float(np.polyfit(x, y, 1)[0])
