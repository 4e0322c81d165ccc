"""The scenario catalogue: every scenario writes a valid bundle with ground truth and alerts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from incidentbook.errors import NotFound
from incidentbook.scenarios import (
    DEFAULT_SCENARIO,
    FAULT_KINDS,
    REMEDIATION,
    generate,
    generate_system,
    get_scenario,
    list_scenarios,
)
from incidentbook.scenarios.faults import REMEDIATION_ACTIONS, eligible_targets
from incidentbook.scenarios.topology import shop_system
from incidentbook.telemetry.bundle import open_bundle

from .helpers import ALL_NAMES, series_frame, service_rate

ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


def test_catalogue_covers_every_fault_kind():
    infos = list_scenarios()
    assert len(infos) >= 10
    assert len({i.name for i in infos}) == len(infos)
    assert {i.fault_kind for i in infos} == set(FAULT_KINDS)
    assert set(REMEDIATION) == set(FAULT_KINDS) and set(REMEDIATION.values()) <= set(REMEDIATION_ACTIONS)
    assert get_scenario(DEFAULT_SCENARIO).fault_kind == "cache_failure"
    assert all(i.story and i.root_cause_service in shop_system().services for i in infos)


def test_unknown_scenario_names_the_known_ones(tmp_path):
    with pytest.raises(NotFound) as e:
        generate("no-such-thing", tmp_path)
    assert "no-such-thing" in str(e.value) and DEFAULT_SCENARIO in str(e.value)


def test_same_seed_same_bundle_other_seed_differs(tmp_path):
    a = generate("bad-deploy", tmp_path / "a", seed=3, duration="90min")
    b = generate("bad-deploy", tmp_path / "b", seed=3, duration="90min")
    c = generate("bad-deploy", tmp_path / "c", seed=4, duration="90min")
    ma, mb, mc = (open_bundle(g.bundle_dir).metrics for g in (a, b, c))
    pd.testing.assert_frame_equal(ma, mb)
    for f in ("logs.jsonl", "events.jsonl", "changes.jsonl", "manifest.json"):
        assert (a.bundle_dir / f).read_text() == (b.bundle_dir / f).read_text(), f
    assert [p.read_text() for p in a.payloads] == [p.read_text() for p in b.payloads]
    assert a.manifest["window"] != c.manifest["window"] or not ma["value"].equals(mc["value"])


@pytest.mark.parametrize("name", ALL_NAMES)
def test_scenario_bundle_and_ground_truth(generated, name):
    g = generated(name)
    info = get_scenario(name)
    b = open_bundle(g.bundle_dir)
    gt = b.manifest["ground_truth"]
    assert gt["root_cause_service"] == info.root_cause_service
    assert gt["fault_kind"] == info.fault_kind
    assert gt["is_incident"] is info.is_incident
    assert gt["remediation"]["action"] == REMEDIATION[info.fault_kind]
    assert gt["remediation"]["target"] == info.root_cause_service
    assert b.manifest["source"] == f"scenario:{name}" and b.manifest["namespace"] == "shop"
    assert 10 <= len(b.services) <= 14 and set(b.topology) == set(b.services)
    start, end = b.window
    onset = pd.Timestamp(gt["onset"])
    assert start + pd.Timedelta("60min") < onset < end - pd.Timedelta("45min")
    assert 2_000 <= len(b.logs) <= 60_000
    assert b.events and b.metrics["metric"].nunique() > 25
    # alerts: nothing in the baseline except a known pre-existing warning; something after onset
    pre = {(a.labels["alertname"], a.labels["service"]) for a in g.alerts if a.fired_at < onset.timestamp()}
    allowed = {("CertificateExpiringSoon", gt["root_cause_service"])} if info.fault_kind == "cert_expiry" else set()
    assert pre <= allowed, pre
    post = [a for a in g.alerts if a.fired_at >= onset.timestamp()]
    assert post, "no alert fired after onset"
    affected = {gt["root_cause_service"], *shop_system().upstream(gt["root_cause_service"])}
    if info.fault_kind == "cache_failure":
        affected |= {"postgres"} | set(shop_system().services)
    assert {a.labels["service"] for a in post} & affected
    # webhook payloads are what Alertmanager sends
    assert g.payloads and [p.name for p in g.payloads] == sorted(p.name for p in g.payloads)
    for path in g.payloads:
        p = json.loads(path.read_text())
        assert p["version"] == "4" and p["groupKey"].startswith("{}:{") and p["externalURL"].startswith("http")
        for a in p["alerts"]:
            assert {"alertname", "service", "severity", "namespace"} <= set(a["labels"])
            assert {"summary", "description", "runbook_url"} <= set(a["annotations"])
            assert len(a["fingerprint"]) == 16 and a["generatorURL"].startswith("http")
            pd.Timestamp(a["startsAt"])


def test_kv_cache_break_hit_ratio_collapses_and_db_traffic_rises(generated):
    g = generated("kv-cache-break")
    b = open_bundle(g.bundle_dir)
    onset = pd.Timestamp(g.ground_truth["onset"])
    before = (onset - pd.Timedelta("40min"), onset - pd.Timedelta("5min"))
    after = (onset + pd.Timedelta("10min"), onset + pd.Timedelta("40min"))

    def hit_ratio(win):
        h = service_rate(b.metrics, "redis_keyspace_hits_total", *win, service="kv-cache")
        m = service_rate(b.metrics, "redis_keyspace_misses_total", *win, service="kv-cache")
        return h / (h + m)

    assert hit_ratio(before) > 0.85 and hit_ratio(after) < 0.3
    db_before = service_rate(b.metrics, "pg_stat_database_xact_commit", *before)
    db_after = service_rate(b.metrics, "pg_stat_database_xact_commit", *after)
    assert db_after > 2.5 * db_before
    # the cause has no deploy; the alerts name the symptoms on other services too
    names = {(a.labels["alertname"], a.labels["service"]) for a in g.alerts}
    assert ("CacheHitRatioLow", "kv-cache") in names
    assert ("TrafficAnomaly", "postgres") in names
    assert {s for _, s in names} - {"kv-cache"}


def test_marketing_launch_raises_traffic_not_errors(generated):
    g = generated("marketing-launch")
    b = open_bundle(g.bundle_dir)
    onset = pd.Timestamp(g.ground_truth["onset"])
    before = (onset - pd.Timedelta("40min"), onset - pd.Timedelta("5min"))
    after = (onset + pd.Timedelta("20min"), onset + pd.Timedelta("50min"))
    r0 = service_rate(b.metrics, "http_requests_total", *before, service="frontend")
    r1 = service_rate(b.metrics, "http_requests_total", *after, service="frontend")
    assert r1 > 1.8 * r0
    errs = sum(service_rate(b.metrics, "http_requests_total", *after, service="frontend", code=c)
               for c in ("500", "503", "504"))
    assert errs / r1 < 0.01
    assert any(c["kind"] == "marketing_launch" for c in b.context)
    assert not any(a.labels["severity"] == "critical" for a in g.alerts)


def test_memory_leak_oomkills_and_resets_counters(generated):
    g = generated("memory-leak")
    b = open_bundle(g.bundle_dir)
    target = g.ground_truth["root_cause_service"]
    assert any(e["reason"] == "OOMKilling" and target in e["message"] for e in b.events)
    assert any(e["reason"] == "BackOff" and e["name"].startswith(target) for e in b.events)
    df = b.metrics[(b.metrics["metric"] == "http_requests_total") & b.metrics["labels"].str.contains(f'"service":"{target}"')]
    drops = sum(int((np.diff(grp.sort_values("timestamp")["value"].to_numpy()) < 0).any())
                for _, grp in df.groupby("labels", observed=True))
    assert drops > 0, "a restarted container must reset its counters"
    assert any(c["kind"] == "deploy" and c["service"] == target for c in b.changes)
    alerts = {a.labels["alertname"] for a in g.alerts if a.labels["service"] == target}
    assert {"KubePodOOMKilled", "PodCrashLooping"} <= alerts


def test_abuse_concentrates_on_a_few_clients(generated):
    g = generated("credential-stuffing")
    b = open_bundle(g.bundle_dir)
    onset = g.ground_truth["onset"]
    lines = [json.loads(r["line"]) for r in b.logs if r["labels"]["service"] == "gateway" and r["timestamp"] > onset]
    login = [ln for ln in lines if ln["path"].endswith("login")]
    clients = pd.Series([ln["x_forwarded_for"] for ln in login]).value_counts()
    assert clients.head(5).sum() > 0.6 * len(login)
    assert set(clients.head(3).index) <= set(g.ground_truth["remediation"]["clients"])
    assert ("HighRateLimiting", "gateway") in {(a.labels["alertname"], a.labels["service"]) for a in g.alerts}


def test_seed_moves_the_fault_between_eligible_services(tmp_path):
    eligible = eligible_targets(shop_system(), "bad_deploy")
    targets = set()
    for seed in (1, 2, 3, 5, 8):
        info = generate("bad-deploy", tmp_path / str(seed), seed=seed, duration="50min").ground_truth
        assert info["root_cause_service"] in eligible
        targets.add(info["root_cause_service"])
    assert len(targets) >= 2


def test_random_system_variant(tmp_path):
    g = generate_system(tmp_path / "sys", seed=11, fault_kind="slow_dependency", duration="2h")
    b = open_bundle(g.bundle_dir)
    base = set(shop_system().services)
    assert set(b.services) != base and 10 <= len(b.services) <= 14
    gt = b.manifest["ground_truth"]
    assert gt["fault_kind"] == "slow_dependency" and gt["root_cause_service"] in b.services
    assert gt["fault_kind"] not in b.manifest["source"]
    with pytest.raises(NotFound):
        generate_system(tmp_path / "x", fault_kind="meteor_strike")


def _free_share(b, service: str) -> pd.Series:
    avail = series_frame(b.metrics, "kubelet_volume_stats_available_bytes", service=service)
    cap = series_frame(b.metrics, "kubelet_volume_stats_capacity_bytes", service=service)
    return avail.set_index("timestamp")["value"] / cap.set_index("timestamp")["value"]


def test_disk_filling_up_fills_the_database_volume_until_writes_fail(generated):
    g = generated("disk-filling-up")
    b = open_bundle(g.bundle_dir)
    onset = pd.Timestamp(g.ground_truth["onset"])
    free = _free_share(b, "postgres")
    assert free[free.index < onset].min() > 0.3 and free.iloc[-1] < 0.01, free.describe()
    # the first page is the full-disk warning on the database, before the callers fail
    first = json.loads(g.payloads[0].read_text())["alerts"][0]["labels"]
    assert (first["alertname"], first["service"]) == ("DiskFillingUp", "postgres")
    assert any(a.labels["alertname"] == "HighErrorRate" and a.labels["service"] == "inventory" for a in g.alerts)
    assert any("archive_command" in c["description"] and c["service"] == "postgres" for c in b.changes)
    pg = [r["line"] for r in b.logs if r["labels"]["service"] == "postgres"]
    assert any("No space left on device" in line for line in pg) and any("archive command failed" in line for line in pg)


def test_other_scenarios_keep_their_volumes_healthy(generated):
    b = open_bundle(generated("kv-cache-break").bundle_dir)
    for svc in ("postgres", "kv-cache", "queue"):
        free = _free_share(b, svc)
        assert free.min() > 0.3 and free.iloc[0] - free.iloc[-1] < 0.02, svc
    assert not any(a.labels["alertname"] == "DiskFillingUp" for a in generated("kv-cache-break").alerts)
