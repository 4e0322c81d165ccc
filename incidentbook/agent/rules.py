"""The rules investigator: deterministic checks + the dependency graph -> ranked hypotheses.

It works offline (a replayed bundle) and live (Prometheus, Loki, the cluster) through the same
`Telemetry` facade, with real PromQL/LogQL, and shows every query it ran next to the numbers
it got back. It never reads a bundle's ground truth.

How it decides:
1. Checks score signals per service against a baseline window (the part of the window before
   the first alert): RED metrics, saturation, cache hit ratio, certificates, rate limiting,
   client concentration, log-template novelty, recent changes, planned events.
2. Failure signals (errors, latency, saturation) get an onset each. On the dependency graph, a
   service whose dependencies went bad no later than it did is a symptom (propagation); the
   root is where the earliest onset sits with healthy dependencies.
3. Each root candidate gets a fault kind from its most specific evidence (OOM kills -> leak,
   hit-ratio collapse -> cache, pool at max -> pool exhaustion, a change on that service just
   before its onset -> deploy/config/flag, otherwise slow_dependency). Load rises are symptoms:
   of a cache collapse upstream, of retries, or of a planned event (which is not an incident).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from incidentbook.agent.base import (
    Evidence,
    Hypothesis,
    Investigation,
    InvestigationContext,
    Proposal,
    Signal,
)
from incidentbook.agent.checks import cache, certs, clients, disk, logs, saturation
from incidentbook.agent.checks import changes as change_check
from incidentbook.agent.checks.common import Finding, Probe, baseline_end, first
from incidentbook.agent.checks.context import explains_load, planned_events
from incidentbook.agent.checks.http import Red, check_probes, check_red, code_mix
from incidentbook.analysis.ranking import callees, callers, place, position
from incidentbook.telemetry.bundle import iso
from incidentbook.telemetry.signals import coverage_message

#: How much a specific signal says about its fault kind (weights of the evidence, 0..1).
KIND_WEIGHT = {
    "cert_expiry": 1.0, "memory_leak": 0.95, "disk_full": 0.95, "cache_failure": 0.95, "db_pool_exhaustion": 0.85,
    "abuse": 0.85, "cpu_throttling": 0.75, "bad_deploy": 0.7, "config_change": 0.7, "feature_flag": 0.7,
    "slow_dependency": 0.5, "unknown": 0.2, "dependency_outage": 0.8, "consumer_lag": 0.85,
    "kv_cache_saturation": 0.85,
}
FAILURE_SIGNALS = ("5xx ratio", "p95 latency", "probe failing")
#: Saturation a deploy, config edit or flag flip on the same service commonly causes.
CHANGE_CAUSABLE = {"db_pool_exhaustion", "cpu_throttling"}


@dataclass
class _Candidate:
    service: str
    kind: str
    score: float = 0.0
    onset: pd.Timestamp | None = None
    evidence_for: list[Evidence] = field(default_factory=list)
    evidence_against: list[Evidence] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    why: str = ""


class RulesInvestigator:
    """Deterministic, offline investigator (the default `rules`)."""

    name = "rules"

    def __init__(self, max_hypotheses: int = 5, min_confidence: float = 0.05) -> None:
        self.max_hypotheses = max_hypotheses
        self.min_confidence = min_confidence

    def investigate(self, ctx: InvestigationContext) -> Investigation:
        """Run every check over the incident window and return ranked hypotheses."""
        t0 = time.perf_counter()
        inv = Investigation(incident_id=ctx.incident_id, investigator=self.name)
        p = Probe(ctx)
        try:
            self._investigate(ctx, p, inv)
        finally:
            inv.errors.extend(p.errors)
            inv.duration_s = round(time.perf_counter() - t0, 3)
        return inv

    # ------------------------------------------------------------------------------------------
    def _investigate(self, ctx: InvestigationContext, p: Probe, inv: Investigation) -> None:
        cut = baseline_end(ctx)
        inv.notes.append(f"baseline {iso(p.start)} .. {iso(cut)}; incident window {iso(cut)} .. {iso(p.end)}")
        topo = p.topology()
        found = {k: [d for d in v if d not in ctx.topology.get(k, [])] for k, v in topo.items()}
        found = {k: v for k, v in found.items() if v}
        if found:
            inv.notes.append("call graph from the metrics: " + "; ".join(
                f"{k} -> {', '.join(v)}" for k, v in sorted(found.items())[:12]))
        if p.external:
            inv.notes.append("dependencies with no series of their own (read from their callers and probes): "
                             + ", ".join(sorted(p.external)))
        events = p.table("events")
        changes = p.table("changes", p.start - pd.Timedelta("1h"), p.end)
        planned = [e for e in planned_events(p.table("context"), p.start, p.end) if explains_load(e)]

        coverage = p.discovery().coverage()
        gap = coverage_message(coverage)
        if not coverage.get("listed", True):
            inv.notes.append("the metrics source could not list its series, so no signal was discovered "
                             "(see the errors; check %sources)")
        elif gap:
            inv.notes.append(gap)
        inv.coverage = coverage
        red = check_red(p, cut)
        findings: list[Finding] = list(red.findings)
        findings += check_probes(p, cut)
        findings += saturation.check_throttling(p, cut)
        findings += saturation.check_memory(p, cut, events)
        findings += saturation.check_pools(p, cut)
        findings += saturation.check_consumer_lag(p, cut)
        findings += saturation.check_kv_cache(p, cut)
        findings += cache.check_cache(p, cut)
        findings += certs.check_certs(p, cut)
        findings += disk.check_disks(p, cut)
        findings += _rate_limiting(red, lambda svc: p.signal_query("codes", svc))
        failing = [f for f in findings if f.signal in FAILURE_SIGNALS]
        findings += clients.check_clients_metrics(p, cut, first(f.onset for f in failing))
        findings += logs.check_logs(p, cut)

        rate_series = p.signal("requests")
        cost = saturation.cpu_per_request(p, rate_series, cut)
        findings += saturation.check_cpu_cost(p, rate_series, cut)
        findings = self._explain_load(findings, red, cost, topo, planned, inv)

        by_svc: dict[str, list[Finding]] = defaultdict(list)
        for f in findings:
            by_svc[f.service].append(f)

        # where did it start? (failure signals and specific ones, not load rises)
        onsets: dict[str, pd.Timestamp | None] = {}
        for svc, fs in by_svc.items():
            relevant = [f for f in fs if f.generic or f.kind]
            if relevant and max(f.strength for f in relevant) >= 0.2:
                onsets[svc] = first(f.onset for f in relevant)
        # only severe anomalies propagate to callers: errors, hangs, specific faults (not load drift)
        severe: dict[str, pd.Timestamp | None] = {}
        for svc, fs in by_svc.items():
            strong = [f for f in fs if _severe(f)]
            if strong:
                severe[svc] = first(f.onset for f in strong)
        # a service's failure starts with its severe signals; milder drift before them is context
        onsets.update({svc: t for svc, t in severe.items() if svc in onsets})
        placement = place(onsets, topo, explainers=severe)

        cands = self._candidates(p, by_svc, placement, red, changes, topo, onsets, first(severe.values()))
        if planned and not cands:
            self._planned_only(p, planned, red, inv, ctx)
            return
        if planned:
            inv.notes.append("planned event(s) in the window: " + "; ".join(
                f"{e['title']} ({e['start']} .. {e['end']})" for e in planned)
                + " - load increases it explains are not listed as causes")
        ranked = sorted(cands, key=lambda c: -c.score)[: self.max_hypotheses]
        total = sum(max(c.score, 0) for c in ranked) or 1.0
        for i, c in enumerate(ranked):
            conf = _confidence(c.score, c.score / total)
            if conf < self.min_confidence and i > 0:
                continue
            h = self._hypothesis(p, i, c, conf, topo, by_svc, (iso(p.start), iso(p.end)))
            _mark_symptom(h, inv.hypotheses, placement, topo)
            _similar(ctx, h, inv.errors)
            inv.hypotheses.append(h)
        if not inv.hypotheses:
            read = coverage["readable"]
            inv.notes.append(f"no service left its baseline: nothing to explain in this window "
                             f"({read} of {coverage['services']} services had a readable error or latency signal)")

    # ------------------------------------------------------------------------------------------
    def _explain_load(self, findings: list[Finding], red: Red, cost: dict[str, float],
                      topo: dict[str, list[str]], planned: list[dict[str, Any]],
                      inv: Investigation) -> list[Finding]:
        """Drop saturation that only follows a load rise the window already explains."""
        cache_broken = {f.service for f in findings if f.kind == "cache_failure"}
        abusers = {f.service for f in findings if f.kind == "abuse"}
        load_up = {svc: a.ratio for svc, a in red.rate.items() if a.onset is not None and a.ratio >= 1.2}
        # A cache that stops hitting sends its callers' reads to the backing store: the callers, the
        # store and everyone else using the store feel it. Those are symptoms of the cache.
        victims: dict[str, str] = {}
        for c in cache_broken:
            direct = {n for n, deps in topo.items() if c in deps}
            store = {d for n in direct for d in topo.get(n, []) if d != c}
            for n, deps in topo.items():
                if n in direct or set(deps) & store:
                    victims[n] = c
            for d in store:
                victims[d] = c
        noted: set[str] = set()
        by_load: dict[str, list[str]] = {}

        def more_load(svc: str) -> bool:
            """Its own request rate rose, or (no HTTP metrics of its own) a caller's did."""
            if svc in load_up:
                return True
            return svc not in red.rate and bool(callers(topo, svc) & set(load_up))
        out = []
        for f in findings:
            svc = f.service
            explained = ""
            if svc in victims and f.kind not in ("cache_failure", "memory_leak", "cert_expiry", "abuse") \
                    and (f.generic or f.kind):
                f.strength *= 0.35
                f.detail["explained_by"] = victims[svc]
                if svc not in noted:
                    noted.add(svc)
                    inv.notes.append(f"{svc}: its anomalies follow the cache hit-ratio collapse on {victims[svc]} "
                                     f"(misses go to the backing store): symptom, not capacity")
            rise = red.rate[svc].onset if svc in red.rate else None
            if planned and f.generic and (svc in load_up or callees(topo, svc) & set(load_up)) \
                    and (_covers(planned, f.onset) or (rise is not None and _covers(planned, rise))):
                big = f.detail.get("change", 0) >= 0.05 or f.detail.get("ratio", 1) >= 4
                by_load.setdefault(svc, []).append(f"{f.signal} {f.evidence.value.get('baseline')} -> "
                                                   f"{f.evidence.value.get('level')}" + (" (large)" if big else ""))
                continue
            if planned and f.kind == "kv_cache_saturation" and more_load(svc) and _covers(planned, f.onset):
                # a full KV cache under the planned traffic is capacity, not a fault
                by_load.setdefault(svc, []).append(f"{f.signal} {f.evidence.value.get('baseline')} -> "
                                                   f"{f.evidence.value.get('level')} (large)")
                continue
            if abusers & (callers(topo, svc) | {svc}) and svc in load_up and (
                    f.generic or f.kind in ("cpu_throttling", "db_pool_exhaustion")):
                inv.notes.append(f"{f.signal} on {svc} follows its request rate (x{load_up[svc]:.2f}) driven by "
                                 f"abusive clients at {', '.join(sorted(abusers))}: symptom")
                continue
            if f.kind == "cpu_throttling" and f.signal == "CPU throttling" and (
                    cost.get(svc, 1.0) < 1.3 or load_up.get(svc, 1.0) >= 1.5):
                explained = (f"throttling on {svc} follows its request rate (x{red.rate[svc].ratio if svc in red.rate else 1:.2f}) "
                             f"with CPU per request x{cost.get(svc, 1.0):.2f}: capacity, not a noisy neighbour")
            if f.kind == "db_pool_exhaustion" and more_load(svc) and planned:
                explained = f"pool use on {svc} follows the load reaching it"
            if explained and planned and more_load(svc):
                inv.notes.append(explained + "; the planned event explains the load")
                continue
            if explained and cache_broken & (callees(topo, svc) | {svc}):
                inv.notes.append(explained + "; the load comes from cache misses")
                continue
            if explained and abusers & (callers(topo, svc) | {svc}):
                inv.notes.append(explained + f"; the load comes from abusive clients at {', '.join(sorted(abusers))}")
                continue
            if explained:
                f.strength *= 0.4
                f.detail["load_driven"] = explained
            out.append(f)
        if by_load:
            inv.notes.append("the planned load explains these symptoms (not causes; '(large)' ones are worth a "
                             "capacity review): " + "; ".join(f"{svc}: {', '.join(v)}" for svc, v in sorted(by_load.items())))
        return out

    def _candidates(self, p: Probe, by_svc: dict[str, list[Finding]], placement: dict[str, Any], red: Red,
                    changes: pd.DataFrame, topo: dict[str, list[str]],
                    onsets: dict[str, pd.Timestamp | None], earliest: pd.Timestamp | None) -> list[_Candidate]:
        cands: dict[tuple[str, str], _Candidate] = {}
        earliest = earliest or first(onsets.values())

        def cand(svc: str, kind: str) -> _Candidate:
            return cands.setdefault((svc, kind), _Candidate(svc, kind, onset=onsets.get(svc)))

        for svc, fs in by_svc.items():
            generic = [f for f in fs if f.generic]
            gen_strength = max((f.strength for f in generic), default=0.0)
            pl = placement.get(svc)
            is_root = bool(pl and pl.is_root)
            kinds = {f.kind for f in fs if f.kind}
            onset = onsets.get(svc) or first(f.onset for f in fs)
            near = change_check.changes_near(changes, svc, [onset] + [f.onset for f in fs if f.generic or f.kind])
            for kind in kinds:
                spec = [f for f in fs if f.kind == kind]
                c = cand(svc, kind)
                c.score += KIND_WEIGHT.get(kind, 0.5) * max(f.strength for f in spec) * 1.6
                c.evidence_for += [f.evidence for f in spec]
                c.signals += [Signal(f.signal, svc, "cause", iso(f.onset) if f.onset is not None else None,
                                     f.evidence.query) for f in spec]
            if generic or kinds:
                # a change on this service right before it went bad
                for m in near[:2]:
                    kind = change_check.fault_kind_of(m.kind)
                    c = cand(svc, kind)
                    # a change on a service whose trouble is propagation is most likely innocent
                    weight = 1.0 if is_root or pl is None else 0.4
                    c.score += weight * (0.9 * m.score + 0.4 * gen_strength)
                    # saturation a change can cause is evidence for the change, not a cause of its own
                    for sk in kinds & CHANGE_CAUSABLE:
                        spec = max(f.strength for f in fs if f.kind == sk)
                        c.score += 0.8 * spec * m.score
                        other = cand(svc, sk)
                        other.score -= 0.4 * m.score
                        other.evidence_against.append(Evidence(
                            summary=f"a {m.kind} on {svc} just before the onset can explain the {sk.replace('_', ' ')}",
                            source="changes"))
                    c.evidence_for.append(change_check.change_evidence(m))
                    if "disk_full" in kinds:  # what made the disk fill is evidence for the fill, too
                        cand(svc, "disk_full").evidence_for.append(change_check.change_evidence(m))
                    c.evidence_for += [f.evidence for f in generic]
                    c.signals += [Signal(f.signal, svc, "cause", iso(f.onset) if f.onset is not None else None,
                                         f.evidence.query) for f in generic]
                if generic and not kinds and not near:
                    slow = max((float(f.detail.get("ratio", 0)) for f in generic if f.signal == "p95 latency"), default=0)
                    kind = "slow_dependency" if slow else "unknown"
                    if svc in p.external:  # no series of its own: an outside dependency failing
                        kind = "dependency_outage"
                    c = cand(svc, kind)
                    # a service many times slower with healthy dependencies is hanging, not just busy
                    c.score += 0.5 * gen_strength + (0.5 if slow >= 5 else 0.0)
                    c.evidence_for += [f.evidence for f in generic]
                    c.signals += [Signal(f.signal, svc, "cause", iso(f.onset) if f.onset is not None else None,
                                         f.evidence.query) for f in generic]
            for c in [c for (s, _), c in cands.items() if s == svc]:
                if is_root:
                    c.score += 0.5
                    c.evidence_for.append(Evidence(
                        summary=f"{svc}'s dependencies ({', '.join(sorted(callees(topo, svc))) or 'none'}) "
                                f"show no earlier failure", source="rule"))
                elif pl is not None:
                    c.score -= 0.25 if kinds else 0.6
                    c.evidence_against.append(Evidence(
                        summary=f"{svc}'s dependencies {', '.join(pl.explained_by)} went bad no later than it "
                                f"did: its errors may be propagation", source="rule"))
                if c.onset is not None and earliest is not None:
                    lag = (c.onset - earliest).total_seconds() / 60
                    c.score -= min(max(lag, 0) / 10, 0.4)
                if generic:
                    c.score += 0.3 * gen_strength
                if not near and c.kind in ("bad_deploy", "config_change", "feature_flag"):
                    c.evidence_against.append(Evidence(summary=f"no change on {svc} close before its onset",
                                                       source="changes"))
            # a failing edge: callers fail on this service while its own traffic drops
            drop = red.rate_down.get(svc)
            if drop is not None and drop.onset is not None and drop.ratio <= 0.7:
                failing_callers = [c for c in callers(topo, svc)
                                   if any(f.generic for f in by_svc.get(c, []))]
                if failing_callers:
                    for c in [c for (s, _), c in cands.items() if s == svc]:
                        c.score += 0.4
                        c.evidence_for.append(Evidence(
                            summary=f"{svc}'s request rate fell to x{drop.ratio:.2f} while its callers "
                                    f"{', '.join(sorted(failing_callers))} fail: requests stop reaching it",
                            source="promql", query=p.signal_query("requests", svc)))
        for c in cands.values():
            mix = code_mix(red, c.service)
            if mix:
                c.evidence_for.append(Evidence(summary=f"{c.service} non-2xx responses in the incident window: {mix}",
                                               source="promql", query=p.signal_query("codes", c.service)))
        return [c for c in cands.values() if c.score > 0]

    def _planned_only(self, p: Probe, planned: list[dict[str, Any]], red: Red, inv: Investigation,
                      ctx: InvestigationContext) -> None:
        ev = planned[0]
        rises = sorted(((s, a) for s, a in red.rate.items() if a.ratio >= 1.15), key=lambda x: -x[1].ratio)
        err = max((a.level for a in red.errors.values()), default=0.0)
        inv.notes.append(
            f"planned event {ev['title']!r} ({ev['kind']}, {ev['start']} .. {ev['end']}) covers the window and "
            f"explains the load: " + (", ".join(f"{s} x{a.ratio:.2f}" for s, a in rises[:4]) or "no rise measured")
            + f"; highest 5xx ratio {err:.2%}. Not an incident cause: no cause hypothesis opened.")
        # where the planned traffic enters: a service nobody calls (not an outside dependency)
        entry = [s for s, _ in rises if not callers(ctx.topology, s) and s not in p.external]
        svc = entry[0] if entry else rises[0][0] if rises else (ev.get("services") or [""])[0]
        h = Hypothesis(
            id="h1", statement=f"expected load from the planned event {ev['title']!r}, not a fault",
            service=str(svc), fault_kind="planned_load", role="symptom", position="root",
            confidence=0.8,
            evidence_for=[Evidence(summary=f"planned: {ev['title']} {ev['start']} .. {ev['end']}", source="context",
                                   value=ev)] + [Evidence(summary=f"{s}: requests/s x{a.ratio:.2f}", source="promql",
                                                          query=p.signal_query("requests", s),
                                                          value={"ratio": round(a.ratio, 3)})
                                                 for s, a in rises[:4]],
            signals=[Signal("request rate rise", s, "symptom", iso(a.onset) if a.onset is not None else None,
                            p.signal_query("requests", s)) for s, a in rises[:4]])
        h.proposals = [Proposal(id="h1-p1", title="Traffic and errors by service",
                                code=f"%promql {(p.signal_query('requests').splitlines() or ['sum(up)'])[0]}\n",
                                rationale="confirm errors stay flat while traffic rises",
                                hypothesis="h1")]
        inv.hypotheses.append(h)

    def _hypothesis(self, p: Probe, i: int, c: _Candidate, conf: float, topo: dict[str, list[str]],
                    by_svc: dict[str, list[Finding]], window: tuple[str, str] | None = None) -> Hypothesis:
        hid = f"h{i + 1}"
        signals = list(c.signals)
        explained = []
        for svc, fs in by_svc.items():
            if svc == c.service:
                continue
            pos = position(topo, c.service, svc)
            if pos == "unknown":
                continue
            for f in fs:
                if f.generic or f.signal.startswith("request rate"):
                    signals.append(Signal(f"{f.signal} ({pos})", svc, "symptom",
                                          iso(f.onset) if f.onset is not None else None, f.evidence.query))
                    explained.append(svc)
        seen = set()
        uniq = []
        for s in signals:
            key = (s.name, s.service)
            if key not in seen:
                seen.add(key)
                uniq.append(s)
        text = _STATEMENTS.get(c.kind, "{svc}: {kind}").format(svc=c.service, kind=c.kind)
        if explained:
            text += f"; explains symptoms in {', '.join(sorted(set(explained))[:5])}"
        ev_for = _dedupe(c.evidence_for)
        return Hypothesis(id=hid, statement=text, service=c.service, fault_kind=c.kind, role="cause",
                          position="root", confidence=conf, evidence_for=ev_for,
                          evidence_against=_dedupe(c.evidence_against), signals=uniq,
                          proposals=_proposals(p, hid, c, window))


