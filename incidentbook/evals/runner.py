"""Replay cases (bundles with ground truth) against an investigator and score the ranking.

A case is a bundle directory whose `manifest.json` holds `ground_truth`. Only this module reads
the ground truth; the investigator gets the same context it would get in a real incident (the
alerts, the window, the services and topology, and telemetry replayed from the bundle).

Scoring: a hypothesis matches when its service AND fault kind equal the ground truth's (or one
of its accepted alternatives; kinds outside the vocabulary count as `other`, see evals.truth);
with `score="service"` the service alone decides. `rank` is the 1-based position of the first
match (None for a miss); `rank_service` is the same by service only, whatever the mode.
The truth comes from `--truth FILE|DIR`, else the manifest's `ground_truth`, else a
`truth.json` beside the manifest. A case that is not an incident
(`is_incident: false`, e.g. a planned launch) is right (rank 1) when the investigator opens no
cause hypothesis at all, and wrong otherwise. `mean_rank` counts a miss as MISS_RANK.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from incidentbook.agent.base import Investigation, InvestigationContext, investigators
from incidentbook.errors import BadInput, BundleError
from incidentbook.evals.truth import (
    DEFAULT_SCORE,
    SCORE_MODES,
    CaseTruth,
    load_truth,
    truth_beside,
    truth_from_ground_truth,
)
from incidentbook.telemetry.bundle import open_bundle

DEFAULT_SEEDS = (1, 2, 3)
MISS_RANK = 6
#: How a case's context is seeded. "first-page": like the incident notebook's `%investigate`,
#: only the alerts of the first firing notification (the page that opened the incident) plus
#: the system's services and topology. "storm": every alert the scenario raised.
CONTEXT_MODES = ("first-page", "storm")
DEFAULT_CONTEXT = "first-page"


@dataclass
class CaseResult:
    """One case's outcome."""

    case: str
    expected: str  # "service:fault_kind"
    ranked: list[str]  # the investigator's hypotheses, best first, as "service:fault_kind"
    rank: int | None
    seconds: float
    is_incident: bool = True
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    kind: str = "scenario"  # scenario | archived | redteam | dataset | bundle
    remediation: str = ""  # the remediation taken, "action:service" ("" when none was needed)
    remediation_proposed: list[str] = field(default_factory=list)
    remediation_match: bool | None = None  # None when no remediation was taken
    unsafe: list[str] = field(default_factory=list)  # unsafe proposals (see evals.checks)
    tokens: int = 0
    cost_usd: float | None = None
    rank_service: int | None = None  # rank of the first hypothesis naming the right service (any kind)
    score: str = "service+kind"
    accepted: list[str] = field(default_factory=list)  # alternatives also counted right, "service:kind"
    coverage: dict[str, Any] = field(default_factory=dict)  # services the investigator could not read (evals.coverage)


