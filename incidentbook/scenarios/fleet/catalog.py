"""The fleet scenarios: faults per exporter dialect on the LLM-serving stack, and planned non-incidents.

    from incidentbook.scenarios.fleet import generate_fleet, list_fleet
    g = generate_fleet("fleet-auth-bad-deploy", "out/auth", seed=3)
    g.bundle_dir, g.truth_path

Each bundle is a standard bundle (see `telemetry.bundle`) with `ground_truth: null` in its
manifest: the truth is written beside it, to `truth.json` in the output directory, in the
format `incidentbook eval --truth` reads (docs/evals.md).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from incidentbook.errors import BadInput, NotFound
from incidentbook.scenarios.alerts import Alert, build_notifications, write_notifications
from incidentbook.scenarios.fleet.dialects import pod_names, render
from incidentbook.scenarios.fleet.system import (
    STEP_S,
    FleetSystem,
    Flow,
    Knobs,
    llm_stack,
    ramp,
    run_flow,
)
from incidentbook.telemetry.bundle import iso, labels_key, write_bundle

PREFIX = "fleet-"
DEFAULT_DURATION_S = 3 * 3600
_EPOCH = pd.Timestamp("2026-03-02T00:00:00Z")
AUTHORS = ("priya.n", "tomasz.k", "amara.o", "li.wei", "deploy-bot", "flux")


@dataclass(frozen=True)
class FleetScenario:
    """One fleet scenario: the dialect it exercises, its fault kind and whether it is an incident."""

    name: str
    dialect: str
    fault_kind: str
    story: str
    is_incident: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "generator": "fleet", "dialect": self.dialect, "fault_kind": self.fault_kind,
                "story": self.story, "is_incident": self.is_incident, "root_cause_service": "(seed-dependent)"}


_SCENARIOS = [
    FleetScenario("fleet-auth-bad-deploy", "micrometer", "bad_deploy",
                  "a rollout of the auth service (Spring) throws NullPointerException; the edge fails every request it cannot authorise"),
    FleetScenario("fleet-auth-hikari-exhaustion", "micrometer", "db_pool_exhaustion",
                  "auth's HikariCP pool is exhausted by a slow query; connections pending, token calls time out"),
    FleetScenario("fleet-billing-pool-exhaustion", "gosql", "db_pool_exhaustion",
                  "the Go billing service leaks database/sql connections until go_sql_stats in-use hits max_open"),
    FleetScenario("fleet-edge-broken-route", "nginx|envoy", "config_change",
                  "an edge route change points a prefix at a service that does not exist; traffic behind it collapses"),
    FleetScenario("fleet-account-abuse", "json-logs", "abuse",
                  "one account hammers the completions API with a leaked key; 429s concentrate on its account_id"),
    FleetScenario("fleet-vendor-outage", "otel-client+blackbox", "dependency_outage",
                  "the third-party moderation API goes down; only the caller's client metrics and a probe show it"),
    FleetScenario("fleet-disk-filling", "kubelet-volume", "disk_full",
                  "the database volume has been filling for hours; it runs out and writes fail"),
    FleetScenario("fleet-kv-cache-saturation", "vllm", "kv_cache_saturation",
                  "long prompts fill the vLLM KV cache; requests queue, get preempted, and time to first token explodes"),
    FleetScenario("fleet-kafka-lag", "kafka", "consumer_lag",
                  "the usage consumer stalls on a poison message; consumer-group lag grows without bound"),
    FleetScenario("fleet-cert-expiry", "blackbox", "cert_expiry",
                  "an internal service's TLS certificate expires; the edge cannot reach it and its traffic stops"),
    FleetScenario("fleet-launch", "planned", "planned_load",
                  "a planned model launch doubles traffic; KV cache and latency climb, errors stay low (not an incident)",
                  is_incident=False),
    FleetScenario("fleet-maintenance", "planned", "planned_maintenance",
                  "a planned database minor-version upgrade restarts postgres; a short error blip (not an incident)",
                  is_incident=False),
    FleetScenario("fleet-cw-latency", "cloudwatch", "slow_dependency",
                  "CloudWatch/X-Ray shape (latency Average/p50..p99, requests Sum, availability %, call graph, no alerts): "
                  "one node gets slow"),
    FleetScenario("fleet-cw-errors", "cloudwatch", "error_injection",
                  "CloudWatch/X-Ray shape: one node fails a share of its requests; availability drops up the chain"),
]


def list_fleet() -> list[FleetScenario]:
    """Every fleet scenario, in a stable order."""
    return list(_SCENARIOS)


def get_fleet(name: str) -> FleetScenario:
    """The fleet scenario called `name`; NotFound lists the known names."""
    for s in _SCENARIOS:
        if s.name == name:
            return s
    raise NotFound(f"no fleet scenario named {name!r}; known: {', '.join(s.name for s in _SCENARIOS)}")


@dataclass
class FleetGenerated:
    """What `generate_fleet` wrote."""

    name: str
    bundle_dir: Path
    truth_path: Path
    truth: dict[str, Any]
    payloads: list[Path] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)


def _duration(duration: float | str | None) -> float:
    if duration is None:
        return float(DEFAULT_DURATION_S)
    try:
        secs = float(duration) if isinstance(duration, (int, float)) else pd.Timedelta(str(duration)).total_seconds()
    except ValueError:
        raise BadInput(f"--duration {duration!r}: use seconds or e.g. '2h', '90min'") from None
    if not 90 * 60 <= secs <= 12 * 3600:
        raise BadInput(f"--duration {duration!r} is outside 90 minutes to 12 hours; pick e.g. '3h'")
    return secs


def _rng(seed: int, name: str, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), salt])


class _Ctx:
    """Mutable state of one generation: system, knobs, exporter state, changes, context, truth."""

    def __init__(self, system: FleetSystem, t: np.ndarray, onset: int, rng: np.random.Generator) -> None:
        self.system, self.t, self.onset, self.rng = system, t, onset, rng
        self.T = T = len(t)
        self.knobs = Knobs(T=T, entry_mult=np.ones(T))
        self.changes: list[dict[str, Any]] = []
        self.context: list[dict[str, Any]] = []
        self.truth: dict[str, Any] = {}
        self.pool_leak: dict[str, np.ndarray] = {}
        self.kv_extra = np.zeros(T)
        self.consume_mult = np.ones(T)
        self.disk: dict[str, tuple[float, np.ndarray]] = {}
        self.cert: dict[str, float] = {}
        self.probe_ok: dict[str, np.ndarray] = {}
        self.probe_code: dict[str, int] = {}
        self.pg_up: dict[str, np.ndarray] = {}
        self.exceptions: dict[str, str] = {}
        self.abuser: dict[str, Any] = {}
        self.prompt_tokens = 900.0

    def ts(self, i: int) -> str:
        i = int(np.clip(i, 0, self.T - 1))
        return iso(float(self.t[i]) + float(self.rng.uniform(1, STEP_S - 1)))

    def step_of(self, frac: float) -> int:
        return int(self.T * frac)

    def change(self, at: int, service: str, kind: str, description: str, details: dict[str, Any]) -> None:
        self.changes.append({"timestamp": self.ts(at), "service": service, "kind": kind, "description": description,
                             "author": str(self.rng.choice(AUTHORS)), "details": details})


def _versions(rng: np.random.Generator) -> tuple[str, str]:
    """A running version and the next minor release."""
    major, minor = int(rng.integers(1, 5)), int(rng.integers(0, 30))
    return f"{major}.{minor}.{int(rng.integers(0, 9))}", f"{major}.{minor + 1}.0"


def _fault(ctx: _Ctx, kind_name: str) -> None:
    """Apply scenario `kind_name` to the knobs, the exporter state, changes and context; set the truth."""
    s, T, o, rng, k = ctx.system, ctx.T, ctx.onset, ctx.rng, ctx.knobs
    auth = s.of_role("auth")[0]
    apis = s.of_role("api")
    go = s.of_role("go")[0]
    consumer = s.of_role("consumer")[0]
    vllm = s.of_role("inference")[0]
    dbs = s.of_role("db")
    main_db = next(d for d in dbs if any(c.target == d for c in s.nodes[s.of_role("pooler")[0]].calls))
    if kind_name == "fleet-auth-bad-deploy":
        old, new = _versions(rng)
        ctx.change(o - 1, auth, "deploy", f"{auth} {old} -> {new}: migrate token introspection to the new claims mapper",
                   {"from": old, "to": new, "image": f"ghcr.io/acme/{auth}:{new}", "strategy": "RollingUpdate"})
        # pods are replaced one by one over ~3 minutes: the error share follows the new pods' share
        k.own_err[auth] = ramp(T, o, 6, float(rng.uniform(0.25, 0.45)))
        ctx.exceptions[auth] = "NullPointerException"
        ctx.truth = {"root_cause_service": auth, "fault_kind": "bad_deploy"}
    elif kind_name == "fleet-auth-hikari-exhaustion":
        mx = float(s.nodes[auth].extra["hikari_max"]) * s.nodes[auth].pods
        ctx.pool_leak[auth] = ramp(T, o, int(rng.integers(8, 16)), mx * 1.8)
        k.lat_mult[auth] = 1 + ramp(T, o + 6, 6, float(rng.uniform(15, 30)))
        k.own_err[auth] = ramp(T, o + 8, 6, float(rng.uniform(0.15, 0.3)))
        ctx.exceptions[auth] = "SQLTransientConnectionException"
        ctx.truth = {"root_cause_service": auth, "fault_kind": "db_pool_exhaustion"}
    elif kind_name == "fleet-billing-pool-exhaustion":
        mx = float(s.nodes[go].extra["max_open"]) * s.nodes[go].pods
        ctx.pool_leak[go] = ramp(T, o, int(rng.integers(10, 20)), mx * 1.5)
        k.lat_mult[go] = 1 + ramp(T, o + 8, 6, float(rng.uniform(20, 50)))
        k.own_err[go] = ramp(T, o + 10, 6, float(rng.uniform(0.2, 0.4)))
        ctx.truth = {"root_cause_service": go, "fault_kind": "db_pool_exhaustion"}
    elif kind_name == "fleet-edge-broken-route":
        target = str(rng.choice([c.target for c in s.nodes[s.entry].calls if c.route]))
        route = next(c.route for c in s.nodes[s.entry].calls if c.target == target)
        ctx.change(o - 1, s.entry, "config", f"{s.entry}: route {route} -> service {target}-v2 (canary split)",
                   {"resource": f"ingress/{target}" if s.nodes[s.entry].dialect == "nginx" else f"httproute/{target}",
                    "key": "spec.rules[0].backend.service.name", "from": target, "to": f"{target}-v2"})
        k.refuse[target] = np.where(np.arange(T) >= o, 1.0, 0.0)
        ctx.truth = {"root_cause_service": s.entry, "fault_kind": "config_change",
                     "alternatives": [{"root_cause_service": s.entry, "fault_kind": "bad_deploy"}]}
    elif kind_name == "fleet-account-abuse":
        router = next(n for n in s.of_role("grpc") if any(c.target == vllm for c in s.nodes[n].calls))
        direct = [a for a in apis if any(c.target == router for c in s.nodes[a].calls)
                  and not any(s.nodes[c.target].role == "vendor" for c in s.nodes[a].calls)]
        comp = direct[0] if direct else apis[0]
        base = s.entry_rps * next(c.fanout for c in s.nodes[s.entry].calls if c.target == comp)
        extra = ramp(T, o, 4, float(rng.uniform(4, 8)) * base)
        k.extra_rps[comp] = extra
        total = base + extra
        k.throttled_429[comp] = np.clip(extra * 0.85 / np.maximum(total, 1e-9), 0, 1)
        k.lat_mult[comp] = 1 + ramp(T, o, 4, 0.6)
        ctx.abuser = {"service": comp, "account_id": f"acct_{int(rng.integers(10**7, 10**8))}",
                      "api_key_id": f"key_{int(rng.integers(10**5, 10**6))}", "tenant": f"t-{int(rng.integers(100, 999))}",
                      "rps": extra}
        ctx.truth = {"root_cause_service": comp, "fault_kind": "abuse",
                     "alternatives": [{"root_cause_service": s.entry, "fault_kind": "abuse"}]}
    elif kind_name == "fleet-vendor-outage":
        k.own_err[s.vendor_host] = ramp(T, o, 2, float(rng.uniform(0.7, 0.95)))
        k.lat_mult[s.vendor_host] = 1 + ramp(T, o, 2, 60.0)
        ctx.probe_ok[s.vendor_host] = np.where(np.arange(T) >= o + 1, 0.0, 1.0)
        ctx.probe_code[s.vendor_host] = 503
        ctx.truth = {"root_cause_service": s.vendor_host, "fault_kind": "dependency_outage",
                     "alternatives": [{"root_cause_service": s.vendor_host, "fault_kind": "slow_dependency"}]}
    elif kind_name == "fleet-disk-filling":
        cap = 200 * 2**30
        free0 = float(rng.uniform(0.12, 0.2)) * cap
        # filling since before the window started, at a steady rate: it runs out at the onset
        rate = free0 / max(o, 1)
        free = np.clip(free0 - rate * np.arange(T), 0, None)
        ctx.disk[main_db] = (cap, free)
        k.own_err[main_db] = ramp(T, o, 2, float(rng.uniform(0.35, 0.55)))
        ctx.truth = {"root_cause_service": main_db, "fault_kind": "disk_full"}
    elif kind_name == "fleet-kv-cache-saturation":
        ctx.kv_extra = ramp(T, o, 6, 0.6)
        k.lat_mult[vllm] = 1 + ramp(T, o + 2, 6, float(rng.uniform(3, 6)))
        k.own_err[vllm] = ramp(T, o + 4, 6, float(rng.uniform(0.05, 0.12)))
        ctx.prompt_tokens = 900.0
        ctx.truth = {"root_cause_service": vllm, "fault_kind": "kv_cache_saturation"}
    elif kind_name == "fleet-kafka-lag":
        ctx.consume_mult = 1 - ramp(T, o, 2, float(rng.uniform(0.75, 0.95)))
        ctx.truth = {"root_cause_service": consumer, "fault_kind": "consumer_lag"}
    elif kind_name == "fleet-cert-expiry":
        target = str(rng.choice([svc for svc in s.probes if svc not in (s.entry, s.vendor_host)]))
        ctx.cert[target] = float(ctx.t[o])
        k.refuse[target] = np.where(np.arange(T) >= o, 1.0, 0.0)
        ctx.probe_ok[target] = np.where(np.arange(T) >= o, 0.0, 1.0)
        ctx.truth = {"root_cause_service": target, "fault_kind": "cert_expiry"}
    elif kind_name == "fleet-launch":
        k.entry_mult = 1 + ramp(T, o, 12, float(rng.uniform(0.9, 1.3)))
        ctx.kv_extra = ramp(T, o, 12, 0.25)
        k.lat_mult[vllm] = 1 + ramp(T, o, 12, 0.5)
        ctx.context.append({"start": ctx.ts(o - 2), "end": iso(float(ctx.t[-1]) + 7200), "kind": "launch",
                            "title": "General availability of the new model tier", "services": [s.entry, *apis, vllm],
                            "details": {"expected_traffic": "2x", "owner": "product-launch", "ticket": f"LAUNCH-{int(rng.integers(100, 999))}"}})
        ctx.truth = {"root_cause_service": s.entry, "fault_kind": "planned_load", "is_incident": False}
    elif kind_name == "fleet-maintenance":
        blip = (np.arange(T) >= o) & (np.arange(T) < o + int(rng.integers(4, 8)))
        k.own_err[main_db] = np.where(blip, float(rng.uniform(0.3, 0.6)), 0.0)
        ctx.pg_up[main_db] = np.where(blip, 0.0, 1.0)
        ctx.context.append({"start": ctx.ts(o - 4), "end": ctx.ts(o + 20), "kind": "maintenance",
                            "title": f"{main_db} minor version upgrade (restart expected)", "services": [main_db],
                            "details": {"window": "planned", "ticket": f"CHG-{int(rng.integers(1000, 9999))}",
                                        "expected_impact": "up to 5 minutes of failed writes"}})
        ctx.truth = {"root_cause_service": main_db, "fault_kind": "planned_maintenance", "is_incident": False}
    else:  # pragma: no cover - the catalogue and this function are kept in step
        raise NotFound(f"no fault for {kind_name!r}")
    # innocent changes: a deploy or config change on another service, near the onset
    others = [n for n, node in s.nodes.items() if node.role in ("api", "grpc", "go") and n != ctx.truth["root_cause_service"]]
    for _ in range(int(rng.integers(1, 3))):
        svc = str(rng.choice(others))
        at = int(np.clip(o + rng.integers(-40, 6), 4, T - 4))
        old, new = _versions(rng)
        ctx.change(at, svc, "deploy", f"{svc} {old} -> {new}: " + str(rng.choice(["bump base image", "add tracing attributes",
                                                                              "tune log sampling", "dependency updates"])),
                   {"from": old, "to": new, "image": f"ghcr.io/acme/{svc}:{new}", "strategy": "RollingUpdate"})


def _exporter_state(ctx: _Ctx, flow: Flow, pods: dict[str, list[str]], host: str) -> dict[str, Any]:
    s, T, t = ctx.system, ctx.T, ctx.t
    pool_in_use: dict[str, np.ndarray] = {}
    pool_pending: dict[str, np.ndarray] = {}
    for n, node in s.nodes.items():
        mx = float(node.extra.get("hikari_max") or node.extra.get("max_open") or 0) * node.pods
        if not mx:
            continue
        demand = flow.rps[n] * 0.004 * mx / 4 + 1.5 * node.pods + ctx.pool_leak.get(n, np.zeros(T))
        if node.role == "consumer":
            demand = demand * ctx.consume_mult
        pool_in_use[n] = np.minimum(demand, mx)
        pool_pending[n] = np.clip(demand - mx, 0, None)
    vllm = s.of_role("inference")[0]
    load = flow.rps[vllm] / np.maximum(np.median(flow.rps[vllm][: ctx.onset]), 1e-9)
    kv = np.clip(0.38 * load + ctx.kv_extra + 0.02 * ctx.rng.standard_normal(T), 0.05, 1.0)
    over = np.clip(0.38 * load + ctx.kv_extra - 0.97, 0, None)
    consumer = s.of_role("consumer")[0]
    produced = sum((flow.rps[a] for a in s.of_role("api")), np.zeros(T))
    consumed = produced * ctx.consume_mult
    lag = 40 + np.cumsum((produced - consumed) * STEP_S)
    cert = {svc: float(t[0]) + float(ctx.rng.uniform(25, 80)) * 86400 for svc in s.probes}
    cert.update(ctx.cert)
    volumes: dict[str, tuple[float, np.ndarray]] = {}
    for d in s.of_role("db"):
        cap = 200 * 2**30
        volumes[d] = ctx.disk.get(d, (cap, np.full(T, cap * float(ctx.rng.uniform(0.45, 0.7)))))
    return {"pods": pods, "host": host, "knobs": ctx.knobs, "route_lat": {c.target: flow.lat[c.target] for c in s.nodes[s.entry].calls},
            "exceptions": ctx.exceptions, "pool_in_use": pool_in_use, "pool_pending": pool_pending,
            "kv_metric": "vllm:gpu_cache_usage_perc" if ctx.rng.random() < 0.5 else "vllm:kv_cache_usage_perc",
            "kv_usage": {vllm: kv}, "kv_waiting": {vllm: over * 400}, "kv_preempt": {vllm: over * 20},
            "prompt_tokens": ctx.prompt_tokens, "ttft": {vllm: 0.12 * (1 + over * 120) * ctx.knobs.lat_mult.get(vllm, 1.0)},
            "pg_up": ctx.pg_up, "lag": {consumer: lag}, "produced": produced, "cpu_mult": {},
            "probe_ok": ctx.probe_ok, "probe_code": ctx.probe_code, "cert_expiry": cert, "volumes": volumes}


def _frame(series: list[tuple[str, dict[str, str], np.ndarray]], t: np.ndarray) -> pd.DataFrame:
    """The long-form metrics frame, built in one go (one small frame per series is slow)."""
    keyed = sorted(((m, labels_key(lab), v) for m, lab, v in series), key=lambda x: (x[0], x[1]))
    T = len(t)
    ts = pd.to_datetime(np.tile((t * 1000).astype("int64"), len(keyed)), unit="ms", utc=True)
    return pd.DataFrame({"timestamp": ts, "metric": np.repeat(np.array([k[0] for k in keyed], dtype=object), T),
                         "labels": np.repeat(np.array([k[1] for k in keyed], dtype=object), T),
                         "value": np.concatenate([k[2] for k in keyed]) if keyed else np.array([], dtype=float)})


_MESSAGES = {200: "request completed", 429: "rate limit exceeded for api key", 500: "unhandled error",
             502: "upstream returned an invalid response", 503: "upstream unavailable", 504: "upstream timed out"}


def _logs(ctx: _Ctx, flow: Flow, pods: dict[str, list[str]]) -> list[dict[str, Any]]:
    """JSON structured logs of the API and auth services, sampled, with high-cardinality fields."""
    s, T, rng = ctx.system, ctx.T, ctx.rng
    accounts = [f"acct_{int(x)}" for x in rng.integers(10**7, 10**8, 400)]
    popularity = rng.zipf(1.6, len(accounts)).astype(float)
    popularity /= popularity.sum()
    tenants = [f"t-{int(x)}" for x in rng.integers(100, 999, 60)]
    out: list[dict[str, Any]] = []
    for n in [*s.of_role("api"), *s.of_role("auth")]:
        node = s.nodes[n]
        for i in range(T):
            rps = float(flow.rps[n][i])
            n_lines = int(rng.poisson(min(rps * 0.05, 6.0)))
            abusive = ctx.abuser if ctx.abuser.get("service") == n else None
            n_abuse = int(rng.poisson(min(float(abusive["rps"][i]) * 0.05, 30.0))) if abusive else 0
            e, r4 = float(flow.err[n][i]), float(flow.r429[n][i])
            for j in range(n_lines + n_abuse):
                is_abuse = j >= n_lines
                if is_abuse:
                    status = 429 if rng.random() < 0.85 else 200
                    acct, key, tenant = abusive["account_id"], abusive["api_key_id"], abusive["tenant"]  # type: ignore[index]
                else:
                    u = rng.random()
                    status = int(rng.choice([500, 502, 503, 504])) if u < e else (429 if u < e + r4 * 0.05 else 200)
                    a = int(rng.choice(len(accounts), p=popularity))
                    acct, key, tenant = accounts[a], f"key_{100000 + a * 7}", tenants[a % len(tenants)]
                route = node.routes[int(rng.integers(0, len(node.routes)))] if node.routes else "/"
                doc = {"ts": iso(float(ctx.t[i]) + float(rng.uniform(0, STEP_S))), "level": "error" if status >= 500 else ("warn" if status == 429 else "info"),
                       "msg": _MESSAGES.get(status, "request completed"), "route": route, "method": "POST", "status": status,
                       "duration_ms": round(float(flow.lat[n][i]) * 1000 * float(rng.lognormal(0, 0.4)), 1),
                       "account_id": acct, "tenant": tenant, "api_key_id": key,
                       "request_id": f"req_{int(rng.integers(0, 2**62)):016x}", "trace_id": f"{int(rng.integers(0, 2**62)):032x}"}
                if node.dialect == "micrometer":
                    doc = {"@timestamp": doc.pop("ts"), "log.level": doc.pop("level").upper(), "logger_name": "c.a.auth.TokenController",
                           "thread_name": f"http-nio-8080-exec-{int(rng.integers(1, 200))}", **doc}
                    if status >= 500:
                        doc["error.type"] = ctx.exceptions.get(n, "ResponseStatusException")
                pod = pods[n][int(rng.integers(0, len(pods[n])))]
                out.append({"timestamp": doc.get("ts") or doc.get("@timestamp"),
                            "labels": {"namespace": s.namespace, "app": n, "service_name": n, "pod": pod, "container": n},
                            "line": json.dumps(doc, separators=(",", ":"))})
    out.sort(key=lambda r: r["timestamp"])
    return out


def _events(ctx: _Ctx, pods: dict[str, list[str]]) -> list[dict[str, Any]]:
    out = []
    for c in ctx.changes:
        if c["kind"] == "deploy":
            out.append({"timestamp": c["timestamp"], "namespace": ctx.system.namespace, "kind": "Deployment", "name": c["service"],
                        "type": "Normal", "reason": "ScalingReplicaSet", "message": f"Scaled up replica set {c['service']} to 1",
                        "count": 1})
    return out


@dataclass
class _Rule:
    name: str
    severity: str
    for_steps: int
    summary: str


def _alerts(ctx: _Ctx, flow: Flow, state: dict[str, Any]) -> list[Alert]:
    """Alerts an ordinary rule set (SLO burn, saturation, probes) would have fired, from the model's state."""
    s, T, t = ctx.system, ctx.T, ctx.t
    conds: list[tuple[_Rule, dict[str, str], np.ndarray]] = []
    ns = s.namespace
    for n, node in s.nodes.items():
        if node.role in ("vendor", "db", "pooler", "cache", "broker", "consumer"):
            continue
        conds.append((_Rule("HighErrorRate", "critical", 4, "{svc}: more than 5% of requests fail"), {"service": n}, flow.err[n] > 0.05))
        base = np.median(flow.lat[n][: ctx.onset])
        conds.append((_Rule("HighLatency", "warning", 6, "{svc}: median latency is 3x its usual"), {"service": n}, flow.lat[n] > 3 * base))
    vllm = s.of_role("inference")[0]
    conds.append((_Rule("VLLMKVCacheHigh", "warning", 4, "{svc}: KV cache above 90%"), {"service": vllm}, state["kv_usage"][vllm] > 0.9))
    for c, lag in state["lag"].items():
        conds.append((_Rule("KafkaConsumerLagHigh", "warning", 6, "{svc}: consumer group lag above 5000"), {"service": c}, lag > 5000))
    for d, (cap, free) in state["volumes"].items():
        conds.append((_Rule("KubePersistentVolumeFillingUp", "critical", 2, "{svc}: volume has under 3% free"), {"service": d},
                      free / cap < 0.03))
    for svc, url in s.probes.items():
        ok = state["probe_ok"].get(svc, np.ones(T))
        conds.append((_Rule("ProbeFailed", "critical", 2, "{svc}: blackbox probe failing"), {"service": svc, "instance": url}, ok < 0.5))
        left = state["cert_expiry"][svc] - t
        conds.append((_Rule("SSLCertExpiringSoon", "warning", 1, "{svc}: certificate expires in under 7 days"),
                      {"service": svc, "instance": url}, left < 7 * 86400))
    alerts = []
    for rule, lab, cond in conds:
        runs = _runs(np.asarray(cond, dtype=bool))
        for start, end in runs:
            fire = start + rule.for_steps
            if fire >= T or fire >= end:
                continue
            labels = {"alertname": rule.name, "namespace": ns, "severity": rule.severity, **lab}
            svc = lab["service"]
            alerts.append(Alert(labels=labels, annotations={"summary": rule.summary.format(svc=svc)},
                                active_at=float(t[start]), fired_at=float(t[fire]),
                                resolved_at=float(t[end]) if end < T else None, expr=f"{rule.name}{{service={svc!r}}}"))
    return alerts


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(mask)))
    return out


