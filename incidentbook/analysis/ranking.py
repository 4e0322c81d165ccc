"""Ranking over the dependency graph: where did it start, and what merely felt it?

`topology` maps a service to the services it calls. Requests flow from callers (upstream) to
the services they call (downstream). A failure shows first where it starts and then in the
callers that wait on it, so the root is the anomalous service whose own dependencies stayed
healthy (or went bad only later); anomalies in its callers are explained by propagation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

TOLERANCE = pd.Timedelta("2min")


def callees(topology: Mapping[str, Sequence[str]], service: str) -> set[str]:
    """Every service `service` depends on, directly or not."""
    out: set[str] = set()
    todo = [service]
    while todo:
        for c in topology.get(todo.pop(), ()):
            if c not in out and c != service:
                out.add(c)
                todo.append(c)
    return out


def callers(topology: Mapping[str, Sequence[str]], service: str) -> set[str]:
    """Every service that depends on `service`, directly or not."""
    out: set[str] = set()
    todo = [service]
    while todo:
        cur = todo.pop()
        for n, deps in topology.items():
            if cur in deps and n not in out and n != service:
                out.add(n)
                todo.append(n)
    return out


def position(topology: Mapping[str, Sequence[str]], root: str, service: str) -> str:
    """`root`, `upstream` (a caller of root), `downstream` (something root calls) or `unknown`."""
    if service == root:
        return "root"
    if service in callers(topology, root):
        return "upstream"
    if service in callees(topology, root):
        return "downstream"
    return "unknown"


@dataclass
class Placement:
    """Where an anomalous service sits relative to the others."""

    service: str
    onset: pd.Timestamp | None
    is_root: bool
    explained_by: list[str] = field(default_factory=list)  # anomalous dependencies that came first


def place(onsets: Mapping[str, pd.Timestamp | None], topology: Mapping[str, Sequence[str]],
          tolerance: pd.Timedelta = TOLERANCE,
          explainers: Mapping[str, pd.Timestamp | None] | None = None) -> dict[str, Placement]:
    """Mark each anomalous service root or propagated.

    A service is explained by propagation when one of its (transitive) dependencies is anomalous
    with an onset no later than its own plus `tolerance` (scrape intervals and rate windows blur
    the order of near-simultaneous onsets). Otherwise it is a root candidate. `explainers`
    (default: `onsets`) limits which dependencies' anomalies are severe enough to propagate:
    a dependency 2x slower does not make its callers fail, one that errors or hangs does.
    """
    expl = onsets if explainers is None else explainers
    out: dict[str, Placement] = {}
    for svc, t in onsets.items():
        culprits = []
        for dep in callees(topology, svc):
            dt = expl.get(dep)
            if dep not in expl:
                continue
            if t is None or dt is None or dt <= t + tolerance:
                culprits.append(dep)
        out[svc] = Placement(svc, t, not culprits, sorted(culprits))
    return out