PLANNED_SLACK = pd.Timedelta("45min")  # launches ramp up before their announced start


def _mark_symptom(h: Hypothesis, above: list[Hypothesis], placement: dict[str, Any],
                  topo: dict[str, list[str]]) -> None:
    """A service whose anomaly a higher-ranked cause explains is its symptom, not a second root."""
    pl = placement.get(h.service)
    if pl is None or pl.is_root:
        return
    for top in above:
        if top.role == "cause" and top.service != h.service and top.service in pl.explained_by:
            h.role = "symptom"
            h.position = position(topo, top.service, h.service)  # type: ignore[assignment]
            h.statement += f" - a symptom of {top.service} ({top.id}): it went bad no earlier than {top.service}"
            return


def _covers(planned: list[dict[str, Any]], t: pd.Timestamp | None, slack: pd.Timedelta = PLANNED_SLACK) -> bool:
    """Whether a planned event is running at `t` (events may start a little after their traffic)."""
    if t is None:
        return True
    return any(pd.Timestamp(e["start"]) - slack <= t <= pd.Timestamp(e["end"]) for e in planned)


def _severe(f: Finding) -> bool:
    """Whether an anomaly is strong enough to make callers fail (and so explain their symptoms)."""
    if f.strength < 0.2 or "load_driven" in f.detail:
        return False
    if f.signal in ("5xx ratio", "probe failing"):
        return True
    if f.signal == "p95 latency":
        return float(f.detail.get("ratio", 0)) >= 3
    return bool(f.kind)


