"""The simulated system: services, the calls between them, and a random variant."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NAMESPACE = "shop"

# Service kinds the simulator knows how to model.
HTTP_KINDS = ("edge", "gateway", "app")
KINDS = HTTP_KINDS + ("cache", "db", "queue", "worker")


@dataclass(frozen=True)
class Route:
    """One HTTP route a service serves; `via` is the service that route forwards to, if any."""

    method: str
    path: str
    share: float
    via: str | None = None


@dataclass(frozen=True)
class Call:
    """One dependency edge.

    `mode`: `always` (every request makes `fanout` calls), `route` (only requests of the route
    whose `via` is the target), `miss` (only requests that missed the service's cache).
    """

    target: str
    fanout: float = 1.0
    mode: str = "always"
    timeout_s: float = 2.0


@dataclass(frozen=True)
class Service:
    """A service of the simulated system with its capacity and resource settings."""

    name: str
    kind: str
    replicas: int = 2
    routes: tuple[Route, ...] = ()
    calls: tuple[Call, ...] = ()
    self_latency_s: float = 0.02
    capacity_rps: float = 400.0
    cpu_per_req: float = 0.004
    cpu_limit: float = 1.0
    mem_base_mb: float = 300.0
    mem_limit_mb: float = 512.0
    db_pool_max: int = 0
    language: str = "go"
    entry_rps: float = 0.0  # external traffic arriving at this service (edge only)


@dataclass
class System:
    """A set of services and their call graph, in namespace `namespace`."""

    services: dict[str, Service]
    namespace: str = NAMESPACE
    name: str = "shop"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def topology(self) -> dict[str, list[str]]:
        """service -> the services it calls (the manifest's `topology`)."""
        topo = {n: sorted({c.target for c in s.calls}) for n, s in self.services.items()}
        for n, s in self.services.items():
            if s.kind == "queue":
                topo[n] = sorted(w for w, ws in self.services.items() if ws.kind == "worker")
        return topo

    def order(self) -> list[str]:
        """Services callers-first (a topological order of the call graph)."""
        topo = self.topology
        seen: list[str] = []
        state: dict[str, int] = {}

        def visit(n: str) -> None:
            if state.get(n) == 2:
                return
            state[n] = 1
            for c in topo.get(n, []):
                if state.get(c) != 1:
                    visit(c)
            state[n] = 2
            seen.append(n)

        for n in sorted(topo):
            visit(n)
        return list(reversed(seen))

    def callers(self, name: str) -> list[str]:
        """Services that call `name` directly."""
        return sorted(n for n, cs in self.topology.items() if name in cs)

    def upstream(self, name: str) -> list[str]:
        """Every service that depends on `name`, directly or not."""
        out: set[str] = set()
        todo = [name]
        while todo:
            for c in self.callers(todo.pop()):
                if c not in out:
                    out.add(c)
                    todo.append(c)
        return sorted(out)

    def of_kind(self, *kinds: str) -> list[str]:
        return [n for n, s in self.services.items() if s.kind in kinds]

    def role(self, role: str) -> str:
        """The service playing `role` (frontend, gateway, cache, db, queue, worker, checkout…)."""
        return self.extra.get(role, role)


def shop_system() -> System:
    """The default web shop: 12 services in namespace `shop`."""
    S, R, C = Service, Route, Call
    services = [
        S("frontend", "edge", 3, (R("GET", "/", 0.35), R("GET", "/product/:id", 0.45),
                                  R("POST", "/cart", 0.2)),
          (C("gateway", 1.0, timeout_s=10.0),), 0.012, 900, 0.0015, 1.0, 180, 512, language="node",
          entry_rps=110.0),
        S("gateway", "gateway", 3, (R("GET", "/api/catalog", 0.58, "catalog"), R("POST", "/api/cart", 0.25, "cart"),
                                    R("POST", "/api/checkout", 0.06, "checkout"), R("POST", "/api/login", 0.11, "auth")),
          (C("auth", 1.0, timeout_s=1.0), C("catalog", 1.0, "route", 5.0), C("cart", 1.0, "route", 5.0),
           C("checkout", 1.0, "route", 8.0)), 0.004, 1500, 0.0012, 1.0, 120, 256, language="envoy"),
        S("auth", "app", 2, (R("POST", "/v1/token/verify", 0.9), R("POST", "/v1/login", 0.1)),
          (C("postgres", 0.15, timeout_s=1.0),), 0.006, 700, 0.0035, 1.5, 220, 512, db_pool_max=20),
        S("catalog", "app", 3, (R("GET", "/v1/products", 0.7), R("GET", "/v1/products/:id", 0.3)),
          (C("kv-cache", 2.0, timeout_s=0.2), C("postgres", 4.0, "miss", 1.0)), 0.018, 600, 0.006, 0.5,
          380, 768, db_pool_max=20, language="python"),
        S("cart", "app", 2, (R("GET", "/v1/cart", 0.6), R("POST", "/v1/cart/items", 0.4)),
          (C("kv-cache", 1.0, timeout_s=0.2), C("postgres", 2.0, "miss", 1.0)), 0.01, 500, 0.004, 1.0, 260,
          512, db_pool_max=10),
        S("checkout", "app", 2, (R("POST", "/v1/checkout", 1.0),),
          (C("cart", 1.0, timeout_s=2.0), C("inventory", 1.0, timeout_s=1.5), C("payments", 1.0, timeout_s=3.0),
           C("queue", 1.0, timeout_s=1.0)), 0.03, 200, 0.02, 1.0, 520, 1024, language="java"),
        S("payments", "app", 2, (R("POST", "/v1/charges", 1.0),), (), 0.12, 150, 0.012, 1.0, 480, 1024,
          language="java"),
        S("inventory", "app", 2, (R("POST", "/v1/reservations", 0.6), R("GET", "/v1/stock/:sku", 0.4)),
          (C("postgres", 2.0, timeout_s=1.0),), 0.012, 300, 0.008, 1.0, 450, 1024, db_pool_max=10,
          language="java"),
        S("kv-cache", "cache", 1, (), (), 0.0008, 20000, 0.00004, 1.0, 2600, 4096, language="redis"),
        S("postgres", "db", 1, (), (), 0.004, 450, 0.004, 4.0, 6000, 8192, language="postgres"),
        S("queue", "queue", 1, (), (), 0.002, 3000, 0.0004, 1.0, 600, 2048, language="rabbitmq"),
        S("worker", "worker", 2, (), (C("postgres", 1.0, timeout_s=2.0),), 0.08, 30, 0.03, 1.0, 300, 768,
          db_pool_max=5, language="python"),
    ]
    return System({s.name: s for s in services})


# Alternative names for a random system; roles stay, names and wiring change.
_NAME_POOLS = {
    "frontend": ["web", "storefront", "webapp", "ui"],
    "gateway": ["api-gateway", "edge-proxy", "ingress-api", "bff"],
    "auth": ["identity", "accounts", "sessions", "users"],
    "catalog": ["products", "search", "listings", "menu"],
    "cart": ["basket", "bag", "orders-draft", "wishlist"],
    "checkout": ["orders", "purchase", "order-service", "billing"],
    "payments": ["payment-gw", "charges", "psp-adapter", "wallet"],
    "inventory": ["stock", "warehouse", "fulfilment", "availability"],
    "kv-cache": ["redis", "memcached", "session-cache", "cache"],
    "postgres": ["orders-db", "mysql", "main-db", "pg"],
    "queue": ["rabbitmq", "events-bus", "jobs-queue", "mq"],
    "worker": ["order-worker", "mailer", "jobs", "consumer"],
}


def random_system(seed: int) -> System:
    """A shop-shaped system with other service names, sizes and fanouts, chosen by `seed`."""
    rng = np.random.default_rng([seed, 7919])
    base = shop_system()
    names = {k: str(rng.choice(v)) for k, v in _NAME_POOLS.items()}

    def rn(n: str | None) -> str | None:
        return None if n is None else names.get(n, n)

    services = {}
    for s in base.services.values():
        jitter = float(rng.uniform(0.75, 1.3))
        calls = tuple(Call(str(rn(c.target)), round(c.fanout * float(rng.uniform(0.7, 1.4)), 2), c.mode, c.timeout_s)
                      for c in s.calls)
        routes = tuple(Route(r.method, r.path.replace(s.name, str(rn(s.name))), r.share, rn(r.via)) for r in s.routes)
        replicas = s.replicas if s.kind in ("cache", "db", "queue") else int(rng.integers(2, 4))
        services[str(rn(s.name))] = Service(
            str(rn(s.name)), s.kind, replicas, routes, calls, s.self_latency_s * jitter, s.capacity_rps,
            s.cpu_per_req * jitter, s.cpu_limit, s.mem_base_mb, s.mem_limit_mb, s.db_pool_max, s.language,
            s.entry_rps * float(rng.uniform(0.6, 1.6)))
    return System(services, name=f"shop-variant-{seed}", extra={k: v for k, v in names.items()})
