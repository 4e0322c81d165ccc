"""The rules investigator on systems it was not shaped on: foreign dialects, discovered topology.

Systems come from tests/support/dialects.py (series written as each exporter exposes them, read
back through the replay PromQL engine); no scenario module, no ground truth is read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from incidentbook.agent.checks.common import Probe
from incidentbook.agent.checks.logs import _client_concentration
from incidentbook.agent.rules import RulesInvestigator
from incidentbook.telemetry.bundle import iso
from tests.support.dialects import START, Svc, build, flat, ramp, step


def _top(inv):
    causes = [h for h in inv.hypotheses if h.role == "cause"]
    return (causes[0].service, causes[0].fault_kind) if causes else None


def test_a_bad_deploy_in_a_micrometer_service_behind_an_envoy_gateway(tmp_path):
    """Before the catalogue auth's Micrometer metrics were invisible and the gateway was blamed."""
    svcs = {"gateway": Svc("envoy", err=step(0.002, 0.3, 70)),
            "authn": Svc("micrometer", err=step(0.002, 0.6, 70)),
            "orders": Svc("prometheus"), "search": Svc("otel")}
    deploy = {"timestamp": iso(START + pd.Timedelta(minutes=66)), "service": "authn", "kind": "deploy",
              "description": "authn v2.4.1 rollout", "author": "ci", "details": {}}
    ctx = build(svcs, {"gateway": ["authn", "orders", "search"]}, bundle_dir=tmp_path / "b", changes=[deploy],
                alerted="gateway")
    inv = RulesInvestigator().investigate(ctx)
    assert _top(inv) == ("authn", "bad_deploy"), [(h.service, h.fault_kind, h.role) for h in inv.hypotheses]
    gw = [h for h in inv.hypotheses if h.service == "gateway"]
    assert all(h.role == "symptom" and h.position == "upstream" for h in gw), gw
    assert "http_server_requests_seconds_count" in inv.hypotheses[0].proposals[0].code


def test_hikari_and_go_sql_pools_at_their_maximum_are_pool_exhaustion():
    for kind, dialect in (("hikari", "micrometer"), ("go_sql", "prometheus")):
        svcs = {"api": Svc("prometheus", p95=step(0.08, 0.6, 70), err=step(0.002, 0.05, 72)),
                "billing": Svc(dialect, p95=step(0.05, 1.5, 70), err=step(0.002, 0.2, 70),
                               extras={"pool": (kind, step(8, 20, 69), 20)})}
        inv = RulesInvestigator().investigate(build(svcs, {"api": ["billing"]}))
        assert _top(inv) == ("billing", "db_pool_exhaustion"), (kind, [(h.service, h.fault_kind)
                                                                       for h in inv.hypotheses])


def test_a_disk_that_filled_through_the_whole_baseline_is_found_at_zero_free():
    """No onset inside the window: the fill is judged by level and time to exhaustion."""
    svcs = {"api": Svc("prometheus", err=step(0.002, 0.2, 100)),
            "store": Svc("prometheus", err=step(0.002, 0.5, 100), extras={"disk": ramp(0.5, -0.005, 0.0)})}
    ctx = build(svcs, {"api": ["store"]}, onset_min=100)
    inv = RulesInvestigator().investigate(ctx)
    assert _top(inv) == ("store", "disk_full"), [(h.service, h.fault_kind) for h in inv.hypotheses]
    ev = next(e for e in inv.hypotheses[0].evidence_for if "free space" in e.summary)
    assert ev.value["level"] <= 0.01 and ev.value["trend_before_window"] is True
    assert "node_filesystem_avail_bytes" in ev.query


def test_traffic_collapse_behind_a_broken_route_is_not_cpu_throttling():
    """The idle service behind a broken route burns its idle CPU on almost no requests."""
    svcs = {"edge": Svc("envoy", err=step(0.002, 0.45, 70)),
            "catalog": Svc("prometheus", rps=step(30, 0.3, 70), extras={"cpu": (flat(0.3), flat(0.01))})}
    inv = RulesInvestigator().investigate(build(svcs, {"edge": ["catalog"]}, alerted="edge"))
    assert not any(h.fault_kind == "cpu_throttling" for h in inv.hypotheses), inv.hypotheses
    assert _top(inv)[0] == "edge"


def _vendor(w):
    """payments calls a third-party API: OTel client metrics and a blackbox probe name it."""
    m = w.m
    rps = np.full(m.shape, 15.0)
    bad = np.where(m >= 70, 0.7, 0.002)
    for code, v in (("200", rps * (1 - bad)), ("503", rps * bad)):
        w.histogram("http_client_request_duration_seconds",
                    {"service": "payments", "server_address": "api.vendor.example", "http_response_status_code": code},
                    v, np.where(m >= 70, 2.5, 0.2))
    w.gauge("probe_success", {"job": "blackbox", "instance": "https://api.vendor.example/health"},
            np.where(m >= 70, 0.0, 1.0))