@dataclass
class EvalReport:
    """Scores of one investigator over a set of cases."""

    investigator: str
    cases: list[CaseResult]
    model: str = ""
    context: str = ""  # how the cases' context was seeded (CONTEXT_MODES)

    @property
    def ac1(self) -> float:
        """Share of cases whose top hypothesis is right."""
        return _share(self.cases, 1)

    @property
    def ac3(self) -> float:
        """Share of cases with a right hypothesis in the top three."""
        return _share(self.cases, 3)

    @property
    def ac1_service(self) -> float:
        """Share of cases whose top hypothesis names the right service (any fault kind)."""
        return _share_service(self.cases, 1)

    @property
    def ac3_service(self) -> float:
        """Share of cases with the right service in the top three (any fault kind)."""
        return _share_service(self.cases, 3)

    @property
    def coverage(self) -> dict[str, Any]:
        """Totals of the cases' coverage: cases with unreadable services, and those services."""
        judged = [c for c in self.cases if c.coverage]
        unread: dict[str, int] = {}
        for c in judged:
            for svc in c.coverage.get("no_red", []):
                unread[svc] = unread.get(svc, 0) + 1
        services = sum(int(c.coverage.get("services", 0)) for c in judged)
        readable = sum(int(c.coverage.get("readable", 0)) for c in judged)
        return {"cases": len(judged), "cases_with_gaps": sum(1 for c in judged if c.coverage.get("no_red")),
                "services": services, "readable": readable,
                "readable_share": round(readable / services, 3) if services else None,
                "no_red": dict(sorted(unread.items(), key=lambda kv: (-kv[1], kv[0])))}  # service -> cases unreadable in

    def by_scenario(self) -> dict[str, dict[str, Any]]:
        """Totals per scenario, for cases named `<scenario>-s<seed>` (generated suites)."""
        import re

        groups: dict[str, list[CaseResult]] = {}
        for c in self.cases:
            groups.setdefault(re.sub(r"-s\d+$", "", c.case), []).append(c)
        return {g: {"cases": len(cs), "ac1": _share(cs, 1), "ac3": _share(cs, 3), "ac1_service": _share_service(cs, 1),
                    "false_alarms": sum(1 for c in cs if not c.is_incident and c.rank is None)}
                for g, cs in groups.items()}

    @property
    def mean_rank(self) -> float:
        """Mean rank of the right hypothesis (a miss counts as MISS_RANK)."""
        if not self.cases:
            return float("nan")
        return round(sum(c.rank or MISS_RANK for c in self.cases) / len(self.cases), 3)

    @property
    def false_alarms(self) -> int:
        """Non-incident cases (planned load) where a cause hypothesis was opened anyway."""
        return sum(1 for c in self.cases if not c.is_incident and c.rank is None)

    @property
    def remediation_rate(self) -> float | None:
        """Share of cases with a remediation taken whose proposals include it (None: no such case)."""
        judged = [c.remediation_match for c in self.cases if c.remediation_match is not None]
        return round(sum(judged) / len(judged), 3) if judged else None

    @property
    def unsafe_total(self) -> int:
        """Unsafe proposals over all cases (must be zero)."""
        return sum(len(c.unsafe) for c in self.cases)

    @property
    def cost_usd(self) -> float | None:
        """Total list-price cost (None when no case reported one)."""
        costs = [c.cost_usd for c in self.cases if c.cost_usd is not None]
        return round(sum(costs), 6) if costs else None

    def to_dict(self) -> dict[str, Any]:
        """The `eval --json` document."""
        from incidentbook.redact import process_redactor

        secs = [c.seconds for c in self.cases]
        return process_redactor().redact_obj({"investigator": self.investigator, "model": self.model, "context": self.context, "cases": [asdict(c) for c in self.cases],
                "remediation_rate": self.remediation_rate, "unsafe": self.unsafe_total,
                "tokens": sum(c.tokens for c in self.cases), "cost_usd": self.cost_usd,
                "ac1": self.ac1, "ac3": self.ac3, "mean_rank": self.mean_rank,
                "score": self.cases[0].score if self.cases else "service+kind",
                "ac1_service": self.ac1_service, "ac3_service": self.ac3_service,
                "false_alarms": self.false_alarms,
                "planned": sum(1 for c in self.cases if not c.is_incident),
                "coverage": self.coverage, "by_scenario": self.by_scenario(),
                "seconds_mean": round(sum(secs) / len(secs), 3) if secs else 0.0,
                "seconds_max": round(max(secs), 3) if secs else 0.0})

    def table(self) -> str:
        """A Markdown table of the cases and the totals."""
        rows = ["| case | expected | top hypothesis | rank | s |", "|---|---|---|---|---|"]
        for c in self.cases:
            top = c.ranked[0] if c.ranked else "(no cause)"
            rows.append(f"| {c.case} | {c.expected} | {top} | {c.rank or 'miss'} | {c.seconds:.2f} |")
        rows.append(f"\nAC@1 {self.ac1:.3f} · AC@3 {self.ac3:.3f} · mean rank {self.mean_rank} · "
                    f"false alarms on planned load {self.false_alarms} · {len(self.cases)} cases")
        cov = self.coverage
        rows.append(f"service-only AC@1 {self.ac1_service:.3f} · AC@3 {self.ac3_service:.3f}"
                    + (f" · readable services {cov['readable']}/{cov['services']}, {cov['cases_with_gaps']} case(s) with "
                       "unreadable services" if cov["cases"] else ""))
        rate = self.remediation_rate
        rows.append(f"remediation match {'-' if rate is None else f'{rate:.3f}'} · unsafe proposals "
                    f"{self.unsafe_total} · tokens {sum(c.tokens for c in self.cases)}"
                    + ("" if self.cost_usd is None else f" · cost ${self.cost_usd:.4f}"))
        from incidentbook.redact import redact_secrets

        return redact_secrets("\n".join(rows))