def _rate_limiting(red: Red, query_of: Any = str) -> list[Finding]:
    """429s or 401 storms: someone is being throttled or refused, which points at the clients."""
    out = []
    for svc, codes in red.codes.items():
        total = red.rate.get(svc)
        level = total.level if total is not None else 0.0
        n429 = codes.get("429", 0.0)
        if level > 0 and n429 / level >= 0.05:
            out.append(Finding(svc, "rate limiting (429)", min(n429 / level * 2, 1.0), total.onset if total else None,
                               Evidence(summary=f"{svc}: {n429:.1f}/s 429 responses ({n429 / level:.0%} of requests)",
                                        source="promql",
                                        query=query_of(svc),
                                        value={"per_s": round(n429, 3), "share": round(n429 / level, 4)}),
                               kind="abuse"))
    return out


def _confidence(score: float, share: float) -> float:
    """Map a rule score (and its share of all scores) to a probability-like number in [0, 1]."""
    base = 1 / (1 + np.exp(-2.2 * (score - 1.0)))
    return round(float(min(0.97, 0.6 * base + 0.4 * share)), 3)


def _dedupe(items: list[Evidence]) -> list[Evidence]:
    seen, out = set(), []
    for e in items:
        if e.summary not in seen:
            seen.add(e.summary)
            out.append(e)
    return out


