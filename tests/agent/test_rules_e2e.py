"""End to end, one scenario per fault kind: generate a bundle, investigate it, check the top answer."""

from __future__ import annotations

import pytest

from incidentbook.agent.base import Investigation, investigators
from incidentbook.evals.runner import context_from_bundle, expected_of, score_case
from incidentbook.scenarios import generate, list_scenarios

SEED = 11  # not one of the eval's default seeds
ONE_PER_KIND = list({s.fault_kind: s for s in reversed(list_scenarios())}.values())


def _investigate(tmp_path, name: str) -> tuple[Investigation, str, bool]:
    g = generate(name, tmp_path / name, seed=SEED, duration="2h")
    inv = investigators.get("rules")().investigate(context_from_bundle(g.bundle_dir))
    expected, is_incident = expected_of(g.bundle_dir)
    return inv, expected, is_incident


@pytest.mark.parametrize("scenario", ONE_PER_KIND, ids=[s.fault_kind for s in ONE_PER_KIND])
def test_top_hypothesis_names_root_service_and_fault_kind(tmp_path, scenario):
    inv, expected, is_incident = _investigate(tmp_path, scenario.name)
    ranked, rank = score_case(inv, expected, is_incident)
    if not is_incident:
        assert ranked == [], f"planned load opened cause hypotheses: {ranked}"
        assert any("planned" in n for n in inv.notes)
        return
    assert rank == 1, f"expected {expected}, got {ranked}; notes: {inv.notes}"
    top = inv.hypotheses[0]
    assert top.role == "cause" and top.position == "root"
    assert 0.0 <= top.confidence <= 1.0
    assert top.evidence_for and any(e.query for e in top.evidence_for)
    assert 1 <= len(top.proposals) <= 3 and all(p.kind == "read" for p in top.proposals)
    assert all(p.code.startswith(("%promql", "# recent changes")) for p in top.proposals)
    assert top.signals and any(s.role == "cause" and s.onset for s in top.signals)
    assert inv.duration_s < 10
