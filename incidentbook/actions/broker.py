"""The action broker: the one process that holds write credentials and the audit key.

Kernels hold neither. `ib.act.*` in a kernel sends a *request* (incident, proposal, verb, target,
params, reason) over the broker's Unix socket; the broker decides the environment from the
target namespace (never from the kernel's variables), checks the policy, asks the cluster for a
server-side dry run with its own credentials and records a *pending action*:

    {id: "ACT-…", incident, proposal, verb, target, params, dry_run, requested_by,
     approvals: [{who, via, at}], status, hash}

Approval is a separate, explicit act by an authenticated person, bound to the action id and the
hash of what will run:

- `cli`: `incidentbook actions approve ACT-…`; the approver is the OS user of the socket peer
  (`SO_PEERCRED`), and a peer started from a notebook kernel (papermill, nbclient, ipykernel) is
  refused, so no cell, Run All or headless run can approve;
- `lab`: the Approve page of the Jupyter server extension, which relays the server-authenticated
  user (the JupyterHub user in team mode) with the broker's relay token and a one-time nonce.

The second approver in production (`second_approver = true`) must be a different identity than
the requester. Executing is idempotent by action id: an executed action never runs again, and
re-sending the same request returns the existing action. Every step is appended to the keyed,
checkpointed audit log; the broker's state is rebuilt from the entries that verify, so a line
appended by hand is never acted on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pwd
import secrets
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from incidentbook.actions.audit import AuditLog, StoreAnchor, load_audit_key, verify
from incidentbook.actions.kube import KubeExecutor, Plan, api_client
from incidentbook.actions.policy import ACTION_KINDS, ActionsConfig, EnvironmentPolicy
from incidentbook.errors import (
    ActionDenied,
    ApprovalRequired,
    BadInput,
    IncidentbookError,
    NotFound,
)

SOCKET_NAME = "broker.sock"
SOCKET_ENV = "INCIDENTBOOK_BROKER_SOCKET"
RELAY_TOKEN_ENV = "INCIDENTBOOK_RELAY_TOKEN"
#: Environment variables a kernel must never inherit: write credentials and the broker's secrets.
SECRET_ENV = ("KUBECONFIG", "INCIDENTBOOK_AUDIT_KEY", RELAY_TOKEN_ENV, "AWS_SECRET_ACCESS_KEY",
              "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_CLIENT_SECRET")
MAX_MESSAGE = 1 << 20
#: Processes whose descendants may request but never approve (a notebook kernel or its runner).
_KERNEL_MARKERS = ("ipykernel", "papermill", "nbclient", "nbmake", "nbconvert", "jupyter-execute")
AUTONOMY_ACTOR = "incidentbook-autonomy"
_ERRORS: dict[str, type[IncidentbookError]] = {c.__name__: c for c in
                                               (ActionDenied, ApprovalRequired, BadInput, NotFound, IncidentbookError)}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def socket_path(home: str | Path) -> Path:
    """Where the broker listens: $INCIDENTBOOK_BROKER_SOCKET, else `<home>/broker.sock`.

    A Unix socket path holds at most ~107 bytes; for a deeper home the socket goes to the temp
    directory under a name derived from the home, so kernels and the broker still agree.
    """
    if os.environ.get(SOCKET_ENV):
        return Path(os.environ[SOCKET_ENV])
    path = Path(home).expanduser().resolve() / SOCKET_NAME
    if len(str(path).encode()) > 100:
        import tempfile

        digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"incidentbook-{digest}.sock"
    return path


def kernel_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `env` (default os.environ) without write credentials or broker secrets."""
    src = dict(os.environ if env is None else env)
    for k in SECRET_ENV:
        src.pop(k, None)
    return src


@dataclass(frozen=True)
class Identity:
    """Who the broker authenticated, and through which channel."""

    user: str
    via: str


