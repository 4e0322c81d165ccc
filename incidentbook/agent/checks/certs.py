"""TLS certificates: blackbox probes report when each endpoint's certificate expires."""

from __future__ import annotations

import pandas as pd

from incidentbook.agent.base import Evidence
from incidentbook.agent.checks.common import Finding, Probe, fmt
from incidentbook.telemetry.bundle import iso


def check_certs(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """Certificates that expired inside the window (or expire within a day of its end)."""
    out = []
    for svc, s in p.signal("cert_expiry", agg="min").items():
        if s.empty:
            continue
        exp = pd.Timestamp(float(s.iloc[-1]), unit="s", tz="UTC")
        left_h = (exp - p.end).total_seconds() / 3600
        if left_h <= 24:
            expired = exp <= p.end
            out.append(Finding(svc, "TLS certificate expiry", 1.0 if expired else 0.5,
                               exp if expired and exp >= p.start else None,
                               Evidence(summary=f"{svc}: certificate {'expired at' if expired else 'expires at'} "
                                                f"{iso(exp)} ({fmt(left_h)} h from the window end)",
                                        source="promql", query=p.signal_query("cert_expiry", svc),
                                        value={"expires": iso(exp), "hours_left": fmt(left_h)}),
                               kind="cert_expiry"))
    return out
