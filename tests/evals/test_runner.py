"""Eval runner: scoring rules, the JSON document, bad cases, and (slow) the whole suite."""

from __future__ import annotations

import json

import pytest

from incidentbook.agent.base import Hypothesis, Investigation
from incidentbook.errors import BadInput, BundleError
from incidentbook.evals import EvalReport, run_eval, score_case
from incidentbook.evals.__main__ import main
from incidentbook.evals.runner import CaseResult, context_from_bundle, expected_of, first_page
from incidentbook.scenarios import generate, get_scenario


def _inv(*pairs: tuple[str, str], role: str = "cause") -> Investigation:
    return Investigation("i", "x", [Hypothesis(f"h{i}", "", s, k, role=role) for i, (s, k) in enumerate(pairs)])


def test_rank_needs_both_service_and_kind():
    inv = _inv(("db", "slow_dependency"), ("cache", "bad_deploy"), ("cache", "cache_failure"))
    ranked, rank = score_case(inv, "cache:cache_failure", True)
    assert ranked[0] == "db:slow_dependency" and rank == 3
    assert score_case(_inv(("a", "b")), "cache:cache_failure", True)[1] is None


def test_non_incident_is_right_only_without_cause_hypotheses():
    assert score_case(_inv(("web", "planned_load"), role="symptom"), "web:planned_load", False) == ([], 1)
    assert score_case(_inv(("web", "cpu_throttling")), "web:planned_load", False)[1] is None


def test_report_totals_and_document_shape():
    cases = [CaseResult("a", "x:k", ["x:k"], 1, 0.1), CaseResult("b", "y:k", ["z:k", "q:k", "y:k"], 3, 0.2),
             CaseResult("c", "w:k", [], None, 0.3), CaseResult("d", "web:planned_load", ["web:abuse"], None, 0.1,
                                                               is_incident=False)]
    rep = EvalReport("rules", cases)
    assert (rep.ac1, rep.ac3) == (0.25, 0.5)
    assert rep.mean_rank == pytest.approx((1 + 3 + 6 + 6) / 4, abs=1e-3)
    assert rep.false_alarms == 1
    d = rep.to_dict()
    assert {"investigator", "cases", "ac1", "ac3", "mean_rank"} <= set(d)
    assert {"case", "expected", "ranked", "rank"} <= set(d["cases"][0])
    json.dumps(d)
    assert "| b | y:k | z:k | 3 |" in rep.table()


def test_case_without_ground_truth_or_manifest_is_refused(tmp_path):
    g = generate("bad-deploy", tmp_path / "b", seed=2, duration="1h")
    m = json.loads((g.bundle_dir / "manifest.json").read_text())
    m["ground_truth"] = None
    (g.bundle_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BadInput, match="ground_truth"):
        expected_of(g.bundle_dir)
    with pytest.raises(BundleError, match="not a bundle"):
        run_eval([tmp_path / "nope"])


def test_cli_runs_given_cases_and_prints_json(tmp_path, capsys):
    info = get_scenario("kv-cache-break")
    g = generate(info.name, tmp_path / "kv", seed=4, duration="2h")
    assert main([str(g.bundle_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["investigator"] == "rules" and len(doc["cases"]) == 1
    case = doc["cases"][0]
    assert case["expected"] == f"{g.ground_truth['root_cause_service']}:{info.fault_kind}"
    assert case["rank"] == 1 and doc["ac1"] == 1.0


def test_first_page_context_holds_only_the_page_that_opened_the_incident(tmp_path, capsys):
    g = generate("kv-cache-break", tmp_path / "kv", seed=0, duration="2h")
    page = first_page(g.bundle_dir)
    firing = [p for p in g.payloads if json.loads(p.read_text())["status"] == "firing"]
    assert page == firing[0]  # what `incidentbook demo` ingests
    paged = json.loads(page.read_text())["alerts"]
    ctx = context_from_bundle(g.bundle_dir)  # first-page is the default, like %investigate
    assert [a["labels"] for a in ctx.alerts] == [a["labels"] for a in paged]
    svc = paged[0]["labels"]["service"]
    assert ctx.services[0] == svc and sorted(ctx.services) == sorted(g.manifest["services"])
    storm = context_from_bundle(g.bundle_dir, mode="storm")
    names = {(a["labels"]["alertname"], a["labels"].get("service")) for a in storm.alerts}
    assert len(names) > len({(a["labels"]["alertname"], a["labels"].get("service")) for a in ctx.alerts})
    with pytest.raises(BadInput, match="first-page"):
        context_from_bundle(g.bundle_dir, mode="everything")
    assert main([str(g.bundle_dir), "--context", "storm", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["context"] == "storm" and doc["cases"][0]["rank"] == 1


@pytest.mark.slow
def test_scenario_suite_meets_the_accuracy_goals():
    rep = run_eval(None, "rules", seeds=(1, 2))
    assert len(rep.cases) >= 20
    assert rep.ac1 >= 0.8 and rep.ac3 >= 0.95, rep.table()
    assert rep.false_alarms == 0, rep.table()