def _validate_target(verb: Any, name: Any, namespace: Any, params: Any) -> tuple[str, str, str, dict[str, Any]]:
    import re

    if verb not in ACTION_KINDS:
        raise BadInput(f"verb {verb!r} is not a write action; use one of {list(ACTION_KINDS)}")
    dns = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    for what, v in (("name", name), ("namespace", namespace)):
        if not isinstance(v, str) or not dns.match(v):
            raise BadInput(f"{what} {str(v)[:80]!r} is not a Kubernetes name (lower-case letters, digits, '-', '.')")
    if not isinstance(params, dict):
        raise BadInput("params must be an object")
    clean: dict[str, Any] = {}
    if verb == "scale":
        r = params.get("replicas")
        if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r <= 100000:
            raise BadInput(f"replicas must be a whole number >= 0, got {r!r}")
        clean["replicas"] = r
    if verb == "rollout_undo" and params.get("to_revision") is not None:
        t = params["to_revision"]
        if not isinstance(t, int) or isinstance(t, bool) or t < 1:
            raise BadInput(f"to_revision must be a revision number >= 1, got {t!r}")
        clean["to_revision"] = t
    extra = sorted(set(params) - {"replicas", "to_revision"})
    if extra:
        raise BadInput(f"unknown parameters {extra} for {verb}")
    return verb, name, namespace, clean


def _text(v: Any, field: str, limit: int = 500) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadInput(f"{field} must be text")
    # Lone surrogates cannot be written as UTF-8; control characters have no place in a reason.
    v = v.encode("utf-8", "replace").decode("utf-8")
    v = "".join(c if c.isprintable() else " " for c in v)
    return v[:limit]


