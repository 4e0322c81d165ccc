"""Each catalogue runbook, run with papermill on a scenario bundle, shows that scenario's fault.

Every scenario is generated once per module (1 hour, seed 0) and shared by the runbooks that
need it. Assertions read the numbers the evidence panels record (their before/since summary),
the tables they show and the proposals they leave, as an on-call engineer would read them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest

from incidentbook.notebook import EVIDENCE_MIME
from incidentbook.runner import build_parameters, load_runbooks, run_runbook
from incidentbook.scenarios import generate

DURATION = "1h"


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("scenarios")
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = generate(name, root / name, seed=0, duration=DURATION)
        return cache[name]

    return get


def _alert(gen: Any, alertname: str, service: str | None = None) -> dict[str, Any]:
    for a in gen.alerts:
        if a.labels["alertname"] == alertname and (service is None or a.labels.get("service") == service):
            return {"labels": a.labels, "annotations": a.annotations, "fired_at": a.fired_at}
    raise AssertionError(f"{gen.name} raised no {alertname} alert")


def run(tmp_path: Path, gen: Any, alertname: str, service: str | None = None,
        labels: dict[str, str] | None = None) -> tuple[str, nbformat.NotebookNode]:
    """Select the runbook for the scenario's alert like the intake does, run it; (name, notebook)."""
    if labels is None:
        alert = _alert(gen, alertname, service)
        labels, annotations = alert["labels"], alert["annotations"]
        starts_at = pd.Timestamp(alert["fired_at"], unit="s", tz="UTC").isoformat()
    else:  # an alert the short scenario does not raise itself: start it at the fault's onset
        annotations = {"summary": f"{alertname} on {labels['service']}"}
        starts_at = gen.ground_truth["onset"]
    from incidentbook.runner import select_runbook

    runbooks = load_runbooks(workspace_dir=tmp_path / "none")
    rb = select_runbook(labels, runbooks)
    window = gen.manifest["window"]
    params = build_parameters(incident_id="INC-TEST-0001", alertname=alertname, labels=labels,
                              annotations=annotations, starts_at=starts_at,
                              window_start=window["start"], window_end=window["end"],
                              bundle=gen.bundle_dir)
    out = tmp_path / "notebook.ipynb"
    result = run_runbook(rb, params, out, tmp_path, cell_timeout_s=120)
    assert result.ok, result.message
    return rb.name, nbformat.read(str(out), as_version=4)


def evidence(nb: nbformat.NotebookNode) -> dict[str, dict[str, Any]]:
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            payload = out.get("data", {}).get(EVIDENCE_MIME)
            if payload:
                found[payload["title"]] = payload
    return found


