"""Property-based differential test: hypothesis draws the data (scrape interval, jitter, gaps,
counter resets, value scale), a real Prometheus and the replay engine must agree on it."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incidentbook.telemetry.replay import ReplaySource
from tests.support.promserver import FIXED_NOW, binaries_available, start_prometheus

pytestmark = pytest.mark.slow

QUERIES = [
    "rate(c[{w}])", "increase(c[{w}])", "irate(c[{w}])", "delta(g[{w}])", "idelta(g[{w}])",
    "deriv(g[{w}])", "avg_over_time(g[{w}])", "stddev_over_time(g[{w}])",
    "quantile_over_time(0.3, g[{w}])", "sum by (k) (rate(c[{w}]))", "max(g) - min(g)", "g",
    "resets(c[{w}])", "changes(g[{w}])",
    # subqueries (inner steps aligned to absolute time, windows closed in 2.x), holt_winters
    "max_over_time(rate(c[{w}])[5m:30s])", "avg_over_time(g[{w}:15s])", "sum_over_time(g[10m:])",
    "holt_winters(g[{w}], 0.3, 0.6)", "rate(c[{w}:10s])",
]


@st.composite
def datasets(draw: st.DrawFn) -> pd.DataFrame:
    seed = draw(st.integers(0, 2**31 - 1))
    interval = draw(st.sampled_from([5, 10, 15, 30, 60]))
    n = draw(st.integers(3, 150))
    jitter_ms = draw(st.sampled_from([0, 1, 250, 2000]))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e6]))
    resets = draw(st.integers(0, 3))
    gap = draw(st.tuples(st.integers(2, 150), st.integers(0, 40)))
    rng = np.random.default_rng(seed)
    rows = []
    start = FIXED_NOW - 3 * 3600
    for k in ("a", "b"):
        ms = start * 1000 + np.arange(n, dtype="int64") * interval * 1000
        ms = np.unique(ms + rng.integers(0, jitter_ms + 1, n))
        ms = ms[(np.arange(len(ms)) < gap[0]) | (np.arange(len(ms)) >= gap[0] + gap[1])]
        counter = np.cumsum(rng.poisson(3, len(ms))).astype(float) * scale
        for pos in rng.choice(len(ms), size=min(resets, len(ms)), replace=False):
            counter[pos:] -= counter[pos]
        gauge = np.round(rng.normal(0, 1, len(ms)) * scale, 6)
        for name, vals in (("c", counter), ("g", gauge)):
            rows.append(pd.DataFrame({"timestamp": pd.to_datetime(ms, unit="ms", utc=True), "metric": name,
                                      "labels": json.dumps({"k": k}), "value": vals}))
    return pd.concat(rows, ignore_index=True)


def _close(a: str, b: str) -> bool:
    fa, fb = float(a), float(b)
    return (math.isnan(fa) and math.isnan(fb)) or math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.skipif(binaries_available() is not None, reason=str(binaries_available()))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=datasets(), window=st.sampled_from(["30s", "1m", "2m", "5m"]), step=st.sampled_from([7, 15, 60]))
def test_replay_agrees_with_prometheus_on_drawn_data(tmp_path_factory: pytest.TempPathFactory,
                                                    data: pd.DataFrame, window: str, step: int) -> None:
    src = ReplaySource.from_frame(data, promql="2", subquery_step_s=15)
    t_min = int(data["timestamp"].min().timestamp())
    t_max = int(data["timestamp"].max().timestamp()) + 400
    with start_prometheus(tmp_path_factory.mktemp("prop"), data) as prom:
        for template in QUERIES:
            q = template.format(w=window)
            want = prom.query_range(q, t_min, t_max, step)["result"]
            got = src.query_range_raw(q, t_min, t_max, step)["result"]
            assert [s["metric"] for s in got] == [s["metric"] for s in want], q
            for ws, gs in zip(want, got):
                assert [p[0] for p in gs["values"]] == [p[0] for p in ws["values"]], (q, ws["metric"])
                bad = [(a, b) for a, b in zip(ws["values"], gs["values"]) if not _close(a[1], b[1])]
                assert not bad, (q, ws["metric"], bad[:3])
