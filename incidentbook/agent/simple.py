"""The built-in `simple` investigator: error ratio and latency per alerted service.

It is deliberately small: for each service named by an alert it compares the error ratio and the
p99 latency inside the incident window with the hour before, turns a clear rise into a
hypothesis, and proposes read-only cells that would confirm or refute it. It is the fallback
when the configured investigator is not installed. It only reads telemetry.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

from incidentbook.agent.base import (
    Evidence,
    Hypothesis,
    Investigation,
    InvestigationContext,
    Proposal,
    investigators,
)

ERROR_RATIO = ('sum(rate(http_requests_total{{service="{s}",code=~"5.."}}[5m])) '
               '/ sum(rate(http_requests_total{{service="{s}"}}[5m]))')
P99 = 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{service="{s}"}}[5m])))'
RISE = 2.0  # how many times the baseline counts as a clear rise
MIN_ERROR_RATIO = 0.01


def _mean(result: Any) -> float | None:
    data = getattr(result, "data", None)
    if data is None or len(data) == 0:
        return None
    v = float(data["value"].replace([math.inf, -math.inf], math.nan).mean())
    return None if math.isnan(v) else v


class SimpleInvestigator:
    """Error ratio and p99 latency of each alerted service, window vs the hour before."""

    name = "simple"

    def _query(self, tel: Any, q: str, start: Any, end: Any, errors: list[str]) -> Any:
        from incidentbook.errors import IncidentbookError
        from incidentbook.telemetry.base import QueryResult

        try:
            df = tel.query_range(q, start, end)
        except IncidentbookError as e:
            errors.append(f"{q}: {e}")
            return QueryResult("error", q, None, str(e))
        return QueryResult("ok" if len(df) else "no_data", q, df)

    def investigate(self, ctx: InvestigationContext) -> Investigation:
        """Check each alerted service and return hypotheses with read-only proposals."""
        from incidentbook.telemetry.bundle import to_utc

        t0 = time.perf_counter()
        out = Investigation(incident_id=ctx.incident_id, investigator=self.name)
        start, end = to_utc(ctx.window_start), to_utc(ctx.window_end)
        base_start = start - timedelta(hours=1)
        services = ctx.services or sorted({a["labels"].get("service", "") for a in ctx.alerts} - {""})
        n = 0
        for svc in services:
            for signal, template, unit in (("error ratio", ERROR_RATIO, ""), ("p99 latency", P99, "s")):
                q = template.format(s=svc)
                now = _mean(self._query(ctx.telemetry, q, start, end, out.errors))
                before = _mean(self._query(ctx.telemetry, q, base_start, start, out.errors))
                if now is None:
                    continue
                floor = MIN_ERROR_RATIO if signal == "error ratio" else 0.0
                rose = now > floor and (before is None or before <= 0 or now >= RISE * before)
                ev = Evidence(summary=f"{svc} {signal} {now:.3g}{unit} in the window vs "
                                      f"{'no data' if before is None else f'{before:.3g}{unit}'} the hour before",
                              source="promql", query=q, value={"window": now, "before": before})
                n += 1
                hid = f"H{n}"
                fault = "bad_deploy" if signal == "error ratio" else "slow_dependency"
                h = Hypothesis(
                    id=hid, service=svc, fault_kind=fault, role="cause" if rose else "symptom",
                    statement=(f"{svc} itself is failing ({signal} rose)" if rose
                               else f"{svc} {signal} did not clearly change"),
                    position="root" if rose else "unknown",
                    confidence=0.5 if rose else 0.1,
                    evidence_for=[ev] if rose else [], evidence_against=[] if rose else [ev])
                h.proposals.append(Proposal(
                    id=f"P{n}", hypothesis=hid, title=f"{signal} of {svc} by pod and code",
                    rationale=f"See whether the {signal} of {svc} is spread over all pods or one; "
                              "one bad pod points at the pod, all pods at the code or a dependency.",
                    code=(f"%promql sum by (pod, code) (rate(http_requests_total{{service=\"{svc}\"}}[5m]))"
                          if signal == "error ratio" else f"%promql {P99.format(s=svc).replace('(le)', '(le, pod)')}")))
                h.proposals.append(Proposal(
                    id=f"P{n}c", hypothesis=hid, title=f"changes to {svc} in the window",
                    rationale=f"A deploy, config or flag change to {svc} just before the onset would explain it.",
                    code=f"%changes --service {svc}"))
                out.hypotheses.append(h)
        out.hypotheses.sort(key=lambda h: -h.confidence)
        if not out.hypotheses:
            out.notes.append("no error-ratio or latency data for the alerted services; check %sources")
        out.duration_s = round(time.perf_counter() - t0, 3)
        return out


investigators.register("simple", SimpleInvestigator)
