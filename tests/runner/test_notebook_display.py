"""Display helpers used inside runbooks: clean tables, escaped values, safe links."""

from __future__ import annotations

import re

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from incidentbook.notebook import alert_html, evidence_html, show_alert, show_evidence

HOSTILE = '<script>alert("x")</script>'


def card(**overrides: object) -> str:
    args: dict = dict(
        alertname="HighErrorRate", service="checkout", severity="critical",
        labels={"alertname": "HighErrorRate", "pod": "checkout-7d9f"},
        annotations={"summary": "5xx above 5%", "description": "since the deploy",
                     "runbook_url": "https://wiki.example/checkout", "team": "payments"},
        starts_at="2026-11-23T10:00:00Z", generator_url="http://prom:9090/graph",
        incident_id="INC-20261123-0001")
    args.update(overrides)
    return alert_html(**args)


def cells_of(html: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", html)


def test_alert_card_has_facts_tables_and_links() -> None:
    html = card()
    assert "INC-20261123-0001" in html and "2026-11-23 10:00:00 UTC" in html
    assert "5xx above 5%" in html and "since the deploy" in html
    # Labels and the remaining annotations are table rows, not a dict dump.
    cells = [re.sub(r"<[^>]+>", "", c) for c in cells_of(html)]
    assert ["alertname", "HighErrorRate", "pod", "checkout-7d9f", "team", "payments"] == cells
    assert "{'" not in html
    assert 'href="http://prom:9090/graph"' in html
    assert 'href="https://wiki.example/checkout"' in html


def test_every_value_is_escaped() -> None:
    html = card(alertname=HOSTILE, service=HOSTILE,
                labels={HOSTILE: HOSTILE}, annotations={"summary": HOSTILE, "x": HOSTILE},
                incident_id=HOSTILE, severity=HOSTILE)
    assert "<script>" not in html
    assert html.count("&lt;script&gt;") >= 7


def test_only_http_links_are_clickable() -> None:
    html = card(generator_url="javascript:alert(1)",
                annotations={"runbook_url": "data:text/html,<b>x</b>"})
    assert "href=" not in html
    assert "javascript:alert(1)" in html  # still shown, as text


def test_show_alert_displays_html_and_plain_text_in_a_real_shell() -> None:
    InteractiveShell.instance()
    with capture_output() as captured:
        show_alert("DiskFull", "db", "warning", {"instance": "db-1"}, {}, "2026-11-23T10:00:00Z")
    [output] = captured.outputs
    assert "DiskFull" in output.data["text/html"] and "db-1" in output.data["text/html"]
    assert output.data["text/plain"].startswith("[warning] DiskFull on db")


def test_evidence_without_sources_says_so() -> None:
    html = evidence_html(sources={}, bundle="", service="checkout")
    assert "No telemetry source configured" in html
    html = evidence_html(sources={"prometheus": {"url": "http://prom:9090"}}, bundle="")
    assert "No telemetry source configured" not in html and "http://prom:9090" in html


@pytest.mark.parametrize("sources", [None, {}, {"prometheus": "not a mapping"}, {"x": None}])
def test_show_evidence_never_raises(sources: object) -> None:
    InteractiveShell.instance()
    with capture_output() as captured:
        show_evidence(sources=sources, bundle="", window_start="garbage", window_end=None)  # type: ignore[arg-type]
    assert captured.outputs
