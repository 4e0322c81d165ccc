"""The simulation engine: traffic, propagation of faults along the call graph, pods.

Everything is a numpy array over the scrape grid (`STEP_S` seconds). The engine first plans
pods (rollouts, OOM restarts, autoscaling), then propagates load callers-first and latency and
errors callees-first, twice, so retries caused by downstream failures add load.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from incidentbook.scenarios.topology import HTTP_KINDS, System

STEP_S = 15
SIGMA = 0.45  # log-normal spread of request latency


def phi(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7), vectorised."""
    z = np.asarray(x, dtype=float) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * np.abs(z))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(z) * erf)


@dataclass
class FaultSpec:
    """A fault to inject: its kind, the service it hits, its onset index and parameters."""

    kind: str
    target: str
    onset: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pod:
    """One pod's life inside the window (indices on the scrape grid)."""

    name: str
    service: str
    start: int
    end: int
    version: str
    node: str
    restarts: list[tuple[int, int]] = field(default_factory=list)  # (index, down steps)
    restarts_before: int = 0
    oom: list[int] = field(default_factory=list)
    mem: np.ndarray | None = None

    def alive(self, T: int) -> np.ndarray:
        m = np.zeros(T, dtype=bool)
        m[self.start:self.end] = True
        return m

    def serving(self, T: int) -> np.ndarray:
        m = self.alive(T)
        for i, d in self.restarts:
            m[i:i + d] = False
        return m


@dataclass
class Mods:
    """Per-service knobs that faults turn (all arrays over time)."""

    T: int
    entry_mult: np.ndarray
    hit_ratio: dict[str, np.ndarray] = field(default_factory=dict)
    own_err: dict[str, np.ndarray] = field(default_factory=dict)
    lat_mult: dict[str, np.ndarray] = field(default_factory=dict)
    cpu_mult: dict[str, np.ndarray] = field(default_factory=dict)
    extra_db: dict[str, np.ndarray] = field(default_factory=dict)
    timeout: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    edge_fail: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    retries: dict[tuple[str, str], int] = field(default_factory=dict)
    pool_leak: dict[str, np.ndarray] = field(default_factory=dict)
    abuse_rps: np.ndarray | None = None
    abuse_route: str = ""
    rate_limit: float = 0.0
    evictions: dict[str, np.ndarray] = field(default_factory=dict)

    def arr(self, d: dict, key: Any, fill: float) -> np.ndarray:
        if key not in d:
            d[key] = np.full(self.T, fill)
        return d[key]


@dataclass
class Sim:
    """The simulated signals of one run, read by the metric, log and alert renderers."""

    system: System
    t: np.ndarray  # unix seconds
    rng: np.random.Generator
    fault: FaultSpec
    pods: dict[str, list[Pod]]
    load: dict[str, np.ndarray]
    route_load: dict[str, np.ndarray]  # service -> [routes, T] requests/s
    codes: dict[str, dict[str, np.ndarray]]  # service -> code -> [routes, T] fraction
    comps: dict[str, list[tuple[np.ndarray, np.ndarray]]]  # latency mixture (weight, median)
    cpu_demand: dict[str, np.ndarray]  # cores per pod
    throttle: dict[str, np.ndarray]
    util: dict[str, np.ndarray]
    db_lat: np.ndarray
    db_load: dict[str, np.ndarray]  # db client -> queries/s
    pool_in_use: dict[str, np.ndarray]  # per pod average
    pool_wait: dict[str, np.ndarray]  # seconds waited per second per pod
    queue_depth: np.ndarray
    queue_in: np.ndarray
    queue_out: np.ndarray
    mods: Mods
    timeouts: dict[tuple[str, str], np.ndarray]
    changes: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def T(self) -> int:
        return len(self.t)


def ramp(T: int, start: int, steps: int, level: float = 1.0) -> np.ndarray:
    """0 before `start`, rising linearly to `level` over `steps`, then flat."""
    x = (np.arange(T) - start) / max(steps, 1)
    return np.clip(x, 0.0, 1.0) * level


