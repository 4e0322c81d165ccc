"""The signal catalogue on systems whose services speak foreign dialects.

Systems come from tests/support/dialects.py: each service's series are written as its exporter
would expose them (Micrometer, OpenTelemetry, Istio, gRPC, Envoy, the FastAPI instrumentator,
CloudWatch-style per-node statistics) and read back through the replay PromQL engine.
"""

from __future__ import annotations

import promql_parser
import pytest

from incidentbook.agent.checks.common import Probe
from incidentbook.telemetry.signals import (
    Catalogue,
    MappingError,
    coverage_message,
    discover,
    escape,
    render,
)
from tests.support.dialects import Svc, build, flat, step

DIALECTS = {"orders": "prometheus", "authn": "micrometer", "search": "otel", "ledger": "istio",
            "rpc": "grpc", "gateway": "envoy", "embed": "fastapi", "edge": "cloudwatch"}


@pytest.fixture(scope="module")
def mixed():
    svcs = {name: Svc(d) for name, d in DIALECTS.items()}
    svcs["router"] = Svc("none")  # exports nothing the catalogue can read
    topo = {"gateway": ["authn", "orders", "search"], "orders": ["ledger", "rpc"]}
    return build(svcs, topo)


def test_each_service_is_read_in_its_own_dialect(mixed):
    disc = Probe(mixed).discovery()
    for svc, dialect in DIALECTS.items():
        ratio = disc.resolved(svc, "error_ratio")
        assert ratio is not None and ratio.dialect == dialect, (svc, ratio)
        assert disc.resolved(svc, "latency_p95") is not None, svc
    assert disc.resolved("authn", "error_ratio").metrics == ("http_server_requests_seconds_count",)
    assert disc.resolved("authn", "latency_p95").template.note == "mean, no histogram"


def test_every_dialect_gives_numbers_in_the_catalogue_units(mixed):
    """Requests per second, an error ratio in 0..1 and latency in seconds, whatever the exporter."""
    p = Probe(mixed)
    rate, ratio, lat = p.signal("requests"), p.signal("error_ratio"), p.signal("latency_p95", agg="max")
    for svc in DIALECTS:
        assert 10 < rate[svc].median() < 30 * 60 + 1, (svc, rate[svc].median())
        assert 0 <= ratio[svc].median() < 0.02, (svc, ratio[svc].median())
        assert 0.01 < lat[svc].median() < 0.3, (svc, lat[svc].median())


def test_a_service_with_no_readable_signal_is_named_with_the_fix(mixed):
    cov = Probe(mixed).discovery().coverage()
    assert cov["no_red"] == ["router"] and cov["readable"] == len(DIALECTS)
    assert coverage_message(cov) == ("no readable error or latency signal for: router - add a mapping "
                                     "(docs/signals.md)")


def test_queries_are_grouped_per_dialect_not_per_service(mixed):
    disc = Probe(mixed).discovery()
    queries = disc.query_all("error_ratio")
    assert len(queries) == len(set(DIALECTS.values()))
    assert all(len(svcs) >= 1 for _, _, svcs in queries)


def test_one_series_listing_discovers_everything(mixed):
    """Discovery is one instant query, not a query per guessed metric."""
    calls = []
    tel = mixed.telemetry
    real = tel.safe_query

    def counting(q, *a, **kw):
        calls.append(q)
        return real(q, *a, **kw)

    tel.safe_query = counting
    try:
        disc = discover(tel, list(DIALECTS), mixed.window_start, mixed.window_end)
    finally:
        del tel.safe_query
    assert len(calls) == 1 and disc.listed


@pytest.mark.parametrize("name", ['we"ird', "back\\slash", "new\nline", "ünï-cødé", "tab\there", "{x}=~y"])
def test_odd_service_names_make_valid_promql_that_selects_them(name):
    ctx = build({name: Svc("prometheus"), "plain": Svc("micrometer")})
    p = Probe(ctx)
    r = p.discovery().resolved(name, "error_ratio")
    assert r is not None
    promql_parser.parse(r.query())
    assert name in p.signal("requests") and "plain" in p.signal("requests")
    series = ctx.telemetry.query_range(r.query(), ctx.window_start, ctx.window_end, 60)
    assert len(series) and set(series["service"]) == {name}


def test_escape_covers_quotes_backslashes_and_control_characters():
    assert escape('a"b\\c\nd\re\tf') == 'a\\"b\\\\c\\nd\\re\\tf'
    promql_parser.parse(render('sum by ($by) (rate(x_total{$sel}[2m]))', f'service="{escape(chr(10) + chr(34))}"',
                               "service", []))


# -- user mappings ------------------------------------------------------------------------------

GOOD = {"match": "legacy_tx_total", "service_label": "app",
        "requests": "sum by ($by) (rate(legacy_tx_total{$sel}[2m]))",
        "errors": 'sum by ($by) (rate(legacy_tx_total{$sel, result="fail"}[2m]))',
        "error_ratio": 'sum by ($by) (rate(legacy_tx_total{$sel, result="fail"}[2m])) / '
                       'sum by ($by) (rate(legacy_tx_total{$sel}[2m]))'}


def _legacy(w):
    import numpy as np

    m = w.m
    fail = np.where(m >= 70, 6.0, 0.05)
    w.counter("legacy_tx_total", {"app": "mainframe", "result": "ok"}, np.full(m.shape, 20.0))
    w.counter("legacy_tx_total", {"app": "mainframe", "result": "fail"}, fail)