_STATEMENTS = {
    "bad_deploy": "{svc}: a recent rollout introduced errors or latency",
    "cache_failure": "{svc}: the cache stopped serving hits; callers and the database feel the misses",
    "memory_leak": "{svc}: memory grows to the limit; containers are OOMKilled and restart",
    "db_pool_exhaustion": "{svc}: its database connection pool is saturated; requests wait and fail",
    "cpu_throttling": "{svc}: CPU quota throttling slows every request",
    "slow_dependency": "{svc}: got slow; callers time out on it",
    "abuse": "{svc}: errors and load concentrate on a few clients (abuse), not a code bug",
    "config_change": "{svc}: a configuration change broke it",
    "feature_flag": "{svc}: a feature-flag change broke it",
    "cert_expiry": "{svc}: its TLS certificate expired; callers fail the handshake",
    "disk_full": "{svc}: its disk is filling up (or full); writes fail when no space is left",
    "unknown": "{svc}: failing, cause not yet explained",
    "dependency_outage": "{svc}: this outside dependency fails or hangs; its callers' client metrics and probes show it",
    "consumer_lag": "{svc}: the consumer stalled or fell behind; its consumer-group lag keeps growing",
    "kv_cache_saturation": "{svc}: its KV cache is full; requests queue, are preempted and slow down",
}