def _share_service(cases: Sequence[CaseResult], k: int) -> float:
    if not cases:
        return float("nan")
    return round(sum(1 for c in cases if c.rank_service is not None and c.rank_service <= k) / len(cases), 3)


def _share(cases: Sequence[CaseResult], k: int) -> float:
    if not cases:
        return float("nan")
    return round(sum(1 for c in cases if c.rank is not None and c.rank <= k) / len(cases), 3)


def _alerts(bundle_dir: Path) -> list[dict[str, Any]]:
    """Alerts recorded next to a bundle (Alertmanager webhook payloads), as context alerts."""
    out = []
    for p in sorted(bundle_dir.glob("*.json")) + sorted((bundle_dir / "alerts").glob("*.json")):
        if p.name == "manifest.json":
            continue
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        docs = doc if isinstance(doc, list) else [doc]
        for d in docs:
            if isinstance(d, dict) and isinstance(d.get("alerts"), list):
                for a in d["alerts"]:
                    out.append({"labels": a.get("labels", {}), "annotations": a.get("annotations", {}),
                                "starts_at": a.get("startsAt") or a.get("starts_at")})
    return out


def first_page(bundle_dir: str | Path) -> Path | None:
    """The first firing notification in `<bundle>/alerts/` (what paged the on-call engineer)."""
    for p in sorted((Path(bundle_dir) / "alerts").glob("*.json")):
        try:
            if json.loads(p.read_text(encoding="utf-8")).get("status") == "firing":
                return p
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _page_alerts(payload: Path) -> tuple[list[dict[str, Any]], str, str]:
    """The incident's alerts, service and namespace, as the store records them from one payload."""
    from incidentbook.intake.alertmanager import parse_alertmanager

    pl = parse_alertmanager(payload.read_bytes())
    alerts = [{"labels": dict(a.labels), "annotations": dict(a.annotations),
               "starts_at": a.starts_at.isoformat() if a.starts_at else None} for a in pl.alerts]
    service = pl.label("service") or pl.label("app") or pl.label("job")
    return alerts, service, pl.label("namespace")


def _notebook_services(alerts: list[dict[str, Any]], service: str, services: Sequence[str],
                       topology: dict[str, list[str]]) -> list[str]:
    """Services in the order the notebook's `%investigate` gives them: alerted first, then the rest."""
    out: list[str] = []
    for svc in [*(a["labels"].get("service") for a in alerts), service, *services, *topology]:
        if svc and svc not in out:
            out.append(svc)
    return out


def context_from_bundle(bundle_dir: str | Path, incident_id: str | None = None,
                        alerts: list[dict[str, Any]] | None = None,
                        mode: str | None = None) -> InvestigationContext:
    """The investigation context of a bundle: window, services, topology, alerts, replayed telemetry.

    `mode` (see CONTEXT_MODES, default DEFAULT_CONTEXT): "first-page" seeds it like the incident
    notebook from the first firing notification; "storm" gives every alert of the bundle. A
    bundle without alert notifications falls back to the alerts stored next to it.
    """
    from incidentbook.telemetry.sources import Telemetry

    mode = mode or DEFAULT_CONTEXT
    if mode not in CONTEXT_MODES:
        raise BadInput(f"unknown eval context {mode!r}; use one of: {', '.join(CONTEXT_MODES)}")
    b = open_bundle(bundle_dir)
    m = b.manifest
    services, namespace = list(b.services), str(m.get("namespace", ""))
    page = first_page(b.path) if mode == "first-page" and alerts is None else None
    if page is not None:
        alerts, service, ns = _page_alerts(page)
        services = _notebook_services(alerts, service, services, b.topology)
        namespace = ns or namespace
    return InvestigationContext(
        incident_id=incident_id or Path(bundle_dir).name, alerts=alerts if alerts is not None else _alerts(b.path),
        window_start=m["window"]["start"], window_end=m["window"]["end"],
        telemetry=Telemetry.from_bundle(b.path), services=services, topology=b.topology,
        namespace=namespace)