def proposals(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [dict(c.metadata["incidentbook"]["proposal"], source=c.source) for c in nb.cells
            if c.cell_type == "code" and "proposal" in c.metadata.get("incidentbook", {})]


def text(nb: nbformat.NotebookNode) -> str:
    return "".join(str(v) for c in nb.cells for o in c.get("outputs", [])
                   for v in [o.get("text", ""), *o.get("data", {}).values()])


def test_cache_hit_ratio_low_shows_the_collapse_and_the_db_symptom(tmp_path: Path, scenarios: Any) -> None:
    name, nb = run(tmp_path, scenarios("kv-cache-break"), "CacheHitRatioLow")
    assert name == "cache_hit_ratio_low"
    ev = evidence(nb)
    hit = ev["Hit ratio"]
    assert hit["before"] > 0.85 and hit["after"] < 0.6, hit
    assert ev["Misses per second"]["after"] > 3 * ev["Misses per second"]["before"]
    db = ev["Database transactions per second"]
    assert db["after"] > 1.3 * db["before"], db
    maxmem = ev["maxmemory"]
    assert maxmem["worst"] < 0.5 * maxmem["before"]
    writes = [p for p in proposals(nb) if p["kind"] == "write"]
    assert writes and "kv-cache" in writes[0]["source"]


def test_high_error_rate_points_at_the_bad_deploy(tmp_path: Path, scenarios: Any) -> None:
    gen = scenarios("bad-deploy")
    name, nb = run(tmp_path, gen, "HighErrorRate", "catalog")
    assert name == "high_error_rate"
    err = evidence(nb)["5xx error ratio"]
    assert err["before"] < 0.02 and err["after"] > 0.05, err
    rollback = [p for p in proposals(nb) if p["kind"] == "write"]
    assert rollback and "rollout_undo('catalog'" in rollback[0]["source"]


def test_oom_killed_shows_memory_at_the_limit_and_restarts(tmp_path: Path, scenarios: Any) -> None:
    name, nb = run(tmp_path, scenarios("memory-leak"), "KubePodOOMKilled")
    assert name == "oom_killed"
    ev = evidence(nb)
    mem = ev["Memory working set / limit (per pod)"]
    assert mem["before"] < 0.8 and mem["worst"] > 0.95, mem
    assert ev["Container restarts (per pod)"]["worst"] > ev["Container restarts (per pod)"]["before"]
    assert "OOMKilled" in text(nb)
    assert any("rollout_undo('cart'" in p["source"] for p in proposals(nb))


def test_pod_crash_looping_shows_restarts_and_the_oom_reason(tmp_path: Path, scenarios: Any) -> None:
    name, nb = run(tmp_path, scenarios("memory-leak"), "PodCrashLooping")
    assert name == "pod_crash_looping"
    ev = evidence(nb)
    assert ev["Container restarts (per pod)"]["worst"] >= 2
    assert ev["Last termination was OOMKilled"]["worst"] == 1
    assert any("container_memory_working_set_bytes" in p["source"] for p in proposals(nb))


def test_cpu_throttling_high_shows_cost_per_request_not_traffic(tmp_path: Path, scenarios: Any) -> None:
    name, nb = run(tmp_path, scenarios("noisy-neighbour"), "CPUThrottlingHigh")
    assert name == "cpu_throttling_high"
    ev = evidence(nb)
    thr = ev["Throttled share of CFS periods (per pod)"]
    assert thr["before"] < 0.1 and thr["after"] > 0.25, thr
    cost = ev["CPU seconds per request"]
    assert cost["after"] > 2 * cost["before"]
    rps = ev["Requests per second"]
    assert rps["after"] < 1.3 * rps["before"]
    assert "costs more" in json.dumps(proposals(nb))


def test_db_connections_saturated_shows_the_full_pool(tmp_path: Path, scenarios: Any) -> None:
    name, nb = run(tmp_path, scenarios("db-pool-exhaustion"), "DBConnectionsSaturated")
    assert name == "db_connections_saturated"
    pool = evidence(nb)["Pool connections in use / max"]
    assert pool["before"] < 0.6 and pool["worst"] >= 0.9, pool
    assert any("restart('inventory'" in p["source"] for p in proposals(nb))


def test_high_latency_shows_the_slow_dependency(tmp_path: Path, scenarios: Any) -> None:
    name, nb = run(tmp_path, scenarios("slow-dependency"), "HighLatency", "inventory")
    assert name == "high_latency"
    p99 = evidence(nb)["p50 / p99 latency"]
    assert p99["after"] > 1.0 and p99["after"] > 5 * p99["before"], p99


def test_certificate_expiring_soon_shows_days_left(tmp_path: Path, scenarios: Any) -> None:
    name, nb = run(tmp_path, scenarios("cert-expiry"), "CertificateExpiringSoon")
    assert name == "certificate_expiring_soon"
    ev = evidence(nb)
    days = {v["service"]: v["value"] for v in ev["Days until the certificate expires"]["values"]}
    assert days["payments"] < 1 and min(v for k, v in days.items() if k != "payments") > 7, days
    assert ev["Probe success"]["worst"] == 0


def test_traffic_anomaly_checks_the_planned_events_first(tmp_path: Path, scenarios: Any) -> None:
    gen = scenarios("marketing-launch")
    labels = {"alertname": "TrafficAnomaly", "service": "frontend", "severity": "info", "namespace": "shop"}
    name, nb = run(tmp_path, gen, "TrafficAnomaly", labels=labels)
    assert name == "traffic_anomaly"
    body = text(nb)
    assert "Planned events overlapping the window" in body
    rps = evidence(nb)["Requests per second"]
    assert rps["worst"] > 1.3 * rps["before"], rps
    assert any(p["source"].lstrip().splitlines()[-1].startswith("%note") for p in proposals(nb))


def test_disk_filling_up_shows_the_volume_filling_and_hours_left(tmp_path: Path, scenarios: Any) -> None:
    name, nb = run(tmp_path, scenarios("disk-filling-up"), "DiskFillingUp", "postgres")
    assert name == "disk_filling_up"
    ev = evidence(nb)
    free = ev["Volume free space (share)"]
    assert free["before"] > 0.3 and free["worst"] < 0.15, free
    assert ev["Fill rate (bytes per hour)"]["worst"] > 10 * 1024 ** 3
    assert "archive_command" in text(nb)  # the config change that stopped WAL archiving