def _window(seed: int, secs: float) -> np.ndarray:
    rng = np.random.default_rng([seed, 1502])
    start = _EPOCH + pd.Timedelta(days=int(rng.integers(0, 40)), hours=int(rng.integers(7, 18)), minutes=int(rng.integers(0, 59)))
    t0 = start.timestamp() // STEP_S * STEP_S
    return np.arange(t0, t0 + secs, STEP_S, dtype=float)


def generate_fleet(name: str, out_dir: str | Path, seed: int = 0, duration: float | str | None = None) -> FleetGenerated:
    """Generate fleet scenario `name` into `out_dir` (bundle, `alerts/`, and `truth.json` beside the manifest)."""
    info = get_fleet(name)
    if info.dialect == "cloudwatch":
        from incidentbook.scenarios.fleet.cloudwatch import generate_cloudwatch

        return generate_cloudwatch(name, out_dir, seed)  # type: ignore[no-any-return]
    secs = _duration(duration)
    t = _window(seed, secs)
    rng = _rng(seed, name, 7)
    system = llm_stack(seed)
    onset_frac = float(rng.uniform(0.5, 0.75)) if name != "fleet-disk-filling" else float(rng.uniform(0.8, 0.9))
    ctx = _Ctx(system, t, int(len(t) * onset_frac), rng)
    _fault(ctx, name)
    flow = run_flow(system, t, ctx.knobs, rng)
    pods = pod_names(system, rng)
    host = next(iter(system.probes.values())).split("/")[2]
    state = _exporter_state(ctx, flow, pods, host)
    series = render(system, flow, state, t, rng)
    metrics = _frame(series, t)
    logs = _logs(ctx, flow, pods)
    alerts = _alerts(ctx, flow, state)
    window_end = float(t[-1]) + STEP_S
    out = Path(out_dir)
    for stale in (out / "alerts").glob("*.json"):  # a re-generation must not keep another run's pages
        stale.unlink()
    payloads = build_notifications(alerts, window_end)
    paths = write_notifications(payloads, out / "alerts")
    case = out.name
    truth = {"case": case, **ctx.truth, "onset": iso(float(t[ctx.onset])), "is_incident": ctx.truth.get("is_incident", info.is_incident),
             "scenario": name, "seed": seed, "generator": "fleet", "dialect": info.dialect}
    manifest = {"window": {"start": iso(float(t[0])), "end": iso(window_end)}, "created": iso(window_end),
                "services": system.services, "topology": system.topology, "namespace": system.namespace,
                "source": f"scenario:{name}", "scrape_interval_s": STEP_S, "ground_truth": None,
                "alerts": [{"file": f"alerts/{p.name}", "group_key": pl["groupKey"], "status": pl["status"]}
                           for p, pl in zip(paths, payloads)]}
    write_bundle(out, manifest, metrics, logs, _events(ctx, pods), sorted(ctx.changes, key=lambda c: c["timestamp"]), ctx.context)
    truth_path = out / "truth.json"
    truth_path.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return FleetGenerated(name=name, bundle_dir=out, truth_path=truth_path, truth=truth, payloads=paths,
                          manifest=json.loads((out / "manifest.json").read_text(encoding="utf-8")))
