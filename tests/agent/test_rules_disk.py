"""The free-space check: a volume falling towards full is found, named and timed; healthy ones are not."""

from __future__ import annotations

import pandas as pd
import pytest

from incidentbook.agent.base import investigators
from incidentbook.agent.checks.common import Probe, baseline_end
from incidentbook.agent.checks.disk import check_disks
from incidentbook.evals.runner import context_from_bundle
from incidentbook.scenarios import generate, generate_system


@pytest.fixture(scope="module")
def disk_case(tmp_path_factory):
    return generate("disk-filling-up", tmp_path_factory.mktemp("disk") / "b", seed=7, duration="2h")


def test_disk_check_finds_the_filling_volume_and_when_it_started(disk_case):
    ctx = context_from_bundle(disk_case.bundle_dir)
    found = check_disks(Probe(ctx), baseline_end(ctx))
    assert [(f.service, f.kind) for f in found] == [("postgres", "disk_full")]
    f = found[0]
    v = f.evidence.value
    assert v["baseline"] > 0.3 and v["level"] < 0.05 and v["per_hour"] < -0.1, f.evidence.summary
    assert "data-postgres-0" in f.evidence.summary and "kubelet_volume_stats_available_bytes" in f.evidence.query
    onset = disk_case.ground_truth["onset"]
    assert abs((f.onset - pd.Timestamp(onset)).total_seconds()) < 10 * 60


def test_rules_rank_the_full_disk_first_and_cite_the_change_that_filled_it(disk_case):
    inv = investigators.get("rules")().investigate(context_from_bundle(disk_case.bundle_dir))
    top = inv.hypotheses[0]
    assert (top.service, top.fault_kind, top.role) == ("postgres", "disk_full", "cause")
    assert any("archive_command" in e.summary for e in top.evidence_for)
    assert "kubelet_volume_stats" in top.proposals[0].code


def test_disk_check_stays_quiet_on_healthy_volumes(tmp_path):
    g = generate("kv-cache-break", tmp_path / "kv", seed=7, duration="2h")
    ctx = context_from_bundle(g.bundle_dir)
    assert check_disks(Probe(ctx), baseline_end(ctx)) == []


def test_disk_check_works_on_other_service_names(tmp_path):
    g = generate_system(tmp_path / "s", seed=905, fault_kind="disk_full", duration="2h")
    inv = investigators.get("rules")().investigate(context_from_bundle(g.bundle_dir))
    gt = g.ground_truth
    assert (inv.hypotheses[0].service, inv.hypotheses[0].fault_kind) == (gt["root_cause_service"], "disk_full")