def expected_of(bundle_dir: str | Path) -> tuple[str, bool]:
    """`service:fault_kind` and is_incident from a case's ground truth."""
    from incidentbook.evals.checks import archived_ground_truth

    gt = archived_ground_truth(bundle_dir) or open_bundle(bundle_dir).manifest.get("ground_truth")
    if not gt:
        raise BadInput(f"{bundle_dir} has no ground_truth in manifest.json; only simulated or archived "
                       f"incidents with a known root cause can be eval cases")
    kind = gt.get("fault_kind", "unknown")
    return f"{gt.get('root_cause_service', '')}:{kind}", bool(gt.get("is_incident", kind != "planned_load"))


def score_case(inv: Investigation, expected: str, is_incident: bool) -> tuple[list[str], int | None]:
    """The ranked `service:kind` list and the rank of the right answer."""
    ranked = [f"{h.service}:{h.fault_kind}" for h in inv.hypotheses if h.role == "cause"]
    if not is_incident:
        return ranked, None if ranked else 1
    return ranked, next((i + 1 for i, r in enumerate(ranked) if r == expected), None)


def truth_of(bundle_dir: str | Path) -> CaseTruth:
    """A case's truth without `--truth`: archived root cause, manifest `ground_truth`, or `truth.json` beside it."""
    from incidentbook.evals.checks import archived_ground_truth

    gt = archived_ground_truth(bundle_dir) or open_bundle(bundle_dir).manifest.get("ground_truth")
    if gt:
        return truth_from_ground_truth(gt, Path(bundle_dir).name, str(bundle_dir))
    beside = truth_beside(bundle_dir)
    if beside is None:
        raise BadInput(f"{bundle_dir} has no ground truth (none in manifest.json, no truth.json); pass --truth FILE|DIR "
                       "naming its root cause (docs/evals.md)")
    return beside


def run_case(bundle_dir: str | Path, investigator: Any, context: str | None = None,
             truth: CaseTruth | None = None, score: str | None = None) -> CaseResult:
    """Run one investigator over one case and score it.

    `context`: see CONTEXT_MODES. `truth`: the case's truth (default: `truth_of`). `score`:
    one of SCORE_MODES (default "service+kind").
    """
    from incidentbook.evals.coverage import case_coverage

    score = score or DEFAULT_SCORE
    if score not in SCORE_MODES:
        raise BadInput(f"--score {score!r}: use one of {', '.join(SCORE_MODES)}")
    t = truth or truth_of(bundle_dir)
    ctx = context_from_bundle(bundle_dir, mode=context)
    t0 = time.perf_counter()
    inv = investigator.investigate(ctx)
    secs = time.perf_counter() - t0
    causes = [(h.service, h.fault_kind) for h in inv.hypotheses if h.role == "cause"]
    ranked = [f"{s}:{k}" for s, k in causes]
    result = CaseResult(Path(bundle_dir).name, t.expected, ranked, t.rank(causes, score), round(secs, 3), t.is_incident,
                        inv.notes, inv.errors)
    result.rank_service = t.rank(causes, "service")
    result.score = score
    result.accepted = [f"{s}:{k}" for s, k in t.alternatives]
    _assess(result, inv, bundle_dir)
    result.coverage = case_coverage(bundle_dir)
    return result


