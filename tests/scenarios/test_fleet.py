"""The second generator (fleet-*): every scenario writes a bundle that replays through
ReplaySource and the PromQL engine, in its exporters' own metric names, with its truth kept
out of the manifest."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from incidentbook.scenarios.fleet import generate_fleet, list_fleet
from incidentbook.telemetry.bundle import open_bundle, to_utc
from incidentbook.telemetry.replay import ReplaySource

SEED = 4
DURATION = "90min"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fleet")
    return {s.name: generate_fleet(s.name, root / s.name, seed=SEED, duration=DURATION).bundle_dir for s in list_fleet()}


def _truth(bundle: Path) -> dict:
    return json.loads((bundle / "truth.json").read_text(encoding="utf-8"))


def _series(src: ReplaySource, query: str, bundle: Path):
    b = open_bundle(bundle)
    start, end = b.window
    return src.query_range(query, start, end, step=60)


def _before_after(df, onset: str, col: str = "value") -> tuple[float, float]:
    o = to_utc(onset)
    before = df[df.timestamp < o - np.timedelta64(5, "m")][col].mean()
    after = df[df.timestamp > o + np.timedelta64(8, "m")][col].mean()
    return float(before), float(after)


def test_every_scenario_replays_with_truth_outside_the_manifest(fleet: dict[str, Path]) -> None:
    for name, bundle in fleet.items():
        b = open_bundle(bundle)
        assert b.manifest["ground_truth"] is None, name
        truth = _truth(bundle)
        assert truth["case"] == bundle.name and truth["root_cause_service"] and truth["fault_kind"], name
        start, end = b.window
        assert start < to_utc(truth["onset"]) < end, name
        if truth["root_cause_service"] in b.services:
            assert truth["root_cause_service"] in b.topology, name
        src = ReplaySource(bundle)
        metric = "requests" if name.startswith("fleet-cw-") else "container_cpu_usage_seconds_total"
        up = src.query_range(f"sum(rate({metric}[5m]))" if metric.endswith("_total") else f"sum({metric})", start, end, step=300)
        assert len(up) > 0, name


def test_auth_bad_deploy_shows_in_micrometer_status_codes(fleet: dict[str, Path]) -> None:
    bundle = fleet["fleet-auth-bad-deploy"]
    truth = _truth(bundle)
    src = ReplaySource(bundle)
    q = (f'sum(rate(http_server_requests_seconds_count{{service="{truth["root_cause_service"]}",outcome="SERVER_ERROR"}}[5m]))'
         f' / sum(rate(http_server_requests_seconds_count{{service="{truth["root_cause_service"]}"}}[5m]))')
    before, after = _before_after(_series(src, q, bundle), truth["onset"])
    assert before < 0.01 and after > 0.15
    changes = [json.loads(line) for line in (bundle / "changes.jsonl").read_text().splitlines()]
    assert any(c["service"] == truth["root_cause_service"] and c["kind"] == "deploy" for c in changes)


def test_go_pool_exhaustion_reaches_max_open(fleet: dict[str, Path]) -> None:
    bundle = fleet["fleet-billing-pool-exhaustion"]
    truth = _truth(bundle)
    svc = truth["root_cause_service"]
    src = ReplaySource(bundle)
    q = f'sum(go_sql_stats_connections_in_use{{service="{svc}"}}) / sum(go_sql_stats_connections_max_open{{service="{svc}"}})'
    before, after = _before_after(_series(src, q, bundle), truth["onset"])
    assert before < 0.6 and after > 0.95


def test_broken_route_collapses_traffic_behind_the_edge(fleet: dict[str, Path]) -> None:
    bundle = fleet["fleet-edge-broken-route"]
    truth = _truth(bundle)
    b = open_bundle(bundle)
    edge = truth["root_cause_service"]
    behind = [s for s in b.topology[edge]]
    src = ReplaySource(bundle)
    collapsed = []
    for svc in behind:  # each backend's own request counter, in whichever dialect it speaks
        for family in ("http_requests_total", "http_server_request_duration_seconds_count",
                       "http_server_requests_seconds_count", "grpc_server_started_total"):
            rates = _series(src, f'sum(rate({family}{{service="{svc}"}}[5m]))', bundle)
            if len(rates):
                before, after = _before_after(rates, truth["onset"])
                if after < 0.05 * before:
                    collapsed.append(svc)
                break
    assert len(collapsed) == 1


def test_disk_fills_through_the_whole_baseline(fleet: dict[str, Path]) -> None:
    bundle = fleet["fleet-disk-filling"]
    _truth(bundle)
    src = ReplaySource(bundle)
    df = _series(src, "min(kubelet_volume_stats_available_bytes / kubelet_volume_stats_capacity_bytes)", bundle)
    first, last = float(df.value.iloc[0]), float(df.value.iloc[-1])
    assert 0.08 < first < 0.25 and last < 0.005
    assert np.all(np.diff(df.value.to_numpy()) <= 1e-9)  # monotone: it started before the window


def test_abuse_concentrates_on_one_account_id_in_json_logs(fleet: dict[str, Path]) -> None:
    bundle = fleet["fleet-account-abuse"]
    truth = _truth(bundle)
    onset = to_utc(truth["onset"])
    rejected = Counter()
    for row in open_bundle(bundle).logs:
        doc = json.loads(row["line"])
        if doc.get("status") == 429 and to_utc(row["timestamp"]) > onset:
            rejected[doc["account_id"]] += 1
    (top, n), *rest = rejected.most_common()
    assert n > 0.8 * sum(rejected.values())


def test_seeds_vary_names_onsets_and_dialects(tmp_path: Path) -> None:
    seen = set()
    for seed in (0, 1, 2, 3):
        g = generate_fleet("fleet-cert-expiry", tmp_path / f"c{seed}", seed=seed, duration=DURATION)
        m = open_bundle(g.bundle_dir).manifest
        seen.add((tuple(m["services"]), g.truth["onset"], g.truth["root_cause_service"]))
    assert len(seen) == 4


def test_cloudwatch_shape_has_statistics_call_graph_and_remote_nodes(fleet: dict[str, Path]) -> None:
    for name in ("fleet-cw-latency", "fleet-cw-errors"):
        bundle = fleet[name]
        b = open_bundle(bundle)
        truth = _truth(bundle)
        assert not (bundle / "alerts").exists()  # the exported shape has no alerts: the window is placed from the onset
        start, end = b.window
        assert start + (end - start) / 2 <= to_utc(truth["onset"])
        assert any(s.endswith("_remote") for s in b.services)
        src = ReplaySource(bundle)
        stats = set(src.query_range(f'latency{{service="{truth["root_cause_service"]}"}}', start, end, step=600).get("statistic", []))
        assert {"Average", "p50", "p90", "p95", "p99"} <= stats
        metric = "latency" if truth["fault_kind"] == "slow_dependency" else "availability"
        stat = "p99" if metric == "latency" else "Average"
        df = _series(src, f'{metric}{{service="{truth["root_cause_service"]}",statistic="{stat}"}}', bundle)
        before, after = _before_after(df, truth["onset"])
        assert (after > 3 * before) if metric == "latency" else (after < before - 10)


def test_cli_lists_both_generators_and_writes_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from incidentbook.cli import main

    assert main(["scenario", "list", "--json"]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)["scenarios"]]
    assert "kv-cache-break" in names and "fleet-vendor-outage" in names and "fleet-cw-latency" in names
    assert main(["scenario", "generate", "fleet-vendor-outage", str(tmp_path / "v"), "--seed", "5", "--duration", "90min", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    truth = json.loads(Path(doc["truth"]).read_text())
    assert truth["root_cause_service"] not in open_bundle(doc["bundle"]).services  # the vendor has no series of its own
    assert doc["payloads"]
    assert main(["scenario", "generate", "fleet-nope", str(tmp_path / "n")]) == 2
    assert "no fleet scenario named 'fleet-nope'" in capsys.readouterr().err