@dataclass
class PendingAction:
    """One write action at the broker and where it stands."""

    id: str
    incident: str
    proposal: str
    verb: str
    target: dict[str, str]
    params: dict[str, Any]
    reason: str
    environment: str
    second_approver: bool
    dry_run: dict[str, Any]
    requested_by: str
    requested_via: str
    requested_at: str
    hash: str
    status: str = "pending"  # pending | executed | failed | vetoed
    approvals: list[dict[str, str]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    #: A one-time nonce for the lab's Approve page (not stored in the audit log).
    nonce: str = ""

    @property
    def summary(self) -> str:
        """What will run, in words (the dry run's summary)."""
        return str(self.dry_run.get("summary") or f"{self.verb} {self.target['namespace']}/{self.target['name']}")

    def to_dict(self, with_nonce: bool = False) -> dict[str, Any]:
        """JSON-ready dict (the nonce only for the requester's own preview)."""
        d = asdict(self)
        if not with_nonce:
            d.pop("nonce")
        d["summary"] = self.summary
        return d


def intent_hash(a: dict[str, Any]) -> str:
    """The hash an approval is bound to: what will run, where, for which incident and proposal."""
    body = {k: a.get(k) for k in ("id", "incident", "proposal", "verb", "target", "params", "environment")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def environment_for(cfg: ActionsConfig, namespace: str) -> tuple[str, EnvironmentPolicy]:
    """The environment a namespace belongs to, decided from the broker's own policy.

    Where several environments list the namespace, the strictest one applies (a second approver,
    then the smaller blast radius): when unsure, be careful.
    """
    hits = [(env, pol) for env, pol in cfg.environments.items() if pol.allows_namespace(namespace)]
    if not hits:
        raise ActionDenied(f"namespace {namespace!r} is on no environment's allowlist; add it to "
                           "[actions.environments.<env>] namespaces in the broker's incidentbook.toml")
    return min(hits, key=lambda h: (not h[1].second_approver, h[1].max_replicas_change, h[1].max_pods_restarted,
                                    h[0] != cfg.environment, h[0]))


def _plan(ex: KubeExecutor, verb: str, name: str, namespace: str, params: dict[str, Any]) -> Plan:
    if verb == "scale":
        return ex.plan_scale(name, namespace, int(params["replicas"]))
    if verb == "restart":
        return ex.plan_restart(name, namespace)
    return ex.plan_rollout_undo(name, namespace, params.get("to_revision"))


def _check(pol: EnvironmentPolicy, env: str, verb: str, namespace: str, plan: Plan | None = None) -> None:
    if verb not in pol.actions:
        raise ActionDenied(f"action {verb!r} is not allowed in environment {env!r} (allowed: {pol.actions}); "
                           f"add it to [actions.environments.{env}] actions if it should be")
    if not pol.allows_namespace(namespace):
        raise ActionDenied(f"namespace {namespace!r} is not on the allowlist of environment {env!r} ({pol.namespaces})")
    if plan is None:
        return
    if plan.kind == "scale":
        if abs(plan.replicas_change) > pol.max_replicas_change:
            raise ActionDenied(f"blast radius exceeded: {plan.summary} changes {abs(plan.replicas_change)} replicas, "
                               f"limit is {pol.max_replicas_change} in {env!r}; scale in smaller steps")
        if plan.after.get("replicas", 0) > pol.max_replicas:
            raise ActionDenied(f"blast radius exceeded: {plan.summary} is above max_replicas={pol.max_replicas} in {env!r}")
    elif plan.pods_affected > pol.max_pods_restarted:
        raise ActionDenied(f"blast radius exceeded: {plan.summary} replaces {plan.pods_affected} pods, "
                           f"limit is {pol.max_pods_restarted} in {env!r}; ask the service owner")


class Broker:
    """Holds the write credentials and the audit key; requests, approves and executes actions."""

    def __init__(self, actions: ActionsConfig, audit_path: str | Path, key: bytes, *, anchor: Any = None,
                 executor_factory: Callable[[], KubeExecutor] | None = None, relay_token: str = "",
                 record: Callable[[str, str, str, str, dict[str, Any]], None] | None = None) -> None:
        self.actions = actions
        self.audit = AuditLog(audit_path, key=key, anchor=anchor)
        self.executor_factory = executor_factory
        self.relay_token = relay_token
        #: Writes an incident timeline event: (incident, kind, summary, actor, data).
        self.record = record
        self._lock = threading.RLock()
        self._nonces: dict[str, str] = {}  # nonce -> action id (one use each)

    @classmethod
    def from_config(cls, cfg: Any, store: Any = None, **kwargs: Any) -> Broker:
        """The broker of a workspace: its [actions] policy, `<home>/audit.jsonl` and key, the store."""
        from incidentbook.actions.policy import load_actions_config

        if store is None:
            from incidentbook.incidents import Store

            store = Store.from_config(cfg)

        def record(incident: str, kind: str, summary: str, actor: str, data: dict[str, Any]) -> None:
            if incident:
                try:
                    store.add_event(incident, kind, summary, actor=actor, data=data)
                except IncidentbookError:
                    pass  # the audit log has it; an unknown incident id must not block the action

        kwargs.setdefault("record", record)
        return cls(load_actions_config(cfg), cfg.audit_log, load_audit_key(cfg.home, create=True),
                   anchor=StoreAnchor(store), **kwargs)

    # -- state ------------------------------------------------------------------------------
    def _check_log(self) -> None:
        v = verify(self.audit.path, self.audit.key, self.audit.anchor)
        if not v.ok:
            raise ActionDenied(f"the audit log does not verify ({v}); nothing is requested or approved until "
                               "`incidentbook audit verify` passes")

    def _state(self) -> dict[str, PendingAction]:
        """Every action, rebuilt from the audit entries that verify (never from a forged line)."""
        out: dict[str, PendingAction] = {}
        for e in self.audit.verified_entries():
            aid = e.get("action_id")
            ev = e.get("event")
            if ev == "requested" and isinstance(e.get("action"), dict):
                a = dict(e["action"])
                a.pop("summary", None)
                out[str(aid)] = PendingAction(**a)
            elif aid in out:
                a_ = out[str(aid)]
                if ev == "approved":
                    a_.approvals.append({"who": e.get("who", ""), "via": e.get("via", ""), "at": e.get("time", "")})
                elif ev in ("executed", "failed", "vetoed"):
                    a_.status = ev
                    a_.result = dict(e.get("result") or {})
        return out

    def get(self, action_id: str) -> PendingAction:
        """One action by id; NotFound naming the list command."""
        with self._lock:
            a = self._state().get(action_id)
        if a is None:
            raise NotFound(f"no action {action_id!r} at the broker; list them with `incidentbook actions list`")
        return a

    def list(self, status: str | None = None) -> list[PendingAction]:
        """Actions, oldest first (only `status` ones when given)."""
        with self._lock:
            acts = list(self._state().values())
        return [a for a in acts if status is None or a.status == status]

    def executor(self) -> KubeExecutor:
        """The broker's own Kubernetes client (its kubeconfig, never the kernel's)."""
        if self.executor_factory is not None:
            return self.executor_factory()
        c = self.actions
        return KubeExecutor(api_client(c.kubeconfig, c.context, c.in_cluster))

    # -- requests -----------------------------------------------------------------------------
    def request(self, who: Identity, body: dict[str, Any]) -> PendingAction:
        """Validate, dry-run and record a pending action (or return the same one already recorded)."""
        target = body.get("target") or {}
        verb, name, namespace, params = _validate_target(body.get("verb"), target.get("name"),
                                                         target.get("namespace"), body.get("params") or {})
        incident = _text(body.get("incident"), "incident", 64)
        proposal = _text(body.get("proposal"), "proposal", 64)
        reason = _text(body.get("reason"), "reason")
        with self._lock:
            self._check_log()
            env, pol = environment_for(self.actions, namespace)
            base = {"incident": incident, "proposal": proposal, "verb": verb,
                    "target": {"namespace": namespace, "name": name}, "params": params, "environment": env}
            # The same request again (a re-run cell, Run All after a restart) is the same action.
            for a in self._state().values():
                if a.status in ("pending", "executed") and a.requested_by == who.user and \
                        all(getattr(a, k) == v for k, v in base.items()):
                    return a
            aid = f"ACT-{datetime.now(timezone.utc):%Y%m%d}-{secrets.token_hex(4).upper()}"
            try:
                _check(pol, env, verb, namespace)
                ex = self.executor()
                plan = _plan(ex, verb, name, namespace, params)
                _check(pol, env, verb, namespace, plan)
            except ActionDenied as e:
                self.audit.append("denied", action_id=aid, user=who.user, via=who.via, reason=str(e), **base)
                raise
            ex.apply(plan, dry_run=True)
            a = PendingAction(id=aid, **base, reason=reason, second_approver=pol.second_approver,
                              dry_run={"summary": plan.summary, "before": plan.before, "after": plan.after,
                                       "pods_affected": plan.pods_affected, "server_dry_run": "accepted"},
                              requested_by=who.user, requested_via=who.via, requested_at=_now(), hash="")
            a.hash = intent_hash(asdict(a))
            rec = a.to_dict()
            rec.pop("approvals"), rec.pop("result")
            rec["approvals"], rec["result"] = [], {}
            self.audit.append("requested", action_id=aid, user=who.user, via=who.via, incident_id=incident,
                              action=rec)
            a.nonce = secrets.token_urlsafe(24)
            self._nonces[a.nonce] = aid
        self._timeline(a, "action_requested", f"{aid} waits for approval: {a.summary}", who.user)
        return a

    def nonce_for(self, action_id: str) -> str:
        """A fresh one-time nonce for the lab's Approve page of `action_id`."""
        with self._lock:
            self.get(action_id)
            n = secrets.token_urlsafe(24)
            self._nonces[n] = action_id
            return n

    # -- approvals ----------------------------------------------------------------------------
    def approve(self, who: Identity, action_id: str, expected_hash: str, nonce: str = "") -> PendingAction:
        """Record `who`'s approval of `action_id` (bound to `expected_hash`) and run it when complete."""
        with self._lock:
            self._check_log()
            a = self.get(action_id)
            if who.via == "lab":
                if self._nonces.pop(nonce, None) != action_id:
                    raise ActionDenied(f"this Approve link for {action_id} was used already or is not for it; "
                                       "reload the action's page")
            if not expected_hash or not hmac.compare_digest(str(expected_hash), a.hash):
                raise ActionDenied(f"{action_id} is not what you reviewed (hash mismatch); look at it again with "
                                   f"`incidentbook actions show {action_id}`")
            if a.status != "pending":
                by = ", ".join(p["who"] for p in a.approvals) or "nobody"
                raise BadInput(f"{action_id} is {a.status} (approved by {by}); it cannot run again")
            if who.user == AUTONOMY_ACTOR or not who.user:
                raise ActionDenied(f"{action_id} needs a person's approval")
            if a.second_approver and who.user == a.requested_by:
                raise ActionDenied(f"{action_id} was requested by you ({who.user}); in {a.environment} another "
                                   f"person must approve it: incidentbook actions approve {action_id}")
            if any(p["who"] == who.user for p in a.approvals):
                raise BadInput(f"you ({who.user}) approved {action_id} already")
            self.audit.append("approved", action_id=action_id, who=who.user, via=who.via, hash=a.hash,
                              incident_id=a.incident)
            a.approvals.append({"who": who.user, "via": who.via, "at": _now()})
            self._timeline(a, "action_approved", f"{action_id} approved by {who.user} via {who.via} "
                           f"(requested by {a.requested_by})", who.user)
            return self._execute(a, who)

    def approve_autonomous(self, action_id: str, policy_reason: str) -> PendingAction:
        """Run a pending action that the autonomy policy allows (never where a second person is required)."""
        with self._lock:
            self._check_log()
            a = self.get(action_id)
            if a.status != "pending":
                raise BadInput(f"{action_id} is {a.status}; it cannot run again")
            if a.second_approver:
                raise ActionDenied(f"{action_id}: {a.environment} needs a second person; autonomy never approves there")
            self.audit.append("approved", action_id=action_id, who=AUTONOMY_ACTOR, via="autonomy", hash=a.hash,
                              policy=policy_reason, incident_id=a.incident)
            a.approvals.append({"who": AUTONOMY_ACTOR, "via": "autonomy", "at": _now()})
            return self._execute(a, Identity(AUTONOMY_ACTOR, "autonomy"))

    def veto(self, who: Identity, action_id: str, reason: str = "") -> PendingAction:
        """Cancel a pending action (anyone authenticated may; it is audited)."""
        with self._lock:
            a = self.get(action_id)
            if a.status != "pending":
                raise BadInput(f"{action_id} is {a.status}; nothing to veto")
            self.audit.append("vetoed", action_id=action_id, who=who.user, via=who.via,
                              reason=_text(reason, "reason"), incident_id=a.incident)
            a.status = "vetoed"
        self._timeline(a, "action_vetoed", f"{action_id} vetoed by {who.user}: {reason}"[:200], who.user)
        return a

    def _execute(self, a: PendingAction, who: Identity) -> PendingAction:
        env, pol = environment_for(self.actions, a.target["namespace"])
        if env != a.environment:
            raise ActionDenied(f"{a.id}: the policy now puts {a.target['namespace']} in {env!r}, not "
                               f"{a.environment!r}; request it again")
        try:
            ex = self.executor()
            plan = _plan(ex, a.verb, a.target["name"], a.target["namespace"], a.params)
            _check(pol, env, a.verb, a.target["namespace"], plan)
            result = ex.apply(plan)
        except IncidentbookError as e:
            a.status = "failed"
            a.result = {"error": str(e)}
            self.audit.append("failed", action_id=a.id, who=who.user, result=a.result, incident_id=a.incident)
            self._timeline(a, "action_failed", f"{a.id} failed: {e}"[:200], who.user)
            raise
        a.status = "executed"
        a.result = {"summary": plan.summary, "generation": result.get("metadata", {}).get("generation")}
        self.audit.append("executed", action_id=a.id, who=who.user, result=a.result, incident_id=a.incident,
                          approvers=[p["who"] for p in a.approvals])
        self._timeline(a, "action_executed", f"{a.id}: {plan.summary} (requested by {a.requested_by}, approved by "
                       f"{', '.join(p['who'] for p in a.approvals)})", who.user)
        return a

    def _timeline(self, a: PendingAction, kind: str, summary: str, actor: str) -> None:
        if self.record is not None and a.incident:
            try:
                self.record(a.incident, kind, summary[:300], actor, a.to_dict())
            except IncidentbookError:
                pass  # the audit log has it; a timeline that cannot take it must not block the action

    # -- the wire -----------------------------------------------------------------------------
    def handle(self, msg: dict[str, Any], peer: Identity, from_kernel: bool) -> dict[str, Any]:
        """Answer one decoded message from an authenticated socket peer."""
        op = msg.get("op")
        if op == "request":
            return {"action": self.request(peer, msg).to_dict(with_nonce=True)}
        if op == "list":
            status = msg.get("status")
            return {"actions": [a.to_dict() for a in self.list(status if isinstance(status, str) else None)]}
        if op == "show":
            return {"action": self.get(str(msg.get("id", ""))).to_dict()}
        if op in ("approve", "veto"):
            who = peer
            if msg.get("via") == "lab":
                # Only the Jupyter server extension holds the relay token; it names the user the
                # Jupyter server (or JupyterHub) authenticated.
                token = str(msg.get("relay_token") or "")
                if not self.relay_token or not hmac.compare_digest(token, self.relay_token):
                    raise ActionDenied("lab approvals come only through the Jupyter server extension")
                user = msg.get("user")
                if not isinstance(user, str) or not user:
                    raise BadInput("the relay named no user")
                who = Identity(_text(user, "user", 128), "lab")
            elif from_kernel:
                raise ApprovalRequired(f"{op} comes from a notebook kernel (or a process it started); a person "
                                       "approves from a terminal (`incidentbook actions approve ACT-…`) or the "
                                       "Approve link under the preview")
            if op == "veto":
                return {"action": self.veto(who, str(msg.get("id", "")), str(msg.get("reason") or "")).to_dict()}
            return {"action": self.approve(who, str(msg.get("id", "")), str(msg.get("hash") or ""),
                                           str(msg.get("nonce") or "")).to_dict()}
        if op == "nonce":
            if from_kernel:
                raise ApprovalRequired("nonces are for the Approve page, not kernels")
            token = str(msg.get("relay_token") or "")
            if not self.relay_token or not hmac.compare_digest(token, self.relay_token):
                raise ActionDenied("nonces come only through the Jupyter server extension")
            return {"nonce": self.nonce_for(str(msg.get("id", "")))}
        raise BadInput(f"unknown broker operation {op!r}")


@dataclass
class InProcessBroker:
    """A broker serving inside another process (`incidentbook serve`), and how to stop it."""

    broker: Broker
    server: BrokerServer | None
    saved_env: dict[str, str]

    def close(self) -> None:
        """Stop serving and give the process back the variables it had."""
        if self.server is not None:
            self.server.close()
        os.environ.update(self.saved_env)


def start_in_process(cfg: Any, store: Any = None, **kwargs: Any) -> InProcessBroker:
    """Start the workspace's broker inside this process and take the write credentials away from
    everything it starts afterwards (runbook kernels, JupyterLab and its kernels).

    `KUBECONFIG` is captured into the broker's own settings, then it and the other secrets in
    SECRET_ENV are removed from os.environ (restored by `close`). When a broker already answers
    on the socket (`incidentbook broker`), that one is left in charge.
    """
    if not cfg_kubeconfig(cfg) and os.environ.get("KUBECONFIG"):
        kwargs.setdefault("kubeconfig", os.environ["KUBECONFIG"])
    kubeconfig = kwargs.pop("kubeconfig", "")
    kwargs.setdefault("relay_token", write_relay_token(cfg.home, os.environ.get(RELAY_TOKEN_ENV, "")))
    broker = Broker.from_config(cfg, store, **kwargs)
    if kubeconfig:
        broker.actions = broker.actions.model_copy(update={"kubeconfig": kubeconfig})
    path = socket_path(cfg.home)
    server: BrokerServer | None = None
    try:
        BrokerClient(path, timeout_s=2).call("list", status="pending")
    except IncidentbookError:
        server = BrokerServer(broker, path)
        server.serve_in_thread()
    saved = {k: os.environ.pop(k) for k in SECRET_ENV if k in os.environ}
    return InProcessBroker(broker, server, saved)


def write_relay_token(home: str | Path, token: str = "") -> str:
    """Write (a new, unless given) relay token to `<home>/broker/relay.token` (0600) and return it.

    The Jupyter server extension reads it to relay Approve clicks; kernels are never given it.
    """
    token = token or secrets.token_urlsafe(32)
    path = Path(home) / "broker" / "relay.token"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def cfg_kubeconfig(cfg: Any) -> str:
    """The kubeconfig the workspace's [actions] table names ('' for the default)."""
    from incidentbook.actions.policy import load_actions_config

    try:
        return load_actions_config(cfg).kubeconfig
    except IncidentbookError:
        return ""


def audit_log_for(cfg: Any, store: Any = None) -> AuditLog:
    """The workspace's audit log, written with the broker's key and checkpointed in the store."""
    if store is None:
        from incidentbook.incidents import Store

        store = Store.from_config(cfg)
    return AuditLog(cfg.audit_log, key=load_audit_key(cfg.home, create=True), anchor=StoreAnchor(store))


# -- peers -------------------------------------------------------------------------------------
def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    import struct

    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid


def user_name(uid: int) -> str:
    """The login name of `uid` (`uid:N` when it has no passwd entry)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def started_from_kernel(pid: int) -> bool:
    """Whether `pid` is a notebook kernel or runner, or was started by one (walks the parents).

    Unknown (the process is gone, /proc unreadable) counts as yes: fail closed.
    """
    seen = 0
    while pid > 1 and seen < 64:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if any(m in cmd for m in _KERNEL_MARKERS):
            return True
        try:
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            return True
        seen += 1
    return False


class BrokerServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The broker on a Unix socket: one JSON request line, one JSON answer line per connection."""

    daemon_threads = True

    def __init__(self, broker: Broker, path: str | Path, *, shared: bool = False) -> None:
        self.broker = broker
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        super().__init__(str(self.path), _Handler)
        # Local mode: only the owner may connect. Team mode (`shared`): anyone on the host may,
        # and is identified by their OS user.
        os.chmod(self.path, 0o666 if shared else 0o600)

    def serve_in_thread(self) -> threading.Thread:
        """Serve until `shutdown()` in a daemon thread."""
        t = threading.Thread(target=self.serve_forever, name="incidentbook-broker", daemon=True)
        t.start()
        return t

    def close(self) -> None:
        """Stop serving and remove the socket file."""
        self.shutdown()
        self.server_close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: BrokerServer = self.server  # type: ignore[assignment]
        try:
            pid, uid, _gid = peer_credentials(self.request)
            raw = self.rfile.readline(MAX_MESSAGE + 1)
            if len(raw) > MAX_MESSAGE:
                raise BadInput(f"message larger than {MAX_MESSAGE} bytes")
            try:
                msg = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise BadInput("the broker speaks one JSON object per line") from None
            if not isinstance(msg, dict):
                raise BadInput("the broker speaks one JSON object per line")
            # Who is asking is the socket peer's OS user, whatever the message claims.
            peer = Identity(user_name(uid), "cli")
            answer = {"ok": True, **server.broker.handle(msg, peer, started_from_kernel(pid))}
        except IncidentbookError as e:
            answer = {"ok": False, "error": str(e), "type": type(e).__name__, "exit_code": e.exit_code}
        except RecursionError:
            answer = {"ok": False, "error": "message nested too deeply", "type": "BadInput", "exit_code": 2}
        self.wfile.write((json.dumps(answer, ensure_ascii=True) + "\n").encode())
        self.wfile.flush()
        self._drain()

    def _drain(self, limit: int = 16 * MAX_MESSAGE) -> None:
        """Read what the peer is still sending (an oversized message) before closing, bounded:
        closing a socket with unread data resets it, and the peer would lose the answer."""
        import socket as _socket

        try:
            self.request.shutdown(_socket.SHUT_WR)
            self.request.settimeout(2.0)
            seen = 0
            while seen < limit and (chunk := self.request.recv(65536)):
                seen += len(chunk)
        except OSError:
            pass


class BrokerClient:
    """Talks to the broker's socket (kernels, the CLI, the Jupyter server extension)."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s

    def call(self, op: str, **body: Any) -> dict[str, Any]:
        """Send one operation; the answer, or the broker's error raised as the same error class."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout_s)
        try:
            try:
                s.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError):
                raise ApprovalRequired(f"no action broker is listening at {self.path}; start one with "
                                       "`incidentbook broker` (or `incidentbook serve`)") from None
            except PermissionError:
                raise ApprovalRequired(f"not allowed to reach the broker at {self.path}; ask its owner to run it "
                                       "with --shared") from None
            s.sendall((json.dumps({"op": op, **body}) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        finally:
            s.close()
        try:
            answer = json.loads(buf.decode())
        except ValueError:
            raise IncidentbookError(f"the broker at {self.path} gave no answer; check its log") from None
        if not answer.get("ok"):
            raise _ERRORS.get(str(answer.get("type")), IncidentbookError)(str(answer.get("error")))
        return answer
