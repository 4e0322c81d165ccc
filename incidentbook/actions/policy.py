"""The write-action policy: the `[actions]` table of incidentbook.toml.

```toml
[actions]
environment = "production"        # preferred when several environments list a namespace
kubeconfig = ""                   # default: [sources.kubernetes] kubeconfig, then ~/.kube/config
context = ""                      # kubeconfig context; default: the current one
in_cluster = false                # use the pod's service account instead of a kubeconfig

[actions.environments.production]
namespaces = ["shop"]             # namespaces actions may touch ("*" for any)
actions = ["rollout_undo", "scale", "restart"]
max_replicas_change = 5           # scale: at most this many replicas added or removed
max_replicas = 50                 # scale: never above this many replicas
max_pods_restarted = 20           # restart / rollout_undo: at most this many pods replaced
second_approver = true            # another person must `%approve ACTION-ID`
```

The broker decides an action's environment from its target namespace (the environments whose
`namespaces` list it; the strictest when several do), never from the kernel's variables. A
namespace no environment lists is denied: writes are opt-in.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from incidentbook.errors import ActionDenied, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ACTION_KINDS = ("rollout_undo", "scale", "restart")
ENVIRONMENT_ENV = "INCIDENTBOOK_ENVIRONMENT"


class EnvironmentPolicy(BaseModel):
    """What write actions one environment allows, and how big they may be."""

    model_config = ConfigDict(extra="forbid")
    namespaces: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    max_replicas_change: int = 5
    max_replicas: int = 50
    max_pods_restarted: int = 20
    second_approver: bool = False

    def allows_namespace(self, namespace: str) -> bool:
        """Whether `namespace` is on the allowlist."""
        return "*" in self.namespaces or namespace in self.namespaces


class ActionsConfig(BaseModel):
    """The `[actions]` table."""

    model_config = ConfigDict(extra="forbid")
    environment: str = "default"
    kubeconfig: str = ""
    context: str = ""
    in_cluster: bool = False
    environments: dict[str, EnvironmentPolicy] = Field(default_factory=dict)

    @property
    def current_environment(self) -> str:
        """The configured environment. A process's INCIDENTBOOK_ENVIRONMENT is ignored: a kernel
        setting it must not pick a laxer policy (the broker decides from the target namespace)."""
        return self.environment

    def policy(self) -> EnvironmentPolicy:
        """The current environment's policy; ActionDenied when there is none."""
        env = self.current_environment
        try:
            return self.environments[env]
        except KeyError:
            raise ActionDenied(
                f"no write-action policy for environment {env!r}; add [actions.environments.{env}] "
                "with namespaces and actions to incidentbook.toml"
            ) from None


def _validate(data: dict[str, Any], where: str) -> ActionsConfig:
    try:
        cfg = ActionsConfig.model_validate(data)
    except ValidationError as e:
        from incidentbook.config import validation_message

        raise ConfigError(validation_message(e, where, "actions.", "see docs/configuration.md for the keys")) from None
    for name, pol in cfg.environments.items():
        unknown = sorted(set(pol.actions) - set(ACTION_KINDS))
        if unknown:
            raise ConfigError(f"{where}: actions.environments.{name}.actions has unknown {unknown}; known: {list(ACTION_KINDS)}")
    return cfg


def load_actions_config(cfg: Any = None, path: str | Path | None = None) -> ActionsConfig:
    """The `[actions]` table from `cfg` (a Config) or straight from the TOML file at `path`."""
    raw = getattr(cfg, "actions", None) if cfg is not None else None
    if isinstance(raw, ActionsConfig):
        return raw
    where = str(getattr(cfg, "config_path", None) or "incidentbook.toml")
    if isinstance(raw, dict):
        return _validate(raw, where)
    if isinstance(raw, BaseModel):
        return _validate(raw.model_dump(), where)
    file = Path(path) if path else getattr(cfg, "config_path", None)
    if file is None or not Path(file).is_file():
        return ActionsConfig()
    try:
        data = tomllib.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{file}: cannot read the [actions] table ({e})") from None
    return _validate(data.get("actions", {}), str(file))
