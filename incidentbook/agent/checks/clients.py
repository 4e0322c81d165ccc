"""Error concentration on a few clients, IPs or user agents: abuse, not a bug."""

from __future__ import annotations

import pandas as pd

from incidentbook.agent.base import Evidence
from incidentbook.agent.checks.common import Finding, Probe
from incidentbook.analysis.concentration import concentration

CLIENT_LABELS = ("client", "client_id", "client_ip", "remote_addr", "ip", "user_agent", "api_key", "tenant")


def check_clients_metrics(p: Probe, cut: pd.Timestamp, first_onset: pd.Timestamp | None) -> list[Finding]:
    """Concentration of 4xx/5xx by client label in request metrics that carry one."""
    out = []
    for metric in p.has_metric(r".*requests?_total", r".*http_.*_total"):
        probe_q = f'topk(1, {metric}{{code=~"4..|5.."}})'
        sample = p.range(probe_q)
        labels = [c for c in CLIENT_LABELS if c in sample.columns]
        if not labels:
            continue
        lab = labels[0]
        q = f'sum by (service, {lab}) (increase({metric}{{code=~"4..|5.."}}[5m]))'
        df = p.range(q)
        if df.empty:
            continue
        df = df[pd.to_datetime(df["timestamp"], utc=True) >= cut]
        for svc, g in df.groupby("service"):
            c = concentration(g.groupby(lab)["value"].sum())
            if c and c.concentrated:
                out.append(Finding(str(svc), "errors concentrated on few clients", min(c.top_share, 1.0),
                                   first_onset, Evidence(summary=f"{svc}: top {len(c.top)} of {c.keys} {lab}s "
                                                         f"own {c.top_share:.0%} of 4xx/5xx", source="promql",
                                                         query=q, value={"top": c.top, "keys": c.keys}),
                                   kind="abuse"))
    return out


def client_field(frame: pd.DataFrame) -> str | None:
    """The column of a logs frame (parsed labels) that names the client, if any."""
    return next((c for c in CLIENT_LABELS if c in frame.columns), None)