def _suffix(rng: np.random.Generator, n: int) -> str:
    alphabet = np.array(list("bcdfghjklmnpqrstvwxz2456789"))
    return "".join(rng.choice(alphabet, n))


def _rs_hash(rng: np.random.Generator) -> str:
    return "".join(rng.choice(np.array(list(string.hexdigits.lower()[:16])), 9))


def plan_pods(system: System, T: int, rng: np.random.Generator, rollouts: dict[str, list[tuple[int, str]]],
              scale_ups: dict[str, tuple[int, int]], versions: dict[str, str]) -> dict[str, list[Pod]]:
    """Pods per service: initial replicas, replaced on rollouts, added by autoscaling."""
    nodes = [f"ip-10-0-{a}-{b}.ec2.internal" for a, b in zip(rng.integers(1, 40, 6), rng.integers(2, 250, 6))]
    pods: dict[str, list[Pod]] = {}
    for name, svc in system.services.items():
        stateful = svc.kind in ("cache", "db", "queue")
        out: list[Pod] = []
        rs = _rs_hash(rng)

        def pname(rs: str, i: int, name: str = name, stateful: bool = stateful) -> str:
            return f"{name}-{i}" if stateful else f"{name}-{rs}-{_suffix(rng, 5)}"

        for i in range(svc.replicas):
            out.append(Pod(pname(rs, i), name, 0, T, versions[name], str(rng.choice(nodes)),
                           restarts_before=int(rng.choice([0, 0, 0, 1]))))
        for idx, ver in rollouts.get(name, []):
            rs = _rs_hash(rng)
            old = [p for p in out if p.end == T]
            for k, p in enumerate(old):
                at = min(T - 1, idx + 2 * k + 1)  # maxSurge 1: one pod every 30 s
                out.append(Pod(pname(rs, k), name, at, T, ver, str(rng.choice(nodes))))
                p.end = min(T, at + 2)
        if name in scale_ups:
            idx, extra = scale_ups[name]
            for k in range(extra):
                out.append(Pod(pname(rs, svc.replicas + k), name, min(T - 1, idx + 4 * k), T,
                               versions[name], str(rng.choice(nodes))))
        pods[name] = out
    return pods


def simulate_memory(system: System, pods: dict[str, list[Pod]], T: int, rng: np.random.Generator,
                    leak: dict[str, tuple[int, float]], load_mult: np.ndarray) -> None:
    """Working-set memory per pod; a leak drives it to the limit, which OOM-kills the container."""
    for name, plist in pods.items():
        svc = system.services[name]
        limit = svc.mem_limit_mb
        for p in plist:
            base = svc.mem_base_mb * float(rng.uniform(0.9, 1.1))
            wobble = np.cumsum(rng.normal(0, 0.6, T))
            wobble -= np.linspace(0, wobble[-1], T)
            mem = base * (1 + 0.05 * (load_mult - 1)) + wobble
            if name in leak and p.version == leak[name][2]:
                start, slope = leak[name][0], leak[name][1] * float(rng.uniform(0.8, 1.25))
                cur = max(start, p.start)
                extra = np.zeros(T)
                i = cur
                while i < min(T, p.end):
                    grow = slope * STEP_S * np.arange(1, T - i + 1)
                    over = np.nonzero(base + grow >= limit)[0]
                    if len(over) == 0 or i + over[0] >= min(T, p.end):
                        extra[i:] = grow[: T - i]
                        break
                    k = i + int(over[0])
                    extra[i:k] = grow[: k - i]
                    down = 2 + 2 * min(len(p.restarts), 3)  # CrashLoopBackOff grows: 30 s, 60 s, ...
                    p.restarts.append((k, down))
                    p.oom.append(k)
                    extra[k:k + down] = 0
                    i = k + down
                mem = mem + extra
            p.mem = np.clip(mem, 0.3 * base, limit) * 1024 * 1024


def _mixture_tail(comps: list[tuple[np.ndarray, np.ndarray]], tau: np.ndarray | float) -> np.ndarray:
    """P(latency > tau) for a log-normal mixture."""
    out = 0.0
    for w, m in comps:
        out = out + w * (1 - phi((np.log(tau) - np.log(m)) / SIGMA))
    return np.asarray(out)


