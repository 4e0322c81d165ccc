"""The built-in `simple` investigator: error ratio and latency per alerted service.

It is deliberately small: for each service named by an alert it compares the error ratio and the
p95 latency (whichever dialect the signal catalogue finds for it) inside the incident window with the hour before, turns a clear rise into a
hypothesis, and proposes read-only cells that would confirm or refute it. It is the fallback
when the configured investigator is not installed. It only reads telemetry.
"""

from __future__ import annotations

import math
import shlex
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

RISE = 2.0  # how many times the baseline counts as a clear rise
MIN_ERROR_RATIO = 0.01


def _mean(result: Any) -> float | None:
    data = getattr(result, "data", None)
    if data is None or len(data) == 0:
        return None
    v = float(data["value"].replace([math.inf, -math.inf], math.nan).mean())
    return None if math.isnan(v) else v


class SimpleInvestigator:
    """Error ratio and p95 latency of each alerted service, window vs the hour before."""

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
        from incidentbook.telemetry.signals import Catalogue, list_series

        listing, errs = list_series(ctx.telemetry, base_start, end)
        out.errors.extend(errs)
        disc = (getattr(ctx, "catalogue", None) or Catalogue()).discover(listing, services)
        gaps = [svc for svc in services if disc.resolved(svc, "error_ratio") is None
                and disc.resolved(svc, "latency_p95") is None]
        if gaps:
            out.notes.append(f"no readable error or latency signal for: {', '.join(gaps)} "
                             "- add a mapping (docs/signals.md)")
        n = 0
        for svc in services:
            for signal, key, unit in (("error ratio", "error_ratio", ""), ("p95 latency", "latency_p95", "s")):
                r = disc.resolved(svc, key)
                if r is None:
                    continue
                q = r.query()
                now = _mean(self._query(ctx.telemetry, q, start, end, out.errors))
                before = _mean(self._query(ctx.telemetry, q, base_start, start, out.errors))
                if now is None:
                    continue
                floor = MIN_ERROR_RATIO if signal == "error ratio" else 0.0
                rose = now > floor and (before is None or before <= 0 or now >= RISE * before)
                ev = Evidence(summary=f"{svc} {signal} {now:.3g}{unit} in the window vs "
                                      f"{'no data' if before is None else f'{before:.3g}{unit}'} the hour before "
                                      f"({r.dialect} metrics)",
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
                codes = disc.resolved(svc, "codes")
                h.proposals.append(Proposal(
                    id=f"P{n}", hypothesis=hid, title=f"{signal} of {svc} by code",
                    rationale=f"See which responses the {signal} of {svc} is made of; a new code at the onset "
                              "points at the code or a dependency.",
                    code=f"%promql {(codes.query() if codes is not None else q)}"))
                h.proposals.append(Proposal(
                    id=f"P{n}c", hypothesis=hid, title=f"changes to {svc} in the window",
                    rationale=f"A deploy, config or flag change to {svc} just before the onset would explain it.",
                    code=f"%changes --service {shlex.quote(svc)}"))
                out.hypotheses.append(h)
        out.hypotheses.sort(key=lambda h: -h.confidence)
        if not out.hypotheses:
            out.notes.append("no error-ratio or latency data for the alerted services; check %sources")
        out.duration_s = round(time.perf_counter() - t0, 3)
        return out


investigators.register("simple", SimpleInvestigator)
