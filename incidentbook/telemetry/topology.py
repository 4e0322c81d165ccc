"""Call-graph discovery from the metrics themselves, and nodes for dependencies with no series.

Where the data has it, who calls whom is read from:
- mesh request metrics with both ends (Istio `istio_requests_total{source_workload,
  destination_workload}`, Linkerd `request_total{deployment,dst_deployment}`);
- OpenTelemetry service-graph metrics (`traces_service_graph_request_total{client,server}`);
- client-side metrics that name their server (`server_address`, `peer_service`, `net_peer_name`,
  Envoy's `envoy_cluster_name`), attributed to the service that emits them;
- client-side aliases of a node (`payments_remote`, `payments-client`, `payments-probe`): the
  alias calls the node, so the server side of the same call explains the client side.

A dependency with no series of its own (a third-party API) becomes a node named after what the
caller's metrics or blackbox probes call it (`api.vendor.example`). Everything here works from
the discovery listing (one query), plus one instant query per edge dialect that is present.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from incidentbook.telemetry.signals import map_service

#: (metric regex, caller label, callee label) of metrics that carry both ends of a call.
EDGE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("istio_requests_total", "source_workload", "destination_workload"),
    ("traces_service_graph_request_total", "client", "server"),
    ("request_total", "deployment", "dst_deployment"),
)
#: Labels a client-side series uses to name the server it calls.
SERVER_LABELS = ("server_address", "peer_service", "net_peer_name", "envoy_cluster_name")
#: Suffixes that mark a client-side view of a node (X-Ray `_remote` nodes, client or probe nodes).
ALIAS_SUFFIXES = ("_remote", "-remote", ".remote", "_client", "-client", "_probe", "-probe")
#: Label values that name nobody.
_NOBODY = {"", "unknown", "nan", "None", "-"}


def host_of(value: str) -> str:
    """The host part of an address, URL or Envoy cluster name (`outbound|443||api.x.com` -> api.x.com)."""
    v = value.split("|")[-1] if "|" in value else value
    v = re.sub(r"^[a-z][a-z0-9+.-]*://", "", v)
    return v.split("/")[0].rsplit(":", 1)[0] if not v.startswith("[") else v.split("]")[0].lstrip("[")


def _node(value: str, known: set[str]) -> str | None:
    """A known service the value names, else an external node name (None for nobody)."""
    if value in _NOBODY:
        return None
    svc = map_service(value, known)
    if svc:
        return svc
    host = host_of(value)
    if host.endswith(".svc.cluster.local") or host.endswith(".svc"):
        svc = map_service(host.split(".")[0], known)
        if svc:
            return svc
    return host or None


def external_nodes(listing: Any, services: Sequence[str]) -> dict[str, set[str]]:
    """Dependencies with no series of their own: node -> the services whose metrics name it.

    From client-side series (`server_address=...`) and blackbox probes whose target is no known
    service. The caller of a probe is unknown, so a probe-only node has no callers here.
    """
    known = set(services)
    out: dict[str, set[str]] = {}
    if listing is None or len(listing) == 0:
        return out
    cols = set(listing.columns)
    for lab in SERVER_LABELS:
        if lab not in cols:
            continue
        sub = listing[listing[lab].notna()]
        for _, row in sub.iterrows():
            target = _node(str(row[lab]), known)
            if not target or target in known:
                continue
            caller = _caller(row, known)
            out.setdefault(target, set())
            if caller and caller != target:
                out[target].add(caller)
    if "instance" in cols and "__name__" in cols:
        probes = listing[listing["__name__"].astype(str).str.fullmatch("probe_success") & listing["instance"].notna()]
        for value in probes["instance"].astype(str).unique():
            owner = None
            if "service" in cols:
                rows = probes[probes["instance"].astype(str) == value]
                owner = next((map_service(str(v), known) for v in rows["service"].dropna()
                              if map_service(str(v), known)), None)
            if owner:
                continue
            target = _node(value, known)
            if target and target not in known:
                out.setdefault(target, set())
    return out


def _caller(row: Any, known: set[str]) -> str | None:
    for lab in ("service", "service_name", "application", "app", "job", "source_workload", "pod", "container"):
        v = row.get(lab) if hasattr(row, "get") else None
        if isinstance(v, str) and v:
            svc = map_service(v, known)
            if svc:
                return svc
    return None


def aliases(services: Iterable[str]) -> dict[str, str]:
    """Client-side alias -> the node it views (`checkout_remote` -> `checkout`), among `services`."""
    known = set(services)
    out = {}
    for s in known:
        for suf in ALIAS_SUFFIXES:
            if s.endswith(suf) and s[: -len(suf)] in known:
                out[s] = s[: -len(suf)]
                break
    return out


def edge_queries(names: Iterable[str]) -> list[tuple[str, str, str]]:
    """(query, caller label, callee label) for each edge metric the listing has."""
    present = set(names)
    out = []
    for metric, a, b in EDGE_METRICS:
        if metric in present:
            out.append((f'group by ({a}, {b}) ({metric}{{{a}!="", {b}!=""}})', a, b))
    return out


def edges_from_frames(frames: Iterable[tuple[Any, str, str]], services: Sequence[str]) -> dict[str, set[str]]:
    """caller -> callees from edge query results (frames with the caller and callee label columns)."""
    known = set(services)
    out: dict[str, set[str]] = {}
    for df, a, b in frames:
        if df is None or len(df) == 0 or a not in df.columns or b not in df.columns:
            continue
        for x, y in df[[a, b]].drop_duplicates().itertuples(index=False):
            src, dst = _node(str(x), known), _node(str(y), known)
            if src and dst and src != dst and src in known and dst in known:
                out.setdefault(src, set()).add(dst)
    return out


def merge(topology: Mapping[str, Sequence[str]], *extra: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """The configured topology plus discovered edges (configured edges first, no duplicates)."""
    out = {k: list(v) for k, v in topology.items()}
    for e in extra:
        for src, dsts in e.items():
            cur = out.setdefault(src, [])
            for d in sorted(dsts):
                if d not in cur and d != src:
                    cur.append(d)
    return out
