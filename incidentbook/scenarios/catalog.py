"""The scenario catalogue and the public entry points: list, generate, generate a random system."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from incidentbook.errors import BadInput, NotFound
from incidentbook.scenarios.alerts import (
    Alert,
    build_notifications,
    evaluate_alerts,
    write_notifications,
)
from incidentbook.scenarios.faults import (
    FAULT_KINDS,
    RANDOM_FAULT_KINDS,
    REMEDIATION,
    eligible_targets,
)
from incidentbook.scenarios.logs import generate_context, generate_events, generate_logs
from incidentbook.scenarios.metrics import render_series, series_frame
from incidentbook.scenarios.run import simulate
from incidentbook.scenarios.simulate import STEP_S, FaultSpec, Sim
from incidentbook.scenarios.topology import System, random_system, shop_system
from incidentbook.telemetry.bundle import iso, write_bundle

DEFAULT_DURATION_S = 3 * 3600
_EPOCH = pd.Timestamp("2025-06-02T00:00:00Z")


@dataclass(frozen=True)
class ScenarioInfo:
    """One scenario of the catalogue: a system, a fault kind and the service it hits by default."""

    name: str
    story: str
    root_cause_service: str
    fault_kind: str
    is_incident: bool = True
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """The public description (`scenario list --json`); `params` are internal."""
        return {"name": self.name, "story": self.story, "root_cause_service": self.root_cause_service,
                "fault_kind": self.fault_kind, "is_incident": self.is_incident}


@dataclass
class GeneratedScenario:
    """What `generate` wrote: the bundle directory, the webhook payload files and the manifest."""

    name: str
    bundle_dir: Path
    payloads: list[Path]
    manifest: dict[str, Any]
    alerts: list[Alert]

    @property
    def ground_truth(self) -> dict[str, Any]:
        return self.manifest["ground_truth"]

    @property
    def first_payload(self) -> Path | None:
        """The first notification Alertmanager sent (what pages the on-call engineer)."""
        return self.payloads[0] if self.payloads else None


_SCENARIOS = [
    ScenarioInfo("kv-cache-break", "the KV cache comes back with a tiny maxmemory; hit ratio collapses and "
                 "the database drowns in misses (more DB traffic is the symptom, not the cause)", "kv-cache", "cache_failure"),
    ScenarioInfo("bad-deploy", "a rollout ships a null-pointer bug; 5xx start as the new pods take traffic", "catalog",
                 "bad_deploy"),
    ScenarioInfo("memory-leak", "a release leaks memory; pods climb to their limit and get OOMKilled over and over",
                 "cart", "memory_leak"),
    ScenarioInfo("worker-memory-leak", "the queue worker leaks memory and crash-loops; the order queue backs up",
                 "worker", "memory_leak"),
    ScenarioInfo("db-pool-exhaustion", "a service leaks database connections until its pool is empty; callers fail",
                 "inventory", "db_pool_exhaustion"),
    ScenarioInfo("noisy-neighbour", "a batch job lands on the same nodes; CPU per request triples, CFS throttling "
                 "and latency follow", "catalog", "cpu_throttling"),
    ScenarioInfo("slow-dependency", "a service's threads get stuck; callers time out, retry, and fail with 504s",
                 "inventory", "slow_dependency"),
    ScenarioInfo("credential-stuffing", "a few IPs hammer the login route; 429s and auth errors concentrate on "
                 "them (abuse, not a code bug)", "gateway", "abuse"),
    ScenarioInfo("timeout-config-change", "a config change cuts an upstream timeout to 250ms; a healthy call path "
                 "starts failing with 504s", "checkout", "config_change"),
    ScenarioInfo("recommendations-flag", "a feature flag turns on inline recommendations (N+1 queries); DB load "
                 "and latency climb", "catalog", "feature_flag"),
    ScenarioInfo("cert-expiry", "a service's TLS certificate expires; callers fail the handshake and its "
                 "traffic drops to zero", "payments", "cert_expiry"),
    ScenarioInfo("marketing-launch", "the planned spring-sale launch more than doubles traffic and CPU; errors "
                 "stay low (not an incident)", "frontend", "planned_load", is_incident=False),
    ScenarioInfo("disk-filling-up", "a config change breaks WAL archiving on the database; WAL fills its volume "
                 "until writes fail with 'No space left on device' and callers return 5xx", "postgres", "disk_full"),
]

#: The scenario `incidentbook demo` runs by default.
DEFAULT_SCENARIO = "kv-cache-break"


def list_scenarios() -> list[ScenarioInfo]:
    """Every scenario in the catalogue, in a stable order."""
    return list(_SCENARIOS)


def get_scenario(name: str) -> ScenarioInfo:
    """The scenario called `name`; NotFound lists the known names."""
    for s in _SCENARIOS:
        if s.name == name:
            return s
    known = ", ".join(s.name for s in _SCENARIOS)
    raise NotFound(f"no scenario named {name!r}; known scenarios: {known}")


def _window(seed: int, duration: float, end: float | None = None) -> np.ndarray:
    if end is not None:  # a window ending at `end` (unix seconds), e.g. now for live alerting
        t0 = (float(end) - duration) // STEP_S * STEP_S
        return np.arange(t0, t0 + duration, STEP_S, dtype=float)
    rng = np.random.default_rng([seed, 17])
    start = _EPOCH + pd.Timedelta(days=int(rng.integers(0, 28)), hours=int(rng.integers(10, 16)))
    t0 = start.timestamp()
    return np.arange(t0, t0 + duration, STEP_S, dtype=float)


def _parse_duration(duration: float | str | None) -> float:
    if duration is None:
        return float(DEFAULT_DURATION_S)
    if isinstance(duration, (int, float)):
        secs = float(duration)
    else:
        try:
            secs = pd.Timedelta(str(duration)).total_seconds()
        except ValueError:
            raise BadInput(f"cannot read duration {duration!r}; use seconds or e.g. '2h', '90min'") from None
    if not 45 * 60 <= secs <= 12 * 3600:
        raise BadInput(f"duration {duration!r} is outside 45 minutes to 12 hours; pick e.g. '3h'")
    return secs


def _remediation(sim: Sim) -> dict[str, Any]:
    f = sim.fault
    action = REMEDIATION[f.kind]
    rem: dict[str, Any] = {"action": action, "target": f.target}
    if action == "rollout_undo":
        rem["to_version"] = sim.notes["versions"][f.target]
    elif f.kind == "cache_failure":
        rem["detail"] = "restore maxmemory 4gb in the redis config and restart the primary"
    elif f.kind == "config_change":
        rem["detail"] = f"restore the upstream timeout for {sim.notes['callee']}"
    elif f.kind == "disk_full":
        rem["detail"] = (f"restore archive_command in the {f.target} config so WAL is archived and recycled; "
                         f"expand {sim.notes['disk']['pvc']} if it must take writes before that")
    elif action == "flag_off":
        rem["flag"] = sim.notes["flag"]
    elif action == "block_clients":
        rem["clients"] = sim.notes["clients"]
    elif action == "scale":
        rem["replicas"] = sim.system.services[f.target].replicas + 2
        rem["detail"] = "add replicas (or move off the noisy node) to get CPU headroom"
    elif action == "restart":
        rem["detail"] = "rolling restart releases the stuck threads / leaked connections"
    elif action == "renew_cert":
        rem["detail"] = "renew the certificate (cert-manager: kubectl cert-manager renew) and reload"
    return rem


def _run(system: System, kind: str, target: str, out_dir: str | Path, seed: int, duration: float | str | None,
         source: str, params: dict[str, Any], name: str, end: float | None = None) -> GeneratedScenario:
    secs = _parse_duration(duration)
    t = _window(seed, secs, end)
    rng = np.random.default_rng([seed, 23])
    onset = int(len(t) * float(rng.uniform(0.55, 0.65)))
    fault = FaultSpec(kind, target, onset, dict(params))
    sim = simulate(system, fault, t, seed)
    series = render_series(sim)
    metrics = series_frame(series, t)
    logs = generate_logs(sim)
    events = generate_events(sim)
    context = generate_context(sim)
    alerts = evaluate_alerts(series, t)
    window_end = float(t[-1]) + STEP_S
    payloads = build_notifications(alerts, window_end)
    out = Path(out_dir)
    paths = write_notifications(payloads, out / "alerts")
    manifest: dict[str, Any] = {
        "window": {"start": iso(float(t[0])), "end": iso(window_end)},
        "created": iso(window_end),
        "services": sorted(system.services),
        "topology": system.topology,
        "namespace": system.namespace,
        "source": source,
        "scrape_interval_s": STEP_S,
        "ground_truth": {
            "root_cause_service": target,
            "fault_kind": kind,
            "onset": iso(float(t[onset])),
            "remediation": _remediation(sim),
            "is_incident": kind != "planned_load",
        },
        "alerts": [{"file": f"alerts/{p.name}", "group_key": pl["groupKey"], "status": pl["status"]}
                   for p, pl in zip(paths, payloads)],
    }
    write_bundle(out, manifest, metrics, logs, events, sim.changes, context)
    import json
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return GeneratedScenario(name=name, bundle_dir=out, payloads=paths, manifest=manifest, alerts=alerts)


def generate(name: str, out_dir: str | Path, seed: int = 0, duration: float | str | None = None,
             end: float | None = None) -> GeneratedScenario:
    """Generate scenario `name` as a bundle in `out_dir`, with webhook payloads in `out_dir/alerts/`.

    `seed` changes the window, noise, red herrings and onset; a non-zero seed may move the fault
    to another eligible service. `duration`: seconds or a string like '3h' (default 3h). `end`
    (unix seconds) places the window's end there instead of on a seed-chosen past day.
    """
    info = get_scenario(name)
    system = shop_system()
    targets = eligible_targets(system, info.fault_kind)
    if info.root_cause_service not in targets:
        targets = [info.root_cause_service]
    target = info.root_cause_service
    if seed and info.name not in ("worker-memory-leak",):
        target = str(np.random.default_rng([seed, 5]).choice(targets))
    return _run(system, info.fault_kind, target, out_dir, seed, duration, f"scenario:{info.name}", info.params,
                info.name, end)


def generate_system(out_dir: str | Path, seed: int = 0, fault_kind: str | None = None,
                    duration: float | str | None = None) -> GeneratedScenario:
    """Generate an unnamed variant: other service names and sizes, fault kind and target from `seed`."""
    rng = np.random.default_rng([seed, 3])
    if fault_kind is None:
        fault_kind = str(rng.choice(list(RANDOM_FAULT_KINDS)))
    elif fault_kind not in FAULT_KINDS:
        raise NotFound(f"unknown fault kind {fault_kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
    system = random_system(seed)
    target = str(rng.choice(eligible_targets(system, fault_kind)))
    return _run(system, fault_kind, target, out_dir, seed, duration, f"scenario:system-{seed}", {}, f"system-{seed}")
