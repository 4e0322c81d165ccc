"""The rule file against real Prometheus: it loads, and its expressions agree with the simulator."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from incidentbook.scenarios import RULES_FILE, generate, load_rules
from incidentbook.scenarios.alerts import EVAL_INTERVAL_S, Evaluator, _expr_values
from incidentbook.scenarios.metrics import render_series
from incidentbook.scenarios.run import simulate
from incidentbook.telemetry.bundle import open_bundle

pytestmark = pytest.mark.slow


def test_promtool_accepts_the_rule_file():
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not shutil.which(promtool):
        pytest.skip("promtool is not installed (Debian package `prometheus`; `make system-deps`)")
    r = subprocess.run([promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(load_rules())} rules found" in r.stdout


def _prom_truth(prom, expr: str, start: float, end: float) -> dict[str, np.ndarray]:
    """service -> bool per evaluation time: does the expression return a sample there?"""
    data = prom.query_range(expr, start, end, EVAL_INTERVAL_S)
    times = np.arange(start, end + 1e-6, EVAL_INTERVAL_S)
    out: dict[str, np.ndarray] = {}
    for series in data["result"]:
        svc = series["metric"].get("service", "")
        hit = np.zeros(len(times), dtype=bool)
        ts = np.array([float(v[0]) for v in series["values"]])
        hit[np.searchsorted(times, ts)] = True
        out[svc] = out.get(svc, np.zeros(len(times), dtype=bool)) | hit
    return out


@pytest.mark.parametrize("name", ["kv-cache-break", "memory-leak", "disk-filling-up"])
def test_rules_fire_the_same_in_real_prometheus(tmp_path, name):
    from tests.support.promserver import start_prometheus

    gen = generate(name, tmp_path / "bundle", seed=0)
    bundle = open_bundle(gen.bundle_dir)
    start, end = (ts.timestamp() for ts in bundle.window)
    onset = pd.Timestamp(gen.ground_truth["onset"]).timestamp()
    last = end - 15  # the last scrape
    # our own evaluation of each expression on the same series
    from incidentbook.scenarios.catalog import _window
    from incidentbook.scenarios.simulate import FaultSpec
    from incidentbook.scenarios.topology import shop_system

    t = _window(0, end - start)
    assert t[0] == start
    onset_idx = int(np.searchsorted(t, onset))
    sim = simulate(shop_system(), FaultSpec(gen.ground_truth["fault_kind"], gen.ground_truth["root_cause_service"],
                                            onset_idx, {}), t, 0)
    ev = Evaluator(render_series(sim), t)
    with start_prometheus(tmp_path, bundle.metrics) as prom:
        fired_real: set[tuple[str, str]] = set()
        fired_ours: set[tuple[str, str]] = set()
        for rule in load_rules():
            alert = rule["alert"]
            real = _prom_truth(prom, rule["expr"], start, last)
            ours: dict[str, np.ndarray] = {}
            for key, vals in _expr_values(ev, alert).items():
                svc = dict(key).get("service", "")
                hit = ~np.isnan(vals)[: len(np.arange(start, last + 1e-6, EVAL_INTERVAL_S))]
                ours[svc] = ours.get(svc, np.zeros(len(hit), dtype=bool)) | hit
            times = np.arange(start, last + 1e-6, EVAL_INTERVAL_S)
            pre = times < onset
            for svc in set(real) | set(ours):
                r = real.get(svc, np.zeros(len(times), dtype=bool))
                o = ours.get(svc, np.zeros(len(times), dtype=bool))
                agree = float(np.mean(r == o))
                assert agree >= 0.95, f"{alert} on {svc}: Prometheus and simulator agree on only {agree:.0%} of evaluations"
                if r[~pre].sum() >= 6:
                    fired_real.add((alert, svc))
                if o[~pre].sum() >= 6:
                    fired_ours.add((alert, svc))
                assert not r[pre].any(), f"{alert} on {svc} is true in the baseline in Prometheus"
        assert fired_real == fired_ours
        target = gen.ground_truth["root_cause_service"]
        assert any(s == target for _, s in fired_real)
        assert len({s for _, s in fired_real}) >= 2, "one cause should raise alerts on several services"