def _mixture_mean(comps: list[tuple[np.ndarray, np.ndarray]], cap: np.ndarray | float) -> np.ndarray:
    out = 0.0
    for w, m in comps:
        out = out + w * np.minimum(m * np.exp(SIGMA ** 2 / 2), cap)
    return np.asarray(out)


def propagate(system: System, T: int, entry: dict[str, np.ndarray], mods: Mods, pods: dict[str, list[Pod]],
              rng: np.random.Generator, fault: FaultSpec, passes: int = 2) -> dict[str, Any]:
    """Load callers-first, then latency/errors callees-first; retries feed back on the next pass."""
    order = system.order()
    svcs = system.services
    serving = {n: np.sum([p.serving(T) for p in ps], axis=0).astype(float) for n, ps in pods.items()}
    nominal = {n: float(s.replicas) for n, s in svcs.items()}
    cache_of = {n: next((c.target for c in s.calls if svcs[c.target].kind == "cache"), None)
                for n, s in svcs.items()}
    queue_name = next(iter(system.of_kind("queue")), None)
    fail_to: dict[tuple[str, str], np.ndarray] = {}
    res: dict[str, Any] = {}
    zeros = np.zeros(T)
    for _ in range(passes):
        load = {n: entry.get(n, zeros).copy() for n in svcs}
        route_load: dict[str, np.ndarray] = {}
        db_load: dict[str, np.ndarray] = {}
        for n in order:
            s = svcs[n]
            L = load[n]
            if s.kind in HTTP_KINDS:
                passed = zeros
                if s.kind == "app" and mods.abuse_rps is not None and n == _abuse_backend(system, mods):
                    passed = mods.abuse_rps * (1 - mods.rate_limit)
                rl = np.outer([r.share for r in s.routes], L - passed) if s.routes else L[None, :]
                if n in system.of_kind("gateway") and mods.abuse_rps is not None:
                    for k, r in enumerate(s.routes):
                        if r.path == mods.abuse_route:
                            rl[k] += mods.abuse_rps
                if passed is not zeros:
                    for k, r in enumerate(s.routes):
                        if "login" in r.path:
                            rl[k] += passed
                route_load[n] = rl
                L = rl.sum(axis=0)
                load[n] = L
            if s.kind == "worker":
                continue
            for c in s.calls:
                key = (n, c.target)
                retry = 1.0 + mods.retries.get(key, 0) * fail_to.get(key, zeros)
                through = 1.0 - mods.edge_fail.get(key, zeros)
                if c.mode == "always":
                    q = L * c.fanout
                elif c.mode == "route":
                    idx = [k for k, r in enumerate(s.routes) if r.via == c.target]
                    q = route_load[n][idx].sum(axis=0) * c.fanout if idx else zeros
                    if svcs[c.target].kind == "app" and mods.abuse_rps is not None and \
                            c.target == _abuse_backend(system, mods):
                        q = q - sum(route_load[n][k] for k, r in enumerate(s.routes)
                                    if r.path == mods.abuse_route) * mods.rate_limit
                else:  # miss
                    cache = cache_of[n]
                    hr = mods.hit_ratio.get(cache, np.full(T, 0.93)) if cache else np.zeros(T)
                    q = L * c.fanout * (1 - hr)
                q = q * retry * through
                if svcs[c.target].kind == "db":
                    q = q + L * mods.extra_db.get(n, zeros)
                    db_load[n] = db_load.get(n, zeros) + q
                load[c.target] = load[c.target] + q
        # queue and worker
        qdepth = np.zeros(T)
        q_out = np.zeros(T)
        if queue_name:
            q_in = load[queue_name]
            workers = system.of_kind("worker")
            cap = sum(svcs[w].capacity_rps * serving[w] / nominal[w] / mods.arr(mods.lat_mult, w, 1.0) for w in workers) \
                if workers else np.full(T, 1e9)
            depth = float(rng.uniform(20, 60))
            for i in range(T):
                avail = q_in[i] + depth / STEP_S
                out = min(avail, cap[i])
                depth = max(0.0, depth + (q_in[i] - out) * STEP_S)
                qdepth[i] = depth
                q_out[i] = out
            for w in workers:
                share = svcs[w].capacity_rps * serving[w] / nominal[w]
                load[w] = q_out * share / np.maximum(sum(svcs[x].capacity_rps * serving[x] / nominal[x]
                                                           for x in workers), 1e-9)
                for c in svcs[w].calls:
                    q = load[w] * c.fanout
                    if svcs[c.target].kind == "db":
                        db_load[w] = db_load.get(w, zeros) + q
                    load[c.target] = load[c.target] + q
            res["queue_in"] = q_in
        # latency and errors, callees first
        comps: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        codes: dict[str, dict[str, np.ndarray]] = {}
        util: dict[str, np.ndarray] = {}
        cpu_demand: dict[str, np.ndarray] = {}
        throttle: dict[str, np.ndarray] = {}
        err_total: dict[str, np.ndarray] = {}
        pool_in_use: dict[str, np.ndarray] = {}
        pool_wait: dict[str, np.ndarray] = {}
        timeouts: dict[tuple[str, str], np.ndarray] = {}
        db_lat = np.full(T, 0.004)
        for n in reversed(order):
            s = svcs[n]
            live = np.maximum(serving[n], 0.5)
            cpu_mult = mods.cpu_mult.get(n, np.ones(T))
            demand = load[n] * s.cpu_per_req * cpu_mult / live + 0.02
            cpu_demand[n] = demand
            uc = demand / s.cpu_limit
            thr = np.clip((uc - 0.55) / 0.45, 0, 1) ** 1.3
            throttle[n] = thr
            u = np.clip(load[n] / (s.capacity_rps * live / nominal[n]), 0, 0.97)
            util[n] = u
            base = s.self_latency_s * mods.lat_mult.get(n, np.ones(T)) * (1 + 3.5 * thr)
            if s.kind == "db":
                # a saturated database queues work (latency plateaus) rather than rejecting it
                med = base / (1 - np.minimum(u, 0.93)) ** 1.5
                db_lat = med
            else:
                med = base * (1 + 0.5 * u / (1 - u))
            e500 = mods.own_err.get(n, zeros) + 0.0008  # background failures: a few per 1000 requests
            overload = np.clip((u - 0.93) * 6, 0, 0.5) if s.kind != "db" else zeros
            e503 = overload + _restart_blips(pods[n], T, serving[n])
            e504 = zeros.copy()
            shift = np.zeros(T)
            miss_shift = np.zeros(T)
            miss_w = np.zeros(T)
            route_extra: dict[str, tuple[np.ndarray, np.ndarray, list]] = {}
            for c in s.calls:
                key = (n, c.target)
                tau = mods.timeout.get(key, np.full(T, c.timeout_s))
                timeouts[key] = tau
                cc = comps.get(c.target, [(np.ones(T), np.full(T, 0.001))])
                p_to = np.clip(_mixture_tail(cc, tau), 0, 1)
                fail_to[key] = p_to
                ce = np.clip(err_total.get(c.target, zeros) + mods.edge_fail.get(key, zeros), 0, 1)
                mean = _mixture_mean(cc, tau)
                if c.mode == "always":
                    shift = shift + c.fanout * mean
                    if svcs[c.target].kind in ("cache",):
                        continue  # cache errors fall back to the database
                    e500 = e500 + (1 - e500) * np.minimum(1, ce * min(c.fanout, 1.0))
                    e504 = e504 + (1 - e504) * np.minimum(1, p_to * min(c.fanout, 1.0))
                elif c.mode == "miss":
                    cache = cache_of[n]
                    hr = mods.hit_ratio.get(cache, np.full(T, 0.93)) if cache else np.zeros(T)
                    miss_w = 1 - hr
                    miss_shift = c.fanout * mean
                    e504 = e504 + miss_w * np.minimum(1, p_to * c.fanout)
                else:
                    route_extra[c.target] = (ce, p_to, [(w, np.minimum(m, tau)) for w, m in cc])
            # database pool (Little's law), per pod
            if s.db_pool_max and n in db_load:
                conc = db_load[n] / live * db_lat * 1.3 + 0.4
                leaked = mods.pool_leak.get(n, zeros)
                avail = np.maximum(s.db_pool_max - leaked, 0.0)
                starved = np.clip(1 - avail / np.maximum(conc, 1e-9), 0, 1)
                pool_in_use[n] = np.minimum(conc, avail) + leaked
                wait = np.clip(starved * 1.0, 0, 1.0)
                pool_wait[n] = wait * load[n] / live
                e500 = e500 + (1 - e500) * np.clip(starved * 1.1, 0, 1)
                med = med + wait * 0.8
            base_comps: list[tuple[np.ndarray, np.ndarray]] = []
            core = med + shift
            if np.any(miss_w > 0):
                base_comps = [(1 - miss_w, core), (miss_w, core + miss_shift)]
            else:
                base_comps = [(np.ones(T), core)]
            route_codes: dict[str, list[np.ndarray]] = {k: [] for k in ("500", "503", "504")}
            out_comps: list[tuple[np.ndarray, np.ndarray]] = []
            routes = s.routes if s.kind in HTTP_KINDS and s.routes else ()
            rl = route_load.get(n)
            tot = rl.sum(axis=0) if rl is not None else np.ones(T)
            for k, r in enumerate(routes):
                share = rl[k] / np.maximum(tot, 1e-9) if rl is not None else np.full(T, r.share)
                r500, r503, r504 = e500.copy(), e503.copy(), e504.copy()
                if r.via and r.via in route_extra:
                    ce, p_to, cc = route_extra[r.via]
                    r500 = r500 + (1 - r500) * ce
                    r504 = r504 + (1 - r504) * p_to
                    for w, m in cc:
                        for bw, bm in base_comps:
                            out_comps.append((share * w * bw, bm + m))
                else:
                    for bw, bm in base_comps:
                        out_comps.append((share * bw, bm))
                route_codes["500"].append(r500)
                route_codes["503"].append(r503)
                route_codes["504"].append(r504)
            if not routes:
                out_comps = base_comps
                for k, v in (("500", e500), ("503", e503), ("504", e504)):
                    route_codes[k].append(v)
            cd = {k: np.clip(np.array(v), 0, 1) for k, v in route_codes.items()}
            total = cd["500"] + cd["503"] + cd["504"]
            over = np.maximum(total, 1.0)
            cd = {k: v / over for k, v in cd.items()}
            comps[n] = [(w, np.maximum(m, 1e-4)) for w, m in out_comps]
            codes[n] = cd
            if rl is not None:
                shares = rl / np.maximum(tot, 1e-9)
                err_total[n] = np.clip(((cd["500"] + cd["503"] + cd["504"]) * shares).sum(axis=0), 0, 1)
            else:
                err_total[n] = np.clip(cd["500"][0] + cd["503"][0] + cd["504"][0], 0, 1)
        res.update(load=load, route_load=route_load, codes=codes, comps=comps, util=util, cpu_demand=cpu_demand,
                   throttle=throttle, db_lat=db_lat, db_load=db_load, pool_in_use=pool_in_use,
                   pool_wait=pool_wait, queue_depth=qdepth, queue_out=q_out, timeouts=timeouts,
                   err_total=err_total)
    res.setdefault("queue_in", np.zeros(T))
    return res


def _abuse_backend(system: System, mods: Mods) -> str:
    gw = system.services[system.of_kind("gateway")[0]]
    for r in gw.routes:
        if r.path == mods.abuse_route and r.via:
            return r.via
    return ""


def _restart_blips(pods: list[Pod], T: int, serving: np.ndarray) -> np.ndarray:
    """503s while a dying pod is still in the endpoints (until its readiness probe fails)."""
    out = np.zeros(T)
    for p in pods:
        for i, _d in p.restarts:
            out[i:i + 2] += 1.0 / max(float(serving[max(i - 1, 0)]), 1.0)
    return np.clip(out, 0, 1)
