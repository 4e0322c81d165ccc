"""RED signals per service: request rate, 5xx ratio, latency quantile, status-code mix."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from incidentbook.agent.checks.common import Finding, Probe, anomaly_evidence, fmt, scored, strength
from incidentbook.analysis.anomaly import Anomaly

RATE = 'sum by (service) (rate(http_requests_total[2m]))'
ERRORS = 'sum by (service) (rate(http_requests_total{code=~"5.."}[2m]))'
ERROR_RATIO = f'{ERRORS} / {RATE}'
CODES = 'sum by (service, code) (rate(http_requests_total{code=~"4..|5.."}[2m]))'
LATENCY = 'histogram_quantile(0.95, sum by (service, le) (rate(http_request_duration_seconds_bucket[2m])))'


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
    """Score request rate, 5xx ratio and p95 latency of every service against the baseline."""
    red = Red()
    rate = p.per_service(p.range(RATE))
    red.rate = scored(rate, cut, "up", rel_floor=0.08)
    red.rate_down = scored(rate, cut, "down", rel_floor=0.08)
    ratio = p.per_service(p.range(ERROR_RATIO))
    red.errors = scored(ratio, cut, "up", abs_floor=0.004, rel_floor=0.2)
    lat = p.per_service(p.range(LATENCY), agg="max")
    red.latency = scored(lat, cut, "up", rel_floor=0.1)
    for svc, a in red.errors.items():
        if a.onset is not None and a.level - a.baseline >= 0.01:
            red.findings.append(Finding(svc, "5xx ratio", strength(a), a.onset,
                                        anomaly_evidence(svc, "5xx ratio", ERROR_RATIO, a), generic=True,
                                        detail={"change": a.level - a.baseline}))
    for svc, a in red.latency.items():
        if a.onset is not None and a.ratio >= 1.3:
            red.findings.append(Finding(svc, "p95 latency", strength(a), a.onset,
                                        anomaly_evidence(svc, "p95 latency", LATENCY, a, "s"), generic=True,
                                        detail={"ratio": a.ratio}))
    for svc, a in red.rate.items():
        if a.onset is not None and a.ratio >= 1.25:
            red.findings.append(Finding(svc, "request rate rise", strength(a), a.onset,
                                        anomaly_evidence(svc, "requests/s", RATE, a), detail={"ratio": a.ratio}))
    for svc, a in red.rate_down.items():
        if a.onset is not None and a.ratio <= 0.7:
            red.findings.append(Finding(svc, "request rate drop", strength(a), a.onset,
                                        anomaly_evidence(svc, "requests/s", RATE, a), detail={"ratio": a.ratio}))
    codes = p.range(CODES)
    if not codes.empty and "code" in codes.columns:
        after = codes[pd.to_datetime(codes["timestamp"], utc=True) >= cut]
        for svc_code, g in after.groupby(["service", "code"]) if "service" in after.columns else []:
            svc, code = svc_code
            red.codes.setdefault(str(svc), {})[str(code)] = float(g["value"].mean())
    return red


def code_mix(red: Red, svc: str) -> str:
    """'504: 3.1/s, 500: 0.2/s' for evidence text."""
    mix = sorted(red.codes.get(svc, {}).items(), key=lambda kv: -kv[1])
    return ", ".join(f"{c}: {fmt(v)}/s" for c, v in mix[:4])
