"""Turn a fault spec into a simulation: traffic shape, fault knobs, pods, changes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from incidentbook.scenarios.simulate import (
    STEP_S,
    FaultSpec,
    Mods,
    Sim,
    plan_pods,
    propagate,
    ramp,
    simulate_memory,
)
from incidentbook.scenarios.topology import System

AUTHORS = ["maria.k", "dev.patel", "j.okafor", "lena.h", "sam.w", "ci-bot", "argo-cd"]
ABUSE_CLIENTS = ["185.220.101.34", "185.220.101.47", "45.155.205.233", "45.155.205.19", "193.42.33.7"]


def _version(rng: np.random.Generator) -> str:
    return f"v{int(rng.integers(1, 4))}.{int(rng.integers(0, 40))}.{int(rng.integers(0, 12))}"


def _bump(v: str) -> str:
    major, minor, patch = v[1:].split(".")
    return f"v{major}.{int(minor) + 1}.0"


def diurnal(t: np.ndarray) -> np.ndarray:
    """Traffic shape over the day (UTC): low at night, peak in the evening."""
    h = (t % 86400) / 3600.0
    return 0.62 + 0.38 * np.sin(2 * np.pi * (h - 13.0) / 24.0) + 0.08 * np.sin(4 * np.pi * (h - 10.0) / 24.0)


def simulate(system: System, fault: FaultSpec, t: np.ndarray, seed: int) -> Sim:
    """Run the simulation of `system` with `fault` over the scrape grid `t` (unix seconds)."""
    rng = np.random.default_rng([seed, 104729])
    T = len(t)
    o = fault.onset
    svcs = system.services
    versions = {n: _version(rng) for n in svcs}
    ar1 = np.zeros(T)
    eps = rng.normal(0, 0.012, T)
    for i in range(1, T):
        ar1[i] = 0.97 * ar1[i - 1] + eps[i]
    entry_shape = diurnal(t) / diurnal(t[:1])[0] * np.exp(ar1)
    mods = Mods(T=T, entry_mult=np.ones(T))
    rollouts: dict[str, list[tuple[int, str]]] = {}
    scale_ups: dict[str, tuple[int, int]] = {}
    leak: dict[str, tuple[int, float, str]] = {}
    changes: list[dict[str, Any]] = []
    notes: dict[str, Any] = {}
    X = fault.target
    p = fault.params
    kind = fault.kind
    gw = system.of_kind("gateway")[0]

    def ts(i: int) -> pd.Timestamp:
        return pd.Timestamp(float(t[min(max(i, 0), T - 1)]) + float(rng.uniform(0, STEP_S)), unit="s", tz="UTC")

    def deploy(svc: str, at: int, note: str, author: str | None = None) -> str:
        new = _bump(versions[svc]) if svc not in rollouts else _bump(rollouts[svc][-1][1])
        old = versions[svc] if svc not in rollouts else rollouts[svc][-1][1]
        rollouts.setdefault(svc, []).append((at, new))
        changes.append({"timestamp": ts(at - 1), "service": svc, "kind": "deploy",
                        "description": f"{svc} {old} -> {new}: {note}",
                        "author": author or str(rng.choice(AUTHORS)),
                        "details": {"from": old, "to": new, "image": f"registry.internal/shop/{svc}:{new}",
                                    "strategy": "RollingUpdate", "pipeline": f"deploy-{int(rng.integers(4000, 9000))}"}})
        return new

    if kind == "bad_deploy":
        notes["new_version"] = deploy(X, o, str(rng.choice(["refactor discount calculation", "migrate to new pricing client",
                                                             "bump serializer library", "null-safety cleanup in handlers"])))
        notes["err_level"] = float(p.get("error_rate", rng.uniform(0.18, 0.35)))
    elif kind == "cache_failure":
        mods.hit_ratio[X] = 0.93 - ramp(T, o, 3, float(p.get("drop", rng.uniform(0.78, 0.86))))
        notes["maxmemory"] = "64mb"
    elif kind == "memory_leak":
        ver = deploy(X, o, str(rng.choice(["add in-process response cache", "upgrade HTTP client",
                                          "stream cart events to analytics"])))
        s = svcs[X]
        leak[X] = (o, (s.mem_limit_mb - s.mem_base_mb) / float(p.get("minutes_to_oom", rng.uniform(11, 15)) * 60), ver)
    elif kind == "db_pool_exhaustion":
        mods.pool_leak[X] = ramp(T, o, int(p.get("minutes_to_exhaust", rng.uniform(9, 13)) * 60 / STEP_S),
                                 float(svcs[X].db_pool_max))
    elif kind == "cpu_throttling":
        mods.cpu_mult[X] = 1 + ramp(T, o, 4, float(p.get("cpu_factor", rng.uniform(2.6, 3.2))) - 1)
        notes["neighbour"] = f"reindex-{int(rng.integers(10000, 99999))}"
    elif kind == "slow_dependency":
        mods.lat_mult[X] = 1 + ramp(T, o, 6, float(p.get("slowdown", rng.uniform(140, 200))))
        for c in system.callers(X):
            mods.retries[(c, X)] = 2
    elif kind == "abuse":
        route = next(r for r in svcs[X].routes if "login" in r.path)
        mods.abuse_route = route.path
        base = 110.0 * route.share
        mods.abuse_rps = ramp(T, o, 4, float(p.get("factor", rng.uniform(8, 12))) * base) * (1 + 0.1 * rng.standard_normal(T))
        mods.abuse_rps = np.clip(mods.abuse_rps, 0, None)
        mods.rate_limit = 0.6
        backend = route.via or ""
        notes["clients"] = list(ABUSE_CLIENTS[: int(rng.integers(3, 6))])
        if backend:
            scale_ups[backend] = (o + 16, 1)  # the autoscaler reacts to the CPU
            mods.own_err[backend] = ramp(T, o + 4, 6, 0.09)
            mods.cpu_mult[backend] = 1 + ramp(T, o, 4, 1.8)
            mods.lat_mult[backend] = 1 + ramp(T, o, 4, 1.5)
    elif kind == "config_change":
        callee = next((c.target for c in svcs[X].calls if c.mode == "route" and svcs[c.target].kind == "app"
                       and c.target == system.role("checkout")), None) or \
            next((c.target for c in svcs[X].calls if c.target == system.role("payments")), None) or \
            next(c.target for c in svcs[X].calls if svcs[c.target].kind == "app")
        old = next(c.timeout_s for c in svcs[X].calls if c.target == callee)
        new = float(p.get("timeout_s", 0.25))
        mods.timeout[(X, callee)] = np.where(np.arange(T) >= o, new, old)
        changes.append({"timestamp": ts(o - 1), "service": X, "kind": "config",
                        "description": f"{X}: upstream timeout for {callee} {old:g}s -> {int(new * 1000)}ms",
                        "author": str(rng.choice(AUTHORS)),
                        "details": {"configmap": f"{X}-config", "key": f"upstreams.{callee}.timeout",
                                    "from": f"{old:g}s", "to": f"{int(new * 1000)}ms",
                                    "ticket": f"OPS-{int(rng.integers(1000, 4000))}"}})
        notes["callee"] = callee
    elif kind == "feature_flag":
        pct = int(p.get("rollout_pct", rng.choice([25, 30, 35])))
        flag = str(p.get("flag", "recs.inline_recommendations"))
        mods.extra_db[X] = ramp(T, o, 2, 14.0 * pct / 100)
        mods.lat_mult[X] = 1 + ramp(T, o, 2, 20.0 * pct / 30)
        mods.cpu_mult[X] = 1 + ramp(T, o, 2, 0.6)
        changes.append({"timestamp": ts(o - 1), "service": X, "kind": "flag",
                        "description": f"feature flag {flag} enabled for {pct}% of users",
                        "author": str(rng.choice(AUTHORS)),
                        "details": {"flag": flag, "from": "off", "to": f"{pct}%", "provider": "unleash"}})
        notes["flag"] = flag
    elif kind == "cert_expiry":
        for c in system.callers(X):
            mods.edge_fail[(c, X)] = np.where(np.arange(T) >= o, 1.0, 0.0)
        notes["expiry"] = float(t[o])
    elif kind == "disk_full":
        # A config change breaks WAL archiving: segments are kept until archived, so the data
        # volume fills at the write rate; once it is full, writes fail and callers see 5xx.
        script = str(rng.choice(["/opt/pg/archive-wal.sh %p", "wal-g wal-push --config /etc/wal-g/s3.yaml %p",
                                 "pgbackrest --stanza=main archive-push %p"]))
        changes.append({"timestamp": ts(o - 1), "service": X, "kind": "config",
                        "description": f"{X}: archive_command 'wal-g wal-push %p' -> '{script}'",
                        "author": str(rng.choice(AUTHORS)),
                        "details": {"configmap": f"{X}-config", "key": "postgresql.conf archive_command",
                                    "from": "wal-g wal-push %p", "to": script,
                                    "ticket": f"OPS-{int(rng.integers(1000, 4000))}"}})
        free0 = float(p.get("free_share", rng.uniform(0.32, 0.45)))
        full_at = o + max(int((T - o) * float(p.get("fill_share", rng.uniform(0.55, 0.65)))), 4)
        mods.own_err[X] = ramp(T, full_at, 2, float(p.get("write_errors", rng.uniform(0.3, 0.45))))
        notes["disk"] = {"capacity_gib": 100, "free_share": free0, "full_at": full_at,
                         "pvc": f"data-{X}-0", "archive_command": script}
    elif kind == "planned_load":
        mods.entry_mult = 1 + ramp(T, o, 20, float(p.get("factor", rng.uniform(1.4, 1.8))))
        for k, svc in enumerate([system.role("frontend"), gw, system.role("catalog")]):
            if svc in svcs:
                scale_ups[svc] = (o + 12 + 4 * k, 2)
    # innocent changes (red herrings), never on the faulty service
    others = [n for n, s in svcs.items() if n != X and s.kind in ("edge", "gateway", "app", "worker")]
    n_herrings = int(p.get("herrings", rng.integers(1, 4)))
    for _ in range(n_herrings):
        svc = str(rng.choice(others))
        at = int(np.clip(o + rng.integers(-int(40 * 60 / STEP_S), int(8 * 60 / STEP_S)), 8, T - 8))
        what = rng.integers(0, 3)
        if what == 0 and svc not in rollouts:
            deploy(svc, at, str(rng.choice(["update copy on product page", "bump base image (CVE patch)",
                                            "add tracing spans", "tidy logging", "dependency updates"])))
        elif what == 1:
            key, frm, to = [("log.level", "info", "debug"), ("http.keepalive_timeout", "60s", "75s"),
                            ("metrics.histogram_buckets", "default", "fine")][int(rng.integers(0, 3))]
            changes.append({"timestamp": ts(at), "service": svc, "kind": "config",
                            "description": f"{svc}: {key} {frm} -> {to}", "author": str(rng.choice(AUTHORS)),
                            "details": {"configmap": f"{svc}-config", "key": key, "from": frm, "to": to}})
        else:
            flag = str(rng.choice(["ui.new_badge", "search.typo_tolerance", "checkout.gift_wrap", "promo.banner_v2"]))
            changes.append({"timestamp": ts(at), "service": svc, "kind": "flag",
                            "description": f"feature flag {flag} enabled for 100% of users",
                            "author": str(rng.choice(AUTHORS)),
                            "details": {"flag": flag, "from": "off", "to": "100%", "provider": "unleash"}})
    pods = plan_pods(system, T, rng, rollouts, scale_ups, versions)
    if kind == "cache_failure":
        pods[X][0].restarts.append((o, 2))
    simulate_memory(system, pods, T, rng, leak, mods.entry_mult)
    if kind == "bad_deploy":
        new = notes["new_version"]
        serving = [pod.serving(T) for pod in pods[X]]
        frac = np.sum([m for m, pod in zip(serving, pods[X]) if pod.version == new], axis=0) / \
            np.maximum(np.sum(serving, axis=0), 1)
        mods.own_err[X] = frac * notes["err_level"]
    edge = system.of_kind("edge")
    entry = {e: svcs[e].entry_rps * entry_shape * mods.entry_mult for e in edge}
    res = propagate(system, T, entry, mods, pods, rng, fault)
    # 4xx the propagation does not model: rate limiting and failed logins
    for n in svcs:
        if n in res["codes"]:
            nr = res["codes"][n]["500"].shape[0]
            res["codes"][n]["404"] = np.full((nr, T), 0.004)
            res["codes"][n]["429"] = np.zeros((nr, T))
            res["codes"][n]["401"] = np.zeros((nr, T))
    if kind == "abuse":
        rl = res["route_load"][X]
        for k, r in enumerate(svcs[X].routes):
            if r.path == mods.abuse_route:
                res["codes"][X]["429"][k] = mods.abuse_rps * mods.rate_limit / np.maximum(rl[k], 1e-9)
        backend = _backend(system, mods)
        if backend:
            rlb = res["route_load"][backend]
            for k, r in enumerate(svcs[backend].routes):
                if "login" in r.path:
                    res["codes"][backend]["401"][k] = 0.9 * mods.abuse_rps * (1 - mods.rate_limit) / np.maximum(rlb[k], 1e-9)
    changes.sort(key=lambda c: c["timestamp"])
    return Sim(system=system, t=t, rng=rng, fault=fault, pods=pods, load=res["load"], route_load=res["route_load"],
               codes=res["codes"], comps=res["comps"], cpu_demand=res["cpu_demand"], throttle=res["throttle"],
               util=res["util"], db_lat=res["db_lat"], db_load=res["db_load"], pool_in_use=res["pool_in_use"],
               pool_wait=res["pool_wait"], queue_depth=res["queue_depth"], queue_in=res["queue_in"],
               queue_out=res["queue_out"], mods=mods, timeouts=res["timeouts"], changes=changes,
               notes={**notes, "versions": versions, "rollouts": rollouts, "scale_ups": scale_ups,
                      "err_total": res["err_total"]})


def _backend(system: System, mods: Mods) -> str:
    gw = system.services[system.of_kind("gateway")[0]]
    return next((r.via or "" for r in gw.routes if r.path == mods.abuse_route), "")