#: Which catalogue signal confirms or refutes each fault kind, and what to look for in it.
_CONFIRM = {
    "bad_deploy": ("error_ratio", "error ratio over time: did it start with the rollout?"),
    "cache_failure": ("cache_hit_ratio", "hit ratio over time"),
    "memory_leak": ("memory", "memory in use: does it climb until a restart?"),
    "db_pool_exhaustion": ("pool_in_use", "connections in use against the pool maximum"),
    "cpu_throttling": ("cpu_throttling", "throttled share of CFS periods"),
    "slow_dependency": ("latency_p95", "p95 latency of the suspected slow service"),
    "abuse": ("codes", "4xx/5xx by code: rate limiting and refused logins"),
    "config_change": ("error_ratio", "error ratio over time: did it start with the change?"),
    "feature_flag": ("requests", "requests per second of the flagged service"),
    "cert_expiry": ("cert_expiry", "certificate expiry time (compare with time())"),
    "disk_full": ("disk_free_ratio", "free share of each volume: how fast is it falling?"),
    "unknown": ("codes", "responses by code"),
    "dependency_outage": ("error_ratio", "the callers' error ratio on this dependency"),
    "consumer_lag": ("consumer_lag", "consumer-group lag over time: still growing?"),
    "kv_cache_saturation": ("kv_cache_usage", "KV-cache usage against 1.0, and the queue behind it"),
}