def test_a_third_party_outage_becomes_its_own_node_named_by_its_callers_metrics():
    svcs = {"checkout": Svc("prometheus", err=step(0.002, 0.3, 71)),
            "payments": Svc("otel", err=step(0.002, 0.5, 70), p95=step(0.1, 2.6, 70))}
    ctx = build(svcs, {"checkout": ["payments"]}, extra=_vendor, alerted="checkout")
    p = Probe(ctx)
    assert p.discovery().resolved("api.vendor.example", "error_ratio").dialect == "client"
    assert "api.vendor.example" in p.topology()["payments"]
    inv = RulesInvestigator().investigate(ctx)
    assert _top(inv)[0] == "api.vendor.example", [(h.service, h.fault_kind, h.role) for h in inv.hypotheses]
    assert any("no series of their own" in n and "api.vendor.example" in n for n in inv.notes)


def test_the_client_side_node_of_a_call_is_not_the_root_when_the_server_side_is_anomalous():
    """CloudWatch/X-Ray style: `pricing_remote` is the caller's view of `pricing`."""
    svcs = {"frontend": Svc("cloudwatch", p95=step(0.1, 0.9, 71)),
            "pricing_remote": Svc("cloudwatch", p95=step(0.08, 0.9, 70)),
            "pricing": Svc("cloudwatch", p95=step(0.05, 0.85, 70), err=step(0.001, 0.2, 70))}
    inv = RulesInvestigator().investigate(build(svcs, {"frontend": ["pricing_remote"]}, alerted="frontend"))
    assert _top(inv)[0] == "pricing", [(h.service, h.fault_kind, h.role) for h in inv.hypotheses]
    assert all(h.role == "symptom" for h in inv.hypotheses if h.service == "pricing_remote")


def test_a_board_with_nothing_readable_says_so_per_service():
    inv = RulesInvestigator().investigate(build({"a": Svc("none"), "b": Svc("none")}))
    assert inv.hypotheses == []
    assert "no readable error or latency signal for: a, b - add a mapping (docs/signals.md)" in inv.notes
    assert inv.coverage["no_red"] == ["a", "b"]
    assert any("0 of 2 services had a readable error or latency signal" in n for n in inv.notes)


def _lines(n, key, hot, hot_share, status_hot="401", seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        if rng.random() < hot_share:
            out.append(f'{{"level":"warn","status":{status_hot},"path":"/login","{key}":"{hot}","msg":"login failed"}}')
        else:
            who = f"acct-{rng.integers(0, 400)}"
            st = 500 if rng.random() < 0.1 else 200
            out.append(f'{{"level":"info","status":{st},"path":"/login","{key}":"{who}","msg":"done"}}')
    return out


def _frame(lines):
    ts = pd.date_range(START, periods=len(lines), freq="s", tz="UTC")
    return pd.DataFrame({"line": lines, "_ts": ts})


def test_errors_owned_by_one_value_of_any_log_field_are_abuse():
    """`account_id` is in no list of client fields: the field is found from the data."""
    inc = _frame(_lines(600, "account_id", "acct-666", 0.3))
    found = _client_concentration("authn", _frame(_lines(100, "account_id", "x", 0.0)), inc, "{}")
    assert [(f.kind, f.evidence.value["key"]) for f in found] == [("abuse", "account_id")]
    assert found[0].evidence.value["top"][0][0] == "acct-666"


def test_errors_spread_over_everyone_or_on_one_route_are_not_abuse():
    spread = _frame(_lines(600, "account_id", "acct-1", 0.0))
    assert _client_concentration("authn", spread, spread, "{}") == []
    rng = np.random.default_rng(3)
    route = _frame([f'{{"level":"error","status":500,"route":"/v1/pay","account_id":"a{rng.integers(0, 300)}",'
                    f'"region":"eu-1"}}' for _ in range(300)])
    assert _client_concentration("pay", route, route, "{}") == []


def test_errors_concentrated_on_a_statement_or_message_are_not_abuse():
    """A feature flag that sends one bad query makes its SQL the top 'value': that is the fault, not a client."""
    rng = np.random.default_rng(5)
    lines = [f'{{"level":"error","status":500,"sql":"SELECT * FROM recs WHERE id = $1 LIMIT {rng.integers(0, 2)}",'
             f'"user":"u{rng.integers(0, 500)}"}}' for _ in range(400)]
    lines += [f'{{"level":"info","status":200,"sql":"SELECT name FROM products WHERE id = {i}","user":"u{i}"}}'
              for i in range(400)]
    frame = _frame(lines)
    assert _client_concentration("catalog", frame, frame, "{}") == []


def test_the_simple_investigator_reads_the_alerted_service_in_its_dialect():
    from incidentbook.agent.simple import SimpleInvestigator

    ctx = build({"authn": Svc("micrometer", err=step(0.002, 0.5, 70)), "router": Svc("none")}, duration_min=150,
                onset_min=90)
    ctx.window_start = iso(START + pd.Timedelta(minutes=90))  # simple compares with the hour before
    ctx.services = ["authn", "router"]
    inv = SimpleInvestigator().investigate(ctx)
    top = inv.hypotheses[0]
    assert (top.service, top.role) == ("authn", "cause")
    assert "http_server_requests_seconds_count" in top.evidence_for[0].query
    assert "no readable error or latency signal for: router - add a mapping (docs/signals.md)" in inv.notes
