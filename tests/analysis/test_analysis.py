"""Onset detection, robust scoring, log templates, change correlation, concentration, ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from incidentbook.analysis.anomaly import deseasonalise, detect_onset, score_anomaly, trend_slope
from incidentbook.analysis.changes import correlate_changes
from incidentbook.analysis.concentration import concentration
from incidentbook.analysis.logs import template_shifts
from incidentbook.analysis.ranking import callees, callers, place, position

T0 = pd.Timestamp("2026-11-23T10:00:00Z")


def series(values, step_s: int = 15, start: pd.Timestamp = T0) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=float),
                     index=pd.date_range(start, periods=len(values), freq=f"{step_s}s"))


def noisy(n: int, level: float, sd: float, seed: int = 0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, sd, n)


def test_step_change_onset_is_found_within_a_scrape():
    v = noisy(240, 0.01, 0.002)
    v[150:] += 0.2
    s = series(v)
    onset = detect_onset(s, s.index[100])
    assert onset is not None and abs((onset - s.index[150]).total_seconds()) <= 15


def test_ramp_onset_is_walked_back_to_where_the_rise_began():
    v = noisy(240, 100, 2)
    v[150:] += np.linspace(0, 200, 90)
    s = series(v)
    onset = detect_onset(s, s.index[100])
    assert onset is not None and s.index[145] <= onset <= s.index[160]


def test_noise_alone_has_no_onset_and_a_small_score():
    s = series(noisy(240, 50, 5, seed=3))
    assert detect_onset(s, s.index[120]) is None
    a = score_anomaly(s, s.index[120])
    assert a is not None and a.score < 2


def test_single_spike_is_not_an_onset():
    v = noisy(240, 50, 1)
    v[180] = 500
    s = series(v)
    assert detect_onset(s, s.index[120]) is None


def test_drop_is_scored_in_the_down_direction():
    v = noisy(240, 0.93, 0.005)
    v[160:] = 0.12
    s = series(v)
    down = score_anomaly(s, s.index[120], "down")
    up = score_anomaly(s, s.index[120], "up")
    assert down.score > 10 and down.level == pytest.approx(0.12, abs=0.02)
    assert up.onset is None


def test_flat_baseline_uses_relative_floor_instead_of_zero_spread():
    s = series([10.0] * 120 + [10.3] * 120)  # +3% wiggle on a perfectly flat baseline
    assert detect_onset(s, s.index[100], rel_floor=0.05) is None


def test_daily_seasonality_is_removed_when_two_days_are_present():
    idx = pd.date_range(T0 - pd.Timedelta("3D"), periods=3 * 288, freq="5min")
    daily = 100 + 50 * np.sin(2 * np.pi * (idx.hour * 60 + idx.minute) / 1440)
    s = pd.Series(daily + np.random.default_rng(1).normal(0, 1, len(idx)), index=idx)
    cut = idx[-60]
    raw = score_anomaly(s, cut, seasonal_period=None)
    des = score_anomaly(s, cut)
    assert len(deseasonalise(s)) < len(s)
    assert abs(des.score) < 3 and abs(raw.score) > abs(des.score)


def test_trend_slope_is_per_hour():
    s = series(np.arange(240) * 0.25, step_s=15)  # 0.25 per 15 s = 60 per hour
    assert trend_slope(s) == pytest.approx(60, rel=1e-6)


def test_template_shift_finds_novel_error_template_and_ignores_steady_ones():
    base = [f"GET /api/items/{i} 200 in {i % 40}ms" for i in range(300)]
    inc = [f"GET /api/items/{i} 200 in {i % 40}ms" for i in range(150)]
    inc += [f"error: pool exhausted waiting 5{i % 9}ms for connection to 10.0.3.{i % 200}:5432" for i in range(40)]
    shifts = template_shifts(base, inc, 60, 30)
    assert shifts and shifts[0].novel and "pool exhausted" in shifts[0].template
    assert shifts[0].incident_count == 40
    assert not any("GET" in s.template for s in shifts)


def test_changes_close_before_onset_rank_first():
    onset = T0 + pd.Timedelta("30min")
    df = pd.DataFrame({"timestamp": [onset - pd.Timedelta("2min"), onset - pd.Timedelta("25min"),
                                     onset - pd.Timedelta("3h"), onset + pd.Timedelta("20min")],
                       "service": ["a", "b", "c", "d"], "kind": ["deploy", "config", "flag", "deploy"],
                       "description": ["", "", "", ""]})
    m = correlate_changes(df, onset)
    assert [x.service for x in m] == ["a", "b"]
    assert m[0].score > m[1].score


def test_concentration_tells_few_clients_from_many():
    few = pd.Series({f"10.0.0.{i}": (500 if i < 3 else 5) for i in range(40)})
    spread = pd.Series({f"10.0.0.{i}": 20 for i in range(40)})
    assert concentration(few).concentrated
    assert not concentration(spread).concentrated
    assert concentration(pd.Series(dtype=float)) is None


TOPO = {"web": ["api"], "api": ["auth", "cat"], "cat": ["cache", "db"], "auth": ["db"], "cache": [], "db": []}


def test_graph_helpers():
    assert callees(TOPO, "api") == {"auth", "cat", "cache", "db"}
    assert callers(TOPO, "db") == {"auth", "cat", "api", "web"}
    assert position(TOPO, "cat", "web") == "upstream"
    assert position(TOPO, "cat", "db") == "downstream"
    assert position(TOPO, "cat", "auth") == "unknown"


def test_root_is_earliest_onset_with_healthy_dependencies():
    t = T0
    onsets = {"cache": t, "cat": t + pd.Timedelta("1min"), "api": t + pd.Timedelta("2min"),
              "web": t + pd.Timedelta("2min")}
    pl = place(onsets, TOPO)
    assert pl["cache"].is_root
    assert not pl["cat"].is_root and pl["cat"].explained_by == ["cache"]
    assert not pl["web"].is_root


def test_dependency_failing_much_later_does_not_explain_the_caller():
    onsets = {"cat": T0, "db": T0 + pd.Timedelta("20min")}
    pl = place(onsets, TOPO)
    assert pl["cat"].is_root and pl["db"].is_root
