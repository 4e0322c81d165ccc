"""The fleet's system: an LLM-serving stack (~18 services) and a flow model of its traffic.

This model is deliberately separate from `scenarios.simulate`: another topology family, other
exporters, another scrape interval and another way of propagating load, so that an investigator
tuned on one is measured on a system it has not seen.

The model works per scrape step on arrays: each node has a request rate, an error ratio, a
median latency and the resource gauges its exporter reports. Requests flow from the edge down
the call graph; errors and latency flow back up from callees to callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

STEP_S = 30  # the fleet's scrape interval (the first simulator scrapes every 15 s)


@dataclass
class Call:
    """A call edge: `target` gets `fanout` requests per request of the caller."""

    target: str
    fanout: float = 1.0
    weight: float = 1.0  # how much of the callee's error ratio reaches the caller
    route: str = ""  # the edge's route prefix for this callee ("" for internal calls)


@dataclass
class Node:
    """One service of the stack and the exporter dialect its metrics are in."""

    name: str
    role: str  # edge, auth, api, grpc, go, consumer, inference, embedder, db, pooler, cache, broker, vendor
    dialect: str  # nginx, envoy, micrometer, fastapi, otel, grpc, gosql, vllm, tei, postgres, pgbouncer, redis, kafka, none
    calls: list[Call] = field(default_factory=list)
    pods: int = 2
    base_lat_s: float = 0.02
    base_err: float = 0.001
    routes: list[str] = field(default_factory=list)  # the node's own HTTP routes / RPC methods
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FleetSystem:
    """The stack: nodes by name, the namespace, the vendor host and the probed endpoints."""

    nodes: dict[str, Node]
    namespace: str
    entry: str
    entry_rps: float
    vendor_host: str
    probes: dict[str, str]  # service -> probed URL (blackbox exporter)

    @property
    def topology(self) -> dict[str, list[str]]:
        """service -> services it calls (the vendor is left out: it has no series of its own)."""
        return {n.name: [c.target for c in n.calls if self.nodes[c.target].role != "vendor"]
                for n in self.nodes.values() if n.role != "vendor"}

    @property
    def services(self) -> list[str]:
        return sorted(n for n, node in self.nodes.items() if node.role != "vendor")

    def order(self) -> list[str]:
        """Nodes callers-first (a topological order of the call graph)."""
        seen: list[str] = []

        def visit(n: str) -> None:
            if n in seen:
                return
            for m, node in self.nodes.items():
                if any(c.target == n for c in node.calls):
                    visit(m)
            seen.append(n)

        for n in self.nodes:
            visit(n)
        return seen

    def callers(self, name: str) -> list[str]:
        return [m for m, node in self.nodes.items() if any(c.target == name for c in node.calls)]

    def of_role(self, role: str) -> list[str]:
        return [n for n, node in self.nodes.items() if node.role == role]


_API_NAMES = (("chat-api", "conversation-api"), ("completions-api", "generate-api"), ("embeddings-api", "vectors-api"))
_VENDORS = ("api.moderation-vendor.example", "api.safetyscan.example", "content-filter.partner.example")


def llm_stack(seed: int) -> FleetSystem:
    """The LLM-serving stack; `seed` varies names, the edge dialect, pod counts and rates."""
    rng = np.random.default_rng([seed, 1501])
    pick = lambda opts: str(opts[int(rng.integers(0, len(opts)))])  # noqa: E731
    chat, comp, emb = (pick(o) for o in _API_NAMES)
    edge = pick(("edge-gateway", "ingress", "api-edge"))
    auth = pick(("auth", "identity", "authn"))
    router = pick(("model-router", "inference-router"))
    tok = pick(("tokenizer", "token-service"))
    billing = pick(("billing", "metering"))
    usage = pick(("usage-consumer", "usage-indexer"))
    retr = pick(("retrieval", "rag-search"))
    vllm = pick(("vllm-llama", "llm-serving"))
    tei = pick(("tei-embed", "embedder"))
    pg, pgb = pick(("postgres", "pg-main")), pick(("pgbouncer", "pg-pooler"))
    redis, kafka = pick(("redis", "session-cache")), pick(("kafka", "event-bus"))
    authdb = pick(("auth-db", "identity-db"))
    vendor = pick(_VENDORS)
    edge_dialect = pick(("nginx", "envoy"))
    api_dialects = ["fastapi", "otel"]
    rng.shuffle(api_dialects)
    pods = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    nodes = [
        Node(edge, "edge", edge_dialect, [Call(auth, 1.0, 1.0), Call(chat, 0.45, 1.0, "/v1/chat"),
                                          Call(comp, 0.35, 1.0, "/v1/completions"), Call(emb, 0.20, 1.0, "/v1/embeddings")],
             pods(2, 3), 0.004, 0.0005),
        Node(auth, "auth", "micrometer", [Call(authdb, 0.6, 1.0), Call(redis, 1.0, 0.3)], pods(2, 3), 0.012, 0.0008,
             ["/oauth/token", "/oauth/introspect", "/userinfo"]),
        Node(chat, "api", api_dialects[0], [Call(router, 1.0, 0.9), Call(retr, 0.5, 0.7), Call(vendor, 1.0, 0.95),
                                             Call(kafka, 1.0, 0.05), Call(billing, 1.0, 0.6)],
             pods(3, 5), 0.03, 0.001, ["/v1/chat/completions", "/v1/chat/threads", "/v1/chat/history"]),
        Node(comp, "api", api_dialects[1], [Call(router, 1.0, 0.9), Call(kafka, 1.0, 0.05), Call(billing, 1.0, 0.6)],
             pods(2, 4), 0.025, 0.001, ["/v1/completions", "/v1/models"]),
        Node(emb, "api", "fastapi" if api_dialects[1] == "fastapi" else "otel", [Call(tei, 1.0, 0.9), Call(billing, 1.0, 0.6)],
             pods(2, 3), 0.015, 0.001, ["/v1/embeddings"]),
        Node(retr, "grpc", "grpc", [Call(tei, 1.0, 0.9), Call(redis, 2.0, 0.3), Call(pgb, 1.0, 0.9)], pods(2, 3), 0.01, 0.0005,
             ["Search", "Rerank"], {"service": "rag.v1.Retrieval"}),
        Node(router, "grpc", "grpc", [Call(tok, 1.0, 0.9), Call(vllm, 1.0, 1.0)], pods(2, 3), 0.003, 0.0003,
             ["Generate", "Stream"], {"service": "inference.v1.Router"}),
        Node(tok, "grpc", "grpc", [], pods(2, 3), 0.002, 0.0002, ["Encode", "Count"], {"service": "tokenizer.v1.Tokenizer"}),
        Node(billing, "go", "gosql", [Call(pgb, 2.0, 1.0)], pods(2, 3), 0.008, 0.0005, ["/charge", "/quota"],
             {"db_name": "billing", "max_open": int(rng.choice([20, 25, 30]))}),
        Node(usage, "consumer", "gosql", [Call(pgb, 1.0, 0.2)], pods(2, 3), 0.006, 0.0003, [],
             {"db_name": "usage", "max_open": 10, "topic": "usage-events", "group": f"{usage}-group"}),
        Node(vllm, "inference", "vllm", [], pods(2, 4), 0.9, 0.0005, [],
             {"model": pick(("meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"))}),
        Node(tei, "embedder", "tei", [], pods(2, 3), 0.012, 0.0002, [], {"model": "BAAI/bge-base-en-v1.5"}),
        Node(pgb, "pooler", "pgbouncer", [Call(pg, 1.0, 1.0)], 1, 0.001, 0.0, [], {"pool_size": 40}),
        Node(pg, "db", "postgres", [], 1, 0.003, 0.0, [], {"max_connections": 200, "pvc": f"data-{pg}-0"}),
        Node(authdb, "db", "postgres", [], 1, 0.002, 0.0, [], {"max_connections": 100, "pvc": f"data-{authdb}-0"}),
        Node(redis, "cache", "redis", [], 1, 0.0006, 0.0, []),
        Node(kafka, "broker", "kafka", [], 3, 0.002, 0.0, []),
        Node(vendor, "vendor", "none", [], 1, 0.08, 0.0005, []),
    ]
    # the auth service reads its user store through Hikari; the entry also calls auth per request
    by = {n.name: n for n in nodes}
    by[auth].extra.update({"pool": "HikariPool-1", "hikari_max": int(rng.choice([10, 16, 20]))})
    probes = {edge: f"https://api.{pick(('llmco', 'inferly', 'promptly'))}.example/healthz",
              auth: f"https://{auth}.{pick(('internal', 'svc'))}.example/actuator/health",
              emb: f"https://{emb}.internal.example/health", vendor: f"https://{vendor}/v2/health"}
    return FleetSystem(nodes=by, namespace=pick(("llm-prod", "serving", "genai")), entry=edge,
                       entry_rps=float(rng.uniform(60, 140)), vendor_host=vendor, probes=probes)


@dataclass
class Knobs:
    """What a fault (or planned event) changes, as arrays over the scrape steps."""

    T: int
    entry_mult: np.ndarray
    own_err: dict[str, np.ndarray] = field(default_factory=dict)
    lat_mult: dict[str, np.ndarray] = field(default_factory=dict)
    refuse: dict[str, np.ndarray] = field(default_factory=dict)  # share of calls into a node failing before it (no route, TLS)
    extra_rps: dict[str, np.ndarray] = field(default_factory=dict)  # extra traffic arriving at the entry for a route target
    throttled_429: dict[str, np.ndarray] = field(default_factory=dict)  # share of a node's requests rate-limited


@dataclass
class Flow:
    """The model's output: per node arrays over the steps."""

    rps: dict[str, np.ndarray]
    err: dict[str, np.ndarray]  # 5xx share of requests served
    lat: dict[str, np.ndarray]  # median latency (s)
    r429: dict[str, np.ndarray]  # share of a node's requests rate-limited (429)
    sent: dict[tuple[str, str], np.ndarray]  # (caller, callee) -> calls per second made
    attempted: dict[tuple[str, str], np.ndarray]  # as `sent`, counting requests the entry's gate rejected
    gate: np.ndarray  # share of the entry's requests its gate calls (auth) failed