def _proposals(p: Probe, hid: str, c: _Candidate, window: tuple[str, str] | None = None) -> list[Proposal]:
    """One to three read-only cells that confirm or refute the hypothesis (queries from the catalogue)."""
    signal, why = _CONFIRM.get(c.kind, _CONFIRM["unknown"])
    out = []
    q = p.signal_query(signal, c.service)
    if q:
        out.append(Proposal(id=f"{hid}-p1", title=why, code=f"%promql {q}\n",
                            rationale=f"confirm {c.kind} on {c.service}: {why}", hypothesis=hid))
    else:
        out.append(Proposal(id=f"{hid}-p1", title=f"signals readable for {c.service}",
                            code=f"%signals --service {_arg(c.service)}\n",
                            rationale=f"no {signal} signal was found for {c.service}; see what it exports "
                                      f"and add a mapping (docs/signals.md)", hypothesis=hid))
    codes = p.signal_query("codes", c.service) or p.signal_query("error_ratio", c.service)
    if codes and codes != q:
        out.append(Proposal(id=f"{hid}-p2", title=f"{c.service} errors by code", code=f"%promql {codes}\n",
                            rationale="refute: if the error mix did not change at the onset, look elsewhere",
                            hypothesis=hid))
    if c.kind in ("bad_deploy", "config_change", "feature_flag", "disk_full") and window:
        code = ("# recent changes on " + c.service + "\n"
                "from incidentbook.config import load_config\n"
                "from incidentbook.telemetry.sources import Telemetry\n"
                f"Telemetry.from_config(load_config()).changes({window[0]!r}, {window[1]!r}, service={c.service!r})\n")
        out.append(Proposal(id=f"{hid}-p3", title=f"recent changes on {c.service}", code=code,
                            rationale="which change landed right before the onset, and who made it",
                            hypothesis=hid))
    return out


def _arg(value: str) -> str:
    """A service name as one shell-like magic argument (quoted when it needs to be)."""
    import shlex

    return shlex.quote(value)


def _similar(ctx: InvestigationContext, h: Hypothesis, errors: list[str]) -> None:
    """Attach similar past incidents from the postmortem library, when one is available."""
    search = getattr(ctx.history, "search", None)
    if not callable(search):
        return
    try:
        found = search(f"{h.service} {h.fault_kind}")
    except Exception as e:  # noqa: BLE001 - the library is optional evidence, never fatal
        errors.append(f"history search for {h.service} {h.fault_kind}: {e}")
        return
    for item in list(found or [])[:3]:
        d = item.to_dict() if hasattr(item, "to_dict") else dict(item) if isinstance(item, dict) else {"id": str(item)}
        h.similar_incidents.append(d)
        h.evidence_for.append(Evidence(summary=f"similar past incident: {d.get('title') or d.get('id')}",
                                       source="history", link=str(d.get("link") or d.get("path") or "")))