def test_a_user_mapping_reads_metrics_no_dialect_knows():
    ctx = build({"mainframe": Svc("none"), "web": Svc("prometheus")}, {"web": ["mainframe"]}, extra=_legacy)
    ctx.catalogue = Catalogue({"legacy": GOOD})
    p = Probe(ctx)
    r = p.discovery().resolved("mainframe", "error_ratio")
    assert r is not None and r.dialect == "legacy" and r.label == "app"
    assert p.signal("error_ratio")["mainframe"].iloc[-1] > 0.1
    assert Probe(build({"mainframe": Svc("none")}, extra=_legacy)).discovery().coverage()["no_red"] == ["mainframe"]


@pytest.mark.parametrize(("spec", "words"), [
    ({**GOOD, "erors": "x"}, ["unknown signal 'erors'", "errors"]),
    ({**GOOD, "requests": "sum(rate(legacy_tx_total[2m]))"}, ["requests", "$sel"]),
    ({**GOOD, "requests": "rate(legacy_tx_total{$sel}[2m])"}, ["requests", "$by"]),
    ({**GOOD, "requests": "sum by ($by) (rate(legacy_tx_total{$sel}[2m])"}, ["requests", "not valid PromQL"]),
    ({**GOOD, "match": "legacy_(tx"}, ["match", "regular expression"]),
    ({k: v for k, v in GOOD.items() if k != "match"}, ["match", "services"]),
    ({**GOOD, "requests": "sum by ($by) (x{$sel, $evil})"}, ["$evil"]),
    ({**GOOD, "service_label": "bad label"}, ["service_label"]),
])
def test_invalid_mappings_name_the_field_and_the_fix(spec, words):
    with pytest.raises(MappingError) as e:
        Catalogue({"legacy": spec})
    msg = str(e.value)
    assert msg.startswith("[signals.legacy]") and "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_mappings_come_before_built_in_dialects():
    ctx = build({"orders": Svc("prometheus")})
    mapped = {"services": ["orders"], "requests": "sum by ($by) (rate(http_requests_total{$sel}[5m]))"}
    ctx.catalogue = Catalogue({"mine": mapped})
    d = Probe(ctx).discovery()
    assert d.resolved("orders", "requests").dialect == "mine"
    assert d.resolved("orders", "errors").dialect == "prometheus"


def test_flat_helper_is_flat():
    import numpy as np

    assert set(flat(3)(np.arange(4))) == {3.0}
    assert list(step(1, 2, 2)(np.arange(4))) == [1.0, 1.0, 2.0, 2.0]


def test_runbook_panels_read_the_signal_in_the_service_dialect(tmp_path, capsys):
    """A runbook's `5xx error ratio` panel charts Micrometer metrics where that is what exists."""
    from incidentbook.notebook import Panel, show_panels

    ctx = build({"authn": Svc("micrometer", err=step(0.002, 0.4, 70)), "router": Svc("none")},
                bundle_dir=tmp_path / "b")
    panels = [Panel("5xx error ratio", 'sum(rate(http_requests_total{{service="{service}",code=~"5.."}}[5m]))',
                    "ratio", signal="error_ratio"),
              Panel("Pool in use", unit="connections", signal="pool_in_use")]
    scope = {"bundle": str(tmp_path / "b"), "window_start": ctx.window_start, "window_end": ctx.window_end,
             "starts_at": ctx.alerts[0]["starts_at"]}
    out = show_panels(panels, service="authn", **scope)
    ratio = out["5xx error ratio"]
    assert ratio["status"] == "ok" and "http_server_requests_seconds_count" in ratio["query"]
    assert ratio["after"] > 0.3 > 0.01 > ratio["before"]
    assert out["Pool in use"]["status"] == "no_signal"
    assert "no readable pool_in_use signal for authn - add a mapping (docs/signals.md)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown signal 'eror_ratio'"):
        Panel("x", signal="eror_ratio")


def test_cluster_and_url_style_values_map_to_known_services():
    from incidentbook.telemetry.signals import map_service
    from incidentbook.telemetry.topology import host_of

    known = {"generate-api", "checkout", "pricing_remote"}
    assert map_service("genai_generate-api_8080", known) == "generate-api"
    assert map_service("outbound|8080||checkout.shop.svc.cluster.local", known) == "checkout"
    assert map_service("https://checkout.shop:8443/healthz", known) == "checkout"
    assert map_service("checkout-7d9f8-x2x", known) == "checkout"
    assert map_service("pricing_remote", known) == "pricing_remote"
    assert map_service("api.vendor.example", known) is None
    assert host_of("https://api.vendor.example:443/v1/health") == "api.vendor.example"


def _service_graph(w):
    import numpy as np

    w.counter("traces_service_graph_request_total", {"client": "web", "server": "search", "job": "tempo"},
              np.full(w.m.shape, 5.0))


def test_topology_is_read_from_mesh_and_service_graph_metrics():
    ctx = build({"web": Svc("prometheus"), "ledger": Svc("istio"), "search": Svc("otel")},
                {"web": ["ledger"]}, extra=_service_graph)
    ctx.topology = {}  # nothing configured: the metrics are all there is
    topo = Probe(ctx).topology()
    assert sorted(topo["web"]) == ["ledger", "search"]
