"""The ledger from timelines written through the store API: fates, rates, diffs, wrong hypotheses."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import nbformat
import pytest

from incidentbook.config import load_config
from incidentbook.errors import BadInput
from incidentbook.incidents import Store
from incidentbook.postmortems import close_incident
from incidentbook.proposals import PROPOSAL_MIME, proposal_bundle, proposal_source
from incidentbook.trust import build_ledger, notebook_ledger
from tests.trust.timelines import (
    hypothesis,
    investigate,
    open_incident,
    proposal,
    run,
    verdict,
    write_notebook,
)


@pytest.fixture
def store(home: Path) -> Any:
    with Store.from_config(load_config()) as s:
        yield s


def two_model_versions(store: Any, incidents_dir: Path) -> dict[str, Any]:
    """Incident A: model m1 ranks the wrong cause first; incident B: model m2 gets it right."""
    a = open_incident(store, "a", "checkout")
    p1 = proposal("P1", "H1", '%promql sum(rate(http_requests_total{service="checkout"}[5m]))')
    p2 = proposal("P2", "H1", "%changes --service checkout")
    p3 = proposal("P3", "H2", '%logql {service="payments"} |= "error"')
    p4 = proposal("P4", "H2", 'ib.act.rollout_undo("payments", namespace="shop")', kind="write")
    investigate(store, a, "claude", "m1", [hypothesis("H1", "checkout", "bad_deploy", [p1, p2]),
                                           hypothesis("H2", "payments", "config_change", [p3, p4])])
    run(store, a, p1)
    edited = proposal_source(p3.to_dict()) + ' |= "timeout"'
    run(store, a, p3, source=edited)
    write_notebook(incidents_dir / a / "notebook.ipynb", ["%investigate", proposal_source(p1.to_dict()), edited])
    verdict(store, a, "H1", "refuted", "no deploy in the window")
    close_incident(store, a, "bob", summary="payments config", root_cause="H2")

    b = open_incident(store, "b", "cart")
    q1 = proposal("P1", "H1", '%promql sum(rate(http_requests_total{service="cart"}[5m]))')
    q2 = proposal("P2", "H1", "%k8s events --service cart")
    investigate(store, b, "claude", "m2", [hypothesis("H1", "cart", "memory_leak", [q1, q2]),
                                           hypothesis("H2", "gateway", "slow_dependency", [], role="symptom")])
    run(store, b, q1)
    close_incident(store, b, "bob", root_cause="H1")
    return {"a": a, "b": b, "edited": edited}


def test_fates_and_rates_per_model_version(store: Any, home: Path) -> None:
    cfg = load_config()
    ids = two_model_versions(store, cfg.incidents_dir)
    led = build_ledger(store, incidents_dir=cfg.incidents_dir)
    fate = {(p.incident_id, p.proposal_id): p.fate for p in led.proposals}
    a, b = ids["a"], ids["b"]
    assert fate == {(a, "P1"): "verbatim", (a, "P2"): "refuted", (a, "P3"): "edited", (a, "P4"): "ignored",
                    (b, "P1"): "verbatim", (b, "P2"): "ignored"}
    rates = {r["model"]: r for r in led.rates()}
    assert set(rates) == {"m1", "m2"} and {r["investigator"] for r in rates.values()} == {"claude"}
    m1, m2 = rates["m1"], rates["m2"]
    # m1: 2 run of the 3 that were not moot (P2's hypothesis was refuted); its top hypothesis was wrong.
    assert (m1["verbatim"], m1["edited"], m1["ignored"], m1["refuted"]) == (1, 1, 1, 1)
    assert m1["acceptance_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert (m1["write_proposals"], m1["writes_run"]) == (1, 0)
    assert (m1["top_judged"], m1["top_was_root_cause"]) == (1, 0)
    assert (m1["confirmed"], m1["refuted_hypotheses"]) == (1, 1)
    assert m2["acceptance_rate"] == 0.5 and m2["top_hit_rate"] == 1.0
    # The edited proposal's diff goes from what was proposed to what the notebook ran.
    (ed,) = led.edited()
    assert ed.proposal_id == "P3" and ed.who == "bob" and ed.ran_source == ids["edited"]
    assert '+%logql {service="payments"} |= "error" |= "timeout"' in ed.diff
    assert '-%logql {service="payments"} |= "error"' in ed.diff
    wrong = {(h.incident_id, h.hypothesis_id) for h in led.wrong_hypotheses()}
    assert wrong == {(a, "H1")}
    assert led.totals()["proposals"] == 6


def test_open_incident_is_pending_and_since_filters(store: Any, home: Path) -> None:
    iid = open_incident(store, "c")
    p = proposal("P1", "H1", "%changes")
    investigate(store, iid, "rules", "", [hypothesis("H1", "checkout", "bad_deploy", [p])])
    led = build_ledger(store)
    assert [x.fate for x in led.proposals] == ["pending"]
    assert led.rates()[0]["acceptance_rate"] is None  # nothing decided yet
    assert led.investigations[0].top_was_root_cause is None  # no root cause known yet
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert build_ledger(store, since=tomorrow).proposals == []
    assert len(build_ledger(store, since=date.today().isoformat()).proposals) == 1
    with pytest.raises(BadInput, match="YYYY-MM-DD"):
        build_ledger(store, since="last tuesday")


def test_runbook_proposals_without_an_investigation(store: Any, home: Path) -> None:
    iid = open_incident(store, "d")
    p = proposal("P1", "", "ib.act.scale('cart', 3)", kind="write")
    p.hypothesis = None
    investigate(store, iid, "rules", "", [])
    from incidentbook.proposals import source_hash

    store.add_event(iid, "proposal", "proposed P1", data={**p.to_dict(), "source_hash": source_hash(proposal_source(p.to_dict()))})
    run(store, iid, p)
    (rec,) = build_ledger(store).proposals
    assert rec.investigator == "(runbook)" and rec.fate == "verbatim" and rec.outcome == "ok"


def test_archived_notebook_fates() -> None:
    """An archived incident notebook: proposals from the recorded output, fates from the cells."""
    props = [proposal(f"P{i}", "H1", f"%promql up{i}") for i in (1, 2, 3)]
    src = [proposal_source(p.to_dict()) for p in props]
    board = nbformat.v4.new_code_cell("%investigate", execution_count=1)
    board.outputs = [nbformat.v4.new_output("display_data", data={PROPOSAL_MIME: proposal_bundle(p.to_dict())[PROPOSAL_MIME]})
                     for p in props]
    cells = [board, nbformat.v4.new_code_cell(src[0], execution_count=2),
             nbformat.v4.new_code_cell(src[1] + " offset 5m", execution_count=3),
             nbformat.v4.new_code_cell(src[2])]  # materialised, never run
    nb = nbformat.v4.new_notebook(cells=cells)
    led = notebook_ledger("INC-20260101-0001", nb)
    assert [(p.proposal_id, p.fate) for p in led.proposals] == [("P1", "verbatim"), ("P2", "edited"), ("P3", "ignored")]
    assert "+%promql up2 offset 5m" in led.proposals[1].diff
