"""Deciding and carrying out write actions under the autonomy policy.

`decide` picks the mode for one (environment, severity, action) triple: an active grant first,
then the most specific rule, then the default. `Autopilot.submit` carries the decision out:

- `propose`: nothing runs; the decision is audited and the caller proposes the cell as usual;
- `cooldown`: the action is announced (audit entry `cooldown_started`, plus the optional
  `announce` hook, e.g. a Slack post) and runs after the window unless a veto arrives. A veto is
  an audit entry (`veto`), so anyone can cancel from another process with
  `incidentbook autonomy veto ACTION-ID`;
- `auto`: runs at once.

Running means a request to the action broker (allowlist, blast radius, dry run) approved by the
policy decision, never where the environment needs a second person. A rule allows cooldown or
auto only for the author and target it names. Every decision, veto and outcome is audited.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from incidentbook.actions.audit import AuditLog
from incidentbook.actions.policy import ActionsConfig
from incidentbook.autonomy.policy import CAUTION, AutonomyPolicy, Rule
from incidentbook.errors import BadInput, IncidentbookError, NotFound

ACTOR = "incidentbook-autonomy"


@dataclass
class Decision:
    """What the policy says for one action, and why."""

    mode: str
    cooldown_s: float
    reason: str  # the rule or grant that applied
    grant: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def decide(policy: AutonomyPolicy, environment: str, severity: str, action: str,
           now: datetime | None = None, *, author: str | None = None, target: str | None = None) -> Decision:
    """The mode for `action` in `environment` at `severity`: active grant, else most specific rule, else propose.

    A rule or grant allowing `cooldown` or `auto` applies only when it names `author` (who
    proposed the action) and `target` (`namespace/name`); `default` never grants autonomy.
    """
    now = now or datetime.now(timezone.utc)

    def best(rules: list[Rule]) -> Rule | None:
        hits = [r for r in rules if r.matches(environment, severity, action)
                and (r.mode == "propose" or r.names(author, target))]
        return max(hits, key=lambda r: (r.specificity, CAUTION[r.mode]), default=None)

    grant = best([g for g in policy.grants if g.active(now)])
    if grant is not None:
        g = grant  # a Grant
        who = f" by {g.granted_by}" if getattr(g, "granted_by", "") else ""
        until = g.expires.strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[attr-defined]
        return Decision(g.mode, g.cooldown_s, f"grant{who} until {until}: {g.describe()}", grant=True)
    rule = best(policy.rules)
    if rule is not None:
        return Decision(rule.mode, rule.cooldown_s, f"rule {rule.describe()}")
    if policy.default != "propose":
        return Decision("propose", 0.0, f"no rule names author {author!r} and target {target!r}; default "
                        f"{policy.default!r} never grants autonomy on its own")
    return Decision("propose", 0.0, "default mode 'propose' (no rule matches)")


@dataclass
class ActionRequest:
    """A write action the assistant (or a runbook) wants to take."""

    kind: str  # rollout_undo | scale | restart
    name: str
    namespace: str
    severity: str
    incident_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    #: Who proposed it: "incidentbook" (a runbook) or "<investigator>:<model>".
    author: str = ""
    proposal: str = ""
    id: str = field(default_factory=lambda: f"AUTO-{datetime.now(timezone.utc):%Y%m%d}-{secrets.token_hex(3).upper()}")

    @property
    def summary(self) -> str:
        """`restart shop/checkout`."""
        extra = f" to {self.params['replicas']} replicas" if "replicas" in self.params else ""
        return f"{self.kind} {self.namespace}/{self.name}{extra}"


@dataclass
class Outcome:
    """How a submitted request ended: proposed, vetoed, executed, denied or failed."""

    request_id: str
    status: str
    decision: Decision
    detail: str = ""
    action: dict[str, Any] = field(default_factory=dict)
    vetoed_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**asdict(self), "decision": self.decision.to_dict()}


def vetoes(audit_path: Path, request_id: str) -> list[dict[str, Any]]:
    """The veto entries recorded for `request_id`."""
    return [e for e in AuditLog(audit_path).entries() if e.get("event") == "veto" and e.get("request_id") == request_id]


def veto(audit_path: str | Path, request_id: str, who: str, reason: str = "", *,
         log: AuditLog | None = None) -> dict[str, Any]:
    """Veto a request that is cooling down (an audit entry the waiting autopilot sees).

    `log`: the workspace's keyed audit log (`incidentbook.actions.broker.audit_log_for`).
    """
    log = log or AuditLog(audit_path)
    started = [e for e in log.entries() if e.get("request_id") == request_id]
    if not started:
        raise NotFound(f"no autonomous action {request_id} in {audit_path}; list them with `incidentbook autonomy pending`")
    last = started[-1].get("event")
    if last not in ("cooldown_started", "veto"):
        raise BadInput(f"{request_id} is no longer cooling down (last: {last}); nothing to veto")
    return log.append("veto", request_id=request_id, user=who, reason=reason)


def cooling_down(audit_path: str | Path) -> list[dict[str, Any]]:
    """Requests announced with a cooldown that have not ended yet (oldest first)."""
    open_: dict[str, dict[str, Any]] = {}
    for e in AuditLog(audit_path).entries():
        rid = e.get("request_id")
        if not rid:
            continue
        if e.get("event") == "cooldown_started":
            open_[rid] = e
        elif e.get("event") in ("vetoed", "autonomy_executed", "autonomy_denied", "autonomy_failed"):
            open_.pop(rid, None)
    return list(open_.values())


class Autopilot:
    """Carries out write actions under an AutonomyPolicy, through the action broker."""

    def __init__(self, policy: AutonomyPolicy, actions: ActionsConfig, audit_path: str | Path, *,
                 broker: Any = None, announce: Callable[[ActionRequest, Decision], None] | None = None,
                 poll_s: float = 0.05) -> None:
        self.policy = policy
        self.actions = actions
        self.audit_path = Path(audit_path)
        #: The broker executes; the autopilot writes its decisions with the broker's key.
        self.broker = broker
        self.audit = broker.audit if broker is not None else AuditLog(self.audit_path)
        self.announce = announce
        self.poll_s = poll_s

    def _fields(self, req: ActionRequest, d: Decision) -> dict[str, Any]:
        return {"request_id": req.id, "kind": req.kind, "namespace": req.namespace, "name": req.name,
                "params": req.params, "severity": req.severity, "incident_id": req.incident_id,
                "environment": self.actions.current_environment, "mode": d.mode, "policy": d.reason,
                "user": ACTOR, "author": req.author}

    def submit(self, req: ActionRequest, now: datetime | None = None) -> Outcome:
        """Decide, audit the decision, and propose, wait for a veto, or run (see module docstring)."""
        from incidentbook.actions.broker import environment_for

        try:
            env = environment_for(self.actions, req.namespace)[0]
        except IncidentbookError:
            env = self.actions.current_environment
        d = decide(self.policy, env, req.severity, req.kind, now, author=req.author or None,
                   target=f"{req.namespace}/{req.name}")
        self.audit.append("autonomy_decision", **self._fields(req, d), cooldown_s=d.cooldown_s, reason=req.reason)
        if d.mode == "propose":
            return Outcome(req.id, "proposed", d, f"{req.summary} needs a person: {d.reason}")
        if d.mode == "cooldown":
            self.audit.append("cooldown_started", **self._fields(req, d), cooldown_s=d.cooldown_s,
                              runs_at=_iso(time.time() + d.cooldown_s))
            if self.announce is not None:
                self.announce(req, d)
            v = self._wait_for_veto(req.id, d.cooldown_s)
            if v is not None:
                self.audit.append("vetoed", **self._fields(req, d), vetoed_by=v.get("user", ""),
                                  veto_reason=v.get("reason", ""))
                return Outcome(req.id, "vetoed", d, f"{req.summary} cancelled by {v.get('user')}: {v.get('reason', '')}",
                               vetoed_by=str(v.get("user", "")))
        return self._run(req, d)

    def _wait_for_veto(self, request_id: str, seconds: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + seconds
        while True:
            found = vetoes(self.audit_path, request_id)
            if found:
                return found[0]
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(self.poll_s, left))

    def _run(self, req: ActionRequest, d: Decision) -> Outcome:
        from incidentbook.actions.broker import AUTONOMY_ACTOR, Identity

        if self.broker is None:
            raise IncidentbookError("autonomous actions run only inside the action broker (incidentbook serve)")
        reason = f"autonomy ({d.mode}): {d.reason}" + (f"; {req.reason}" if req.reason else "")
        try:
            a = self.broker.request(Identity(AUTONOMY_ACTOR, "autonomy"), {
                "incident": req.incident_id or "", "proposal": req.proposal, "verb": req.kind,
                "target": {"namespace": req.namespace, "name": req.name}, "params": req.params, "reason": reason})
            if a.status == "pending":
                a = self.broker.approve_autonomous(a.id, d.reason)
        except IncidentbookError as e:
            event = "autonomy_denied" if type(e).__name__ == "ActionDenied" else "autonomy_failed"
            self.audit.append(event, **self._fields(req, d), error=str(e))
            return Outcome(req.id, event.split("_")[1], d, str(e))
        self.audit.append("autonomy_executed", **self._fields(req, d), action_id=a.id, status=a.status)
        return Outcome(req.id, "executed" if a.status == "executed" else a.status, d, a.summary, a.to_dict())


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
