"""What investigators take and return: the hypothesis board's data model.

Investigators run headless (runbooks, evals, intake) and never import the kernel extension;
they never read a bundle's ground truth. Everything here is a plain dataclass that serialises
to JSON (`to_dict` / `from_dict`) so boards can be stored, shown and compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, TypeVar

from incidentbook.registry import Registry

#: The fault-kind vocabulary a hypothesis names (shared with scenarios and evals). An investigator
#: may name a more specific kind outside it (the rules name `kv_cache_saturation`); evals score
#: such kinds as `other`.
FAULT_KINDS: dict[str, str] = {
    "bad_deploy": "a rollout introduced errors or latency",
    "cache_failure": "a cache stopped serving hits; its callers and its backing store feel the misses",
    "memory_leak": "memory grows until the container is OOMKilled and restarts",
    "db_pool_exhaustion": "a service's database connection pool is saturated; callers wait and time out",
    "cpu_throttling": "CPU quota throttling (e.g. a noisy neighbour) slows a service",
    "slow_dependency": "a dependency got slow and timeouts cascade to its callers",
    "abuse": "errors or load concentrated on a few clients (abuse, fraud, a misbehaving integration)",
    "config_change": "a configuration change broke a service",
    "feature_flag": "a feature-flag change broke a service",
    "cert_expiry": "a TLS certificate expired or is about to",
    "planned_load": "expected load from a planned event (not a fault)",
    "disk_full": "a volume or filesystem fills up; writes fail when no space is left",
    "dependency_outage": "a dependency outside the system (a third-party API) fails or hangs; only its callers' "
                         "metrics and probes show it",
    "consumer_lag": "a consumer stalls or falls behind; its consumer-group lag grows",
    "unknown": "not yet explained",
}

Role = Literal["cause", "symptom"]
Position = Literal["root", "upstream", "downstream", "unknown"]
Status = Literal["open", "confirmed", "refuted"]

T = TypeVar("T")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Evidence(_Serialisable):
    """One observation for or against a hypothesis: what was asked and what came back."""

    summary: str
    source: str = ""  # promql | logql | k8s | changes | context | history | rule
    query: str = ""
    value: Any = None  # the number(s) the query returned, JSON-serialisable
    link: str = ""


@dataclass
class Signal(_Serialisable):
    """An anomalous signal and how the hypothesis explains it."""

    name: str  # e.g. "error ratio", "cache hit ratio"
    service: str
    role: Role = "symptom"
    onset: str | None = None  # ISO time the change point was detected
    query: str = ""


@dataclass
class Proposal(_Serialisable):
    """A next cell to run. It does nothing until a human runs it: running it is the approval."""

    id: str
    code: str
    rationale: str
    hypothesis: str | None = None
    kind: Literal["read", "write"] = "read"
    author: str = "incidentbook"
    created: str = field(default_factory=_now)
    title: str = ""


@dataclass
class Hypothesis(_Serialisable):
    """A suspected cause, with the evidence for and against it and cells that would test it."""

    id: str
    statement: str
    service: str
    fault_kind: str = "unknown"
    role: Role = "cause"
    position: Position = "unknown"
    confidence: float = 0.0
    status: Status = "open"
    evidence_for: list[Evidence] = field(default_factory=list)
    evidence_against: list[Evidence] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    similar_incidents: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hypothesis:
        d = dict(data)
        d["evidence_for"] = [Evidence.from_dict(e) for e in d.get("evidence_for", [])]
        d["evidence_against"] = [Evidence.from_dict(e) for e in d.get("evidence_against", [])]
        d["signals"] = [Signal.from_dict(s) for s in d.get("signals", [])]
        d["proposals"] = [Proposal.from_dict(p) for p in d.get("proposals", [])]
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class InvestigationContext:
    """Everything an investigator may look at. `telemetry` is a `telemetry.sources.Telemetry`."""

    incident_id: str
    alerts: list[dict[str, Any]]  # each: {"labels": {...}, "annotations": {...}, "starts_at": iso}
    window_start: str
    window_end: str
    telemetry: Any
    services: list[str] = field(default_factory=list)
    topology: dict[str, list[str]] = field(default_factory=dict)  # service -> services it calls
    namespace: str = ""
    question: str = ""
    history: Any = None  # postmortem library search API, when present
    # The signal catalogue (built-in dialects + [signals.*] mappings); None: the built-in one.
    catalogue: Any = None
    # Called as each hypothesis / proposal is found, so a board can fill while the investigation runs.
    on_hypothesis: Callable[[Hypothesis], None] | None = None
    on_proposal: Callable[[Proposal], None] | None = None


@dataclass
class Investigation(_Serialisable):
    """An investigator's answer: ranked hypotheses plus what it noticed along the way."""

    incident_id: str
    investigator: str
    hypotheses: list[Hypothesis] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "a planned launch explains the traffic rise"
    errors: list[str] = field(default_factory=list)  # queries that failed, shown, not hidden
    model: str = ""
    started: str = field(default_factory=_now)
    duration_s: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)  # tokens, cost for model investigators
    # Which services had readable signals (telemetry.signals.Discovery.coverage): the reason
    # behind a quiet board, and the `coverage` field of `eval --json`.
    coverage: dict[str, Any] = field(default_factory=dict)

    @property
    def proposals(self) -> list[Proposal]:
        return [p for h in self.hypotheses for p in h.proposals]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Investigation:
        d = dict(data)
        d["hypotheses"] = [Hypothesis.from_dict(h) for h in d.get("hypotheses", [])]
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Investigator(Protocol):
    """Turns an incident's context into ranked hypotheses. Must be read-only."""

    name: str

    def investigate(self, ctx: InvestigationContext) -> Investigation: ...


#: Investigators by name (`[agent] investigator = "rules"`); entry point group `incidentbook.investigators`.
investigators: Registry[Any] = Registry("incidentbook.investigators", "investigator")
