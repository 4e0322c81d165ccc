"""The autonomy policy (`policy.toml`): how much a write action may do without a person.

```toml
default = "propose"                  # what applies when no rule matches

[[rules]]                            # the most specific matching rule wins
environment = "staging"              # an environment name or "*"
severity = ["warning", "info"]       # a severity, a list of them, or "*"
action = ["restart", "scale"]        # action kinds (rollout_undo, scale, restart), or "*"
author = ["incidentbook"]            # cooldown/auto: who proposed it (a runbook: "incidentbook"; a
                                     # model: "claude:<model>"), named, never "*"
target = ["shop/checkout"]           # cooldown/auto: the Deployments (namespace/name), named, never "*"
mode = "cooldown"                    # propose | cooldown | auto
cooldown_s = 300                     # cooldown: announce, wait this long for a veto, then run

[[grants]]                           # temporary: beats every rule until it expires
environment = "production"
severity = "*"
action = "rollout_undo"
mode = "auto"
expires = "2026-03-01T18:00:00Z"
granted_by = "alice"
reason = "deploy freeze week: rollbacks are always safe"

[escalation]                         # page a person when an incident is not mitigated in time
after_minutes = 15
kind = "pagerduty"                   # pagerduty (Events API v2) | slack (incoming webhook)
url = "https://events.pagerduty.com/v2/enqueue"
routing_key_env = "PAGERDUTY_ROUTING_KEY"   # pagerduty: the integration key's variable
url_env = ""                         # or read the URL (a Slack webhook is a secret) from this variable
```

`propose` is the default everywhere: the assistant proposes a cell and a person runs it. A rule
or grant allows `cooldown` or `auto` only for the authors and targets it names, and only within
the incident's blast radius (its alerting service and the hypothesis' service); `default` never
grants autonomy. A model's proposals stay propose-only unless a rule names that model.
`cooldown` announces the action and runs it after `cooldown_s` unless someone vetoes it. `auto`
runs it at once. Either way the action still goes through the `[actions]` guard (allowlist,
blast radius), and every decision lands in the audit log. When two rules are equally specific the
more cautious one wins.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from incidentbook.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Mode = Literal["propose", "cooldown", "auto"]
MODES: tuple[str, ...] = ("propose", "cooldown", "auto")
#: Caution order: on a tie between equally specific rules the more cautious mode wins.
CAUTION = {"propose": 2, "cooldown": 1, "auto": 0}
POLICY_NAME = "policy.toml"


def _as_list(v: Any) -> list[str]:
    if v is None:
        return ["*"]
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def parse_time(value: str | datetime) -> datetime:
    """A timezone-aware UTC datetime from an ISO 8601 string (a bare time is read as UTC)."""
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"cannot read time {value!r}; use ISO 8601, e.g. 2026-03-01T18:00:00Z") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


class Rule(BaseModel):
    """One `[[rules]]` entry: where it applies and what it allows."""

    model_config = ConfigDict(extra="forbid")
    environment: list[str] = Field(default_factory=lambda: ["*"])
    severity: list[str] = Field(default_factory=lambda: ["*"])
    action: list[str] = Field(default_factory=lambda: ["*"])
    mode: Mode = "propose"
    cooldown_s: float = Field(default=300.0, ge=0)
    author: list[str] = Field(default_factory=list)
    target: list[str] = Field(default_factory=list)

    @field_validator("environment", "severity", "action", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> list[str]:
        return _as_list(v)

    @field_validator("author", "target", mode="before")
    @classmethod
    def _named(cls, v: Any) -> list[str]:
        items = [] if v is None else _as_list(v)
        if any("*" in x for x in items):
            raise ValueError("must name authors and targets; '*' is not allowed here")
        return items

    def names(self, author: str | None, target: str | None) -> bool:
        """Whether this rule names both the proposal's author and its target (namespace/name)."""
        return bool(author and target and author in self.author and target in self.target)

    def matches(self, environment: str, severity: str, action: str) -> bool:
        """Whether this rule covers the (environment, severity, action) triple."""
        return all("*" in allowed or value in allowed for allowed, value in
                   ((self.environment, environment), (self.severity, severity), (self.action, action)))

    @property
    def specificity(self) -> int:
        """How many of the three fields name something (not `*`)."""
        return sum("*" not in f for f in (self.environment, self.severity, self.action))

    def describe(self) -> str:
        """`environment=staging severity=warning action=restart -> cooldown 300s`."""
        mode = f"cooldown {self.cooldown_s:g}s" if self.mode == "cooldown" else self.mode
        return (f"environment={','.join(self.environment)} severity={','.join(self.severity)} "
                f"action={','.join(self.action)} -> {mode}")


class Grant(Rule):
    """One `[[grants]]` entry: a rule with an expiry and who granted it."""

    expires: datetime
    granted_by: str = ""
    reason: str = ""

    @field_validator("expires", mode="before")
    @classmethod
    def _time(cls, v: Any) -> datetime:
        return parse_time(v)

    def active(self, now: datetime) -> bool:
        """Whether the grant has not expired at `now`."""
        return now < self.expires


class Escalation(BaseModel):
    """The `[escalation]` table."""

    model_config = ConfigDict(extra="forbid")
    after_minutes: float = Field(default=15.0, gt=0)
    kind: Literal["pagerduty", "slack"] = "pagerduty"
    url: str = "https://events.pagerduty.com/v2/enqueue"
    url_env: str = ""
    routing_key_env: str = "PAGERDUTY_ROUTING_KEY"
    timeout_s: float = 10.0


class AutonomyPolicy(BaseModel):
    """The whole `policy.toml`."""

    model_config = ConfigDict(extra="forbid")
    default: Mode = "propose"
    rules: list[Rule] = Field(default_factory=list)
    grants: list[Grant] = Field(default_factory=list)
    escalation: Escalation | None = None


def load_policy(path: str | Path | None) -> AutonomyPolicy:
    """Read and validate `policy.toml`; a missing file is the all-`propose` policy."""
    if path is None or not Path(path).is_file():
        return AutonomyPolicy()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e}); fix the line it names") from None
    try:
        pol = AutonomyPolicy.model_validate(data)
    except ValidationError as e:
        from incidentbook.config import validation_message

        raise ConfigError(validation_message(e, p, hint="see `incidentbook autonomy --help` for the keys")) from None
    from incidentbook.actions.policy import ACTION_KINDS

    for i, r in enumerate([*pol.rules, *pol.grants]):
        unknown = sorted(set(r.action) - {*ACTION_KINDS, "*"})
        if unknown:
            raise ConfigError(f"{p}: rule {i + 1} names unknown action kinds {unknown}; known: {list(ACTION_KINDS)}")
    return pol


def policy_path(cfg: Any) -> Path:
    """Where `policy.toml` lives: beside incidentbook.toml, else in the state directory."""
    if getattr(cfg, "config_path", None):
        return Path(cfg.config_path).parent / POLICY_NAME
    return Path(cfg.home) / POLICY_NAME


def grant_toml(environment: str, action: str, mode: str, duration: timedelta, granted_by: str,
               severity: str = "*", reason: str = "", now: datetime | None = None, *,
               author: list[str] | None = None, target: list[str] | None = None) -> str:
    """The `[[grants]]` block to append to policy.toml for a temporary grant."""
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is not one of {list(MODES)}")
    expires = (now or datetime.now(timezone.utc)) + duration
    import json

    fields = {"environment": environment, "severity": severity, "action": action, "mode": mode,
              "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"), "granted_by": granted_by, "reason": reason,
              "author": list(author or []), "target": list(target or [])}
    return "\n[[grants]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())