def diurnal(t: np.ndarray) -> np.ndarray:
    """A weekday traffic curve (UTC), peaking in the afternoon."""
    h = (t % 86400) / 3600.0
    return 0.7 + 0.3 * np.cos(2 * np.pi * (h - 15.0) / 24.0)


def run_flow(system: FleetSystem, t: np.ndarray, knobs: Knobs, rng: np.random.Generator) -> Flow:
    """Push traffic from the entry down the call graph, then errors and latency back up.

    Route calls of the entry split its traffic (each request takes one route); other calls are
    made by every request (e.g. the entry asks auth about each request). Requests the entry's
    gate calls fail are not forwarded, so a failing auth starves the services behind the edge.
    """
    T = len(t)
    walk = np.cumsum(rng.normal(0, 0.01, T))
    walk -= np.linspace(0, walk[-1], T)  # a wander that returns to its start: no drift
    noise = rng.standard_normal((len(system.nodes), T))
    shape = diurnal(t) / diurnal(t[:1])[0] * np.exp(walk)
    order = system.order()
    zero = np.zeros(T)
    gate = zero
    for _ in range(2):  # the second pass knows how many requests the entry's gate rejected
        rps = {n: np.zeros(T) for n in system.nodes}
        sent: dict[tuple[str, str], np.ndarray] = {}
        attempted: dict[tuple[str, str], np.ndarray] = {}
        rps[system.entry] = system.entry_rps * shape * knobs.entry_mult + sum(knobs.extra_rps.values(), zero)
        for n in order:
            node = system.nodes[n]
            base = rps[n] * (1 - knobs.throttled_429.get(n, zero))
            for c in node.calls:
                if c.route:
                    a = system.entry_rps * shape * knobs.entry_mult * c.fanout + knobs.extra_rps.get(c.target, zero)
                    s = a * (1 - gate)
                else:
                    a = s = base * c.fanout
                attempted[(n, c.target)] = a
                sent[(n, c.target)] = s
                rps[c.target] = rps[c.target] + s * (1 - knobs.refuse.get(c.target, zero))
        err: dict[str, np.ndarray] = {}
        lat: dict[str, np.ndarray] = {}
        for k, n in enumerate(reversed(order)):
            node = system.nodes[n]
            ok = 1 - np.clip(node.base_err + knobs.own_err.get(n, zero), 0, 1)
            latency = node.base_lat_s * knobs.lat_mult.get(n, 1.0) * np.clip(1 + 0.04 * noise[k], 0.85, None)
            routes = [c for c in node.calls if c.route]
            total = sum((sent[(n, c.target)] for c in routes), zero)
            mix_err, mix_lat = zero, zero
            for c in node.calls:
                refused = knobs.refuse.get(c.target, zero)
                e_c = refused + (1 - refused) * err[c.target]
                if c.route:
                    w = sent[(n, c.target)] / np.maximum(total, 1e-9)
                    mix_err = mix_err + w * e_c
                    mix_lat = mix_lat + w * lat[c.target] * (1 - refused)
                else:
                    ok = ok * (1 - e_c * c.weight)
                    latency = latency + lat[c.target] * min(c.fanout, 1.0) * 0.8
            if n == system.entry:
                gate = 1 - ok
            err[n] = np.clip(1 - ok * (1 - mix_err), 0, 1)
            lat[n] = latency + mix_lat
    r429 = {n: knobs.throttled_429.get(n, zero) for n in system.nodes}
    return Flow(rps=rps, err=err, lat=lat, r429=r429, sent=sent, attempted=attempted, gate=gate)


def ramp(T: int, at: int, steps: int, height: float) -> np.ndarray:
    """0 before `at`, rising linearly to `height` over `steps`, then flat."""
    x = np.clip((np.arange(T) - at + 1) / max(steps, 1), 0, 1)
    return x * height