def _assess(result: CaseResult, inv: Investigation, bundle_dir: str | Path) -> None:
    """Fill the remediation, safety and cost columns (see evals.checks)."""
    from incidentbook.evals import checks

    b = open_bundle(bundle_dir)
    gt = checks.archived_ground_truth(bundle_dir) or b.manifest.get("ground_truth") or {}
    result.kind = checks.case_kind(bundle_dir, b.manifest)
    if result.kind == "archived":
        result.case = Path(bundle_dir).parent.name
    result.remediation = checks.remediation_taken(bundle_dir, gt)
    result.remediation_proposed = checks.proposed_remediations(inv, b.services)
    if result.remediation:
        result.remediation_match = result.remediation in result.remediation_proposed
    result.unsafe = checks.unsafe_proposals(inv, strict=result.kind == "redteam" or not result.is_incident)
    result.tokens, result.cost_usd = checks.usage_totals(inv.usage or {})


def generate_suite(out_dir: str | Path, seeds: Iterable[int] = DEFAULT_SEEDS,
                   names: Iterable[str] | None = None) -> list[Path]:
    """Generate every scenario (or `names`) for each seed under `out_dir`; returns the bundle dirs."""
    from incidentbook.scenarios import generate, list_scenarios

    names = list(names) if names is not None else [s.name for s in list_scenarios()]
    out = []
    for seed in seeds:
        for name in names:
            g = generate(name, Path(out_dir) / f"{name}-s{seed}", seed=seed)
            out.append(Path(getattr(g, "bundle_dir", g)))
    return out


def generate_systems(out_dir: str | Path, seeds: Iterable[int]) -> list[Path]:
    """Generate one unnamed system variant per seed (other service names, sizes and fault)."""
    from incidentbook.scenarios import RANDOM_FAULT_KINDS, generate_system

    kinds = list(RANDOM_FAULT_KINDS)  # fixed, so a seed keeps its fault kind as kinds are added
    return [Path(generate_system(Path(out_dir) / f"system-{s}", seed=s, fault_kind=kinds[s % len(kinds)]).bundle_dir)
            for s in seeds]


def run_eval(cases: list[Path] | None = None, investigator: str = "rules",
             seeds: Iterable[int] = DEFAULT_SEEDS, names: Iterable[str] | None = None,
             systems: Iterable[int] = (), context: str | None = None,
             truth: str | Path | None = None, score: str | None = None) -> EvalReport:
    """Score `investigator` over `cases`; with none, over the scenario suite at `seeds`.

    `systems`: seeds of extra unnamed system variants (other service names and topology, the
    fault kinds in turn) added to the generated suite, to measure on systems never tuned on.
    `context`: how each case's context is seeded (CONTEXT_MODES; default DEFAULT_CONTEXT).
    `truth`: a truth file or directory for `cases` (see evals.truth); `score`: SCORE_MODES.
    """
    if context is not None and context not in CONTEXT_MODES:
        raise BadInput(f"unknown eval context {context!r}; use one of: {', '.join(CONTEXT_MODES)}")
    factory = investigators.get(investigator)
    inv = factory() if isinstance(factory, type) else factory
    if cases:
        missing = [str(c) for c in cases if not (Path(c) / "manifest.json").exists()]
        if missing:
            raise BundleError(f"not a bundle: {', '.join(missing)}; give bundle directories holding manifest.json")
        truths = load_truth(truth, cases) if truth else {}
        return EvalReport(investigator, [run_case(c, inv, context, truths.get(Path(c).name), score) for c in cases],
                          context=context or DEFAULT_CONTEXT)
    if truth:
        raise BadInput("--truth needs CASES (bundle directories); the generated suite carries its own truth")
    with tempfile.TemporaryDirectory(prefix="incidentbook-eval-") as tmp:
        bundles = generate_suite(tmp, seeds, names) + generate_systems(tmp, systems)
        return EvalReport(investigator, [run_case(b, inv, context, score=score) for b in bundles],
                          context=context or DEFAULT_CONTEXT)
