"""RED signals per service: request rate, 5xx ratio, latency quantile, status-code mix."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from incidentbook.agent.checks.common import Finding, Probe, anomaly_evidence, fmt, scored, strength
from incidentbook.analysis.anomaly import Anomaly
from incidentbook.telemetry.signals import map_service

#: Shown where a query stands for every service's request rate (the catalogue picks the metric).
RATE = "requests per second (catalogue signal `requests`)"


@dataclass
class Red:
    """What the RED check learned, kept for the other checks and the ranking."""

    rate: dict[str, Anomaly] = field(default_factory=dict)
    rate_down: dict[str, Anomaly] = field(default_factory=dict)
    errors: dict[str, Anomaly] = field(default_factory=dict)
    latency: dict[str, Anomaly] = field(default_factory=dict)
    codes: dict[str, dict[str, float]] = field(default_factory=dict)  # service -> code -> incident share
    findings: list[Finding] = field(default_factory=list)


def check_red(p: Probe, cut: pd.Timestamp) -> Red:
    """Score request rate, error ratio and p95 latency of every service against the baseline.

    Each signal comes from the catalogue in whichever dialect the service speaks.
    """
    red = Red()
    rate = p.signal("requests")
    red.rate = scored(rate, cut, "up", rel_floor=0.08)
    red.rate_down = scored(rate, cut, "down", rel_floor=0.08)
    ratio = p.signal("error_ratio")
    red.errors = scored(ratio, cut, "up", abs_floor=0.004, rel_floor=0.2)
    lat = p.signal("latency_p95", agg="max")
    red.latency = scored(lat, cut, "up", rel_floor=0.1)
    for svc, a in red.errors.items():
        if a.onset is not None and a.level - a.baseline >= 0.01:
            red.findings.append(Finding(svc, "5xx ratio", strength(a), a.onset,
                                        anomaly_evidence(svc, "5xx ratio", p.signal_query("error_ratio", svc), a),
                                        generic=True, detail={"change": a.level - a.baseline}))
    for svc, a in red.latency.items():
        if a.onset is not None and a.ratio >= 1.3:
            red.findings.append(Finding(svc, "p95 latency", strength(a), a.onset,
                                        anomaly_evidence(svc, "p95 latency", p.signal_query("latency_p95", svc),
                                                         a, "s"), generic=True, detail={"ratio": a.ratio}))
    for svc, a in red.rate.items():
        if a.onset is not None and a.ratio >= 1.25:
            red.findings.append(Finding(svc, "request rate rise", strength(a), a.onset,
                                        anomaly_evidence(svc, "requests/s", p.signal_query("requests", svc), a),
                                        detail={"ratio": a.ratio}))
    for svc, a in red.rate_down.items():
        if a.onset is not None and a.ratio <= 0.7:
            red.findings.append(Finding(svc, "request rate drop", strength(a), a.onset,
                                        anomaly_evidence(svc, "requests/s", p.signal_query("requests", svc), a),
                                        detail={"ratio": a.ratio}))
    for _, r, codes, svcs in p.signal_frames("codes"):
        if codes.empty or "code" not in codes.columns:
            continue
        after = codes[pd.to_datetime(codes["timestamp"], utc=True) >= cut]
        label_cols = [c for c in after.columns if c not in ("timestamp", "value", "code")]
        for key, g in after.groupby(label_cols + ["code"]) if label_cols else []:
            labels = dict(zip(label_cols + ["code"], key if isinstance(key, tuple) else (key,)))
            svc = map_service(str(labels.get(r.label, "")), svcs) or p.service_of(labels)
            if svc is None or svc not in svcs:
                continue
            by_code = red.codes.setdefault(svc, {})
            code = str(labels["code"])
            by_code[code] = by_code.get(code, 0.0) + float(g.groupby("timestamp")["value"].sum().mean())
    return red


def code_mix(red: Red, svc: str) -> str:
    """'504: 3.1/s, 500: 0.2/s' for evidence text."""
    mix = sorted(red.codes.get(svc, {}).items(), key=lambda kv: -kv[1])
    return ", ".join(f"{c}: {fmt(v)}/s" for c, v in mix[:4])


def check_probes(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """Blackbox probes that started failing: the endpoint stopped answering as it did before."""
    out = []
    for svc, a in scored(p.signal("probe_success", agg="min"), cut, "down", abs_floor=0.05,
                         rel_floor=0.05).items():
        if a.onset is not None and a.baseline - a.level >= 0.5:
            out.append(Finding(svc, "probe failing", min(1.0, 0.5 + (a.baseline - a.level) / 2), a.onset,
                               anomaly_evidence(svc, "probe success", p.signal_query("probe_success", svc), a),
                               generic=True, detail={"change": a.level - a.baseline}))
    return out
