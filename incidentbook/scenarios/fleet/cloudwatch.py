"""The CloudWatch / X-Ray shaped variant: per node `latency` (Average, p50, p90, p95, p99),
`requests` (Sum) and `availability` (percent) every minute, plus the call graph; no alerts.

Calls to managed services show up as client-side nodes named `<server>_remote` (what the caller
measured), next to the server node when the server is one of ours. The bundle is built through
`bundle import --format long`'s code path, so it is shaped like an imported export.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from incidentbook.errors import NotFound
from incidentbook.telemetry.bundle import iso
from incidentbook.telemetry.importers import build_long_form_bundle

STEP_S = 60
CW_SCENARIOS = {
    "fleet-cw-latency": ("slow_dependency", "one node's latency rises (a slow query, a saturated host); its callers' latency follows"),
    "fleet-cw-errors": ("error_injection", "one node starts failing a share of its requests; availability drops up its call chain"),
}
_WORDS = ("catalog", "cart", "checkout", "pricing", "search", "profile", "orders", "payments", "ledger", "inventory",
          "shipping", "reviews", "media", "notify", "session", "quotes", "offers", "ratings", "wishlist", "tax")
_QUANTILE_Z = {"p50": 0.0, "p90": 1.2816, "p95": 1.6449, "p99": 2.3263}


def _graph(rng: np.random.Generator) -> tuple[list[str], dict[str, list[str]], str]:
    """A call graph of 9-14 services under one front node, plus `<server>_remote` client nodes."""
    n = int(rng.integers(9, 15))
    names = list(rng.choice(_WORDS, n - 1, replace=False))
    front = str(rng.choice(("web-frontend", "storefront", "portal")))
    nodes = [front] + [f"{w}{str(rng.choice(['', '-svc', '-api']))}" for w in names]
    topo: dict[str, list[str]] = {x: [] for x in nodes}
    for i, x in enumerate(nodes[1:], 1):
        parent = nodes[int(rng.integers(0, max(1, min(i, 4 if i < 6 else i))))]
        topo[parent].append(x)
    leaves = [x for x in nodes if not topo[x]]
    # a few leaves are called through a client-side node as X-Ray draws managed resources
    for leaf in leaves[: int(rng.integers(1, 3))]:
        caller = next(k for k, v in topo.items() if leaf in v)
        remote = f"{leaf}_remote"
        topo[caller] = [remote if c == leaf else c for c in topo[caller]]
        topo[remote] = [leaf]
    return list(topo), topo, front


def generate_cloudwatch(name: str, out_dir: str | Path, seed: int = 0) -> Any:
    """Generate `fleet-cw-*` scenario `name` into `out_dir`; returns a FleetGenerated."""
    from incidentbook.scenarios.fleet.catalog import FleetGenerated

    if name not in CW_SCENARIOS:
        raise NotFound(f"no CloudWatch-shaped scenario named {name!r}; known: {', '.join(CW_SCENARIOS)}")
    kind, _ = CW_SCENARIOS[name]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), 61])
    nodes, topo, front = _graph(rng)
    T = int(rng.integers(150, 241))
    t0 = pd.Timestamp("2026-05-04T00:00:00Z") + pd.Timedelta(days=int(rng.integers(0, 30)), hours=int(rng.integers(0, 23)))
    t = t0.timestamp() + STEP_S * np.arange(T)
    onset = int(T * float(rng.uniform(0.55, 0.75)))
    candidates = [x for x in nodes if x != front and not x.endswith("_remote")]
    target = str(rng.choice(candidates))
    own_lat = {x: float(rng.uniform(0.004, 0.04)) for x in nodes}
    for x in nodes:
        if x.endswith("_remote"):
            own_lat[x] = 0.001  # the network leg of the call
    own_err = {x: np.full(T, float(rng.uniform(0.0, 0.002))) for x in nodes}
    lat_mult = {x: np.ones(T) for x in nodes}
    step_up = np.clip((np.arange(T) - onset + 1) / 3, 0, 1)
    if kind == "slow_dependency":
        lat_mult[target] = 1 + step_up * float(rng.uniform(6, 15))
    else:
        own_err[target] = own_err[target] + step_up * float(rng.uniform(0.15, 0.4))
    # traffic: front gets the users; each call passes most requests on
    rps = {x: np.zeros(T) for x in nodes}
    walk = np.exp(np.cumsum(rng.normal(0, 0.008, T)))
    rps[front] = float(rng.uniform(20, 80)) * walk

    def order(x: str) -> list[str]:
        return [x] + [y for c in topo[x] for y in order(c)]

    seq = order(front)
    fan = {(a, b): float(rng.uniform(0.4, 1.2)) for a in topo for b in topo[a]}
    for a in seq:
        for b in topo[a]:
            rps[b] = rps[b] + rps[a] * (1.0 if a.endswith("_remote") else fan[(a, b)])
    err: dict[str, np.ndarray] = {}
    lat: dict[str, np.ndarray] = {}
    for x in reversed(seq):
        ok = 1 - own_err[x]
        lt = own_lat[x] * lat_mult[x] * np.clip(1 + 0.05 * rng.standard_normal(T), 0.8, None)
        for c in topo[x]:
            ok = ok * (1 - err[c] * 0.9)
            lt = lt + lat[c] * 0.7
        err[x], lat[x] = 1 - ok, lt
    rows: list[pd.DataFrame] = []
    ts = pd.to_datetime((t * 1000).astype("int64"), unit="ms", utc=True)
    for x in nodes:
        sigma = 0.5
        med = lat[x]
        stats = {"Average": med * np.exp(sigma ** 2 / 2)}
        stats.update({q: med * np.exp(sigma * z) for q, z in _QUANTILE_Z.items()})
        for stat, v in stats.items():
            rows.append(pd.DataFrame({"timestamp": ts, "service": x, "metric": "latency", "statistic": stat,
                                      "value": v * np.clip(1 + 0.03 * rng.standard_normal(T), 0.9, None)}))
        rows.append(pd.DataFrame({"timestamp": ts, "service": x, "metric": "requests", "statistic": "Sum",
                                  "value": rng.poisson(rps[x] * STEP_S).astype(float)}))
        rows.append(pd.DataFrame({"timestamp": ts, "service": x, "metric": "availability", "statistic": "Average",
                                  "value": 100 * (1 - err[x])}))
    frame = pd.concat(rows, ignore_index=True)
    out = Path(out_dir)
    build_long_form_bundle(frame, out, topo, onset=float(t[onset]), source=f"scenario:{name}", overwrite=True)
    truth = {"case": out.name, "root_cause_service": target, "fault_kind": kind, "onset": iso(float(t[onset])),
             "is_incident": True, "scenario": name, "seed": seed, "generator": "fleet", "dialect": "cloudwatch"}
    truth_path = out / "truth.json"
    truth_path.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return FleetGenerated(name=name, bundle_dir=out, truth_path=truth_path, truth=truth, payloads=[],
                          manifest=json.loads((out / "manifest.json").read_text(encoding="utf-8")))
