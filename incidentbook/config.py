"""Configuration: `incidentbook.toml` plus environment overrides.

The file is looked for in the working directory and its parents. `INCIDENTBOOK_HOME` overrides
where state lives (store, incident workspaces, audit log). With no file at all every default
works: state goes to `~/.incidentbook`.

Secrets never live in the file: it names environment variables (`token_env`, `api_key_env`,
`headers_env`) and the values are read from the environment when needed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from incidentbook.errors import ConfigError, NotConfigured

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "incidentbook.toml"
HOME_ENV = "INCIDENTBOOK_HOME"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 8700
    token_env: str = "INCIDENTBOOK_TOKEN"
    workers: int = 2  # runbooks executed at once (each holds a warm kernel)
    warm_kernels: bool = True  # pre-start kernels; False runs each runbook with plain papermill
    correlation_window_s: float = 600.0  # alerts on related services join an incident this young
    rate_limit_per_s: float = 200.0  # sustained requests per second per client address
    rate_limit_burst: int = 2000
    lease_s: float = 60.0  # a runbook job whose worker stops heartbeating is resumed after this
    pagerduty_secret_env: str = "INCIDENTBOOK_PAGERDUTY_SECRET"
    slack_webhook_env: str = ""  # e.g. "SLACK_WEBHOOK_URL"; empty: no Slack notification
    lab_url: str = ""  # JupyterLab base URL for notebook links when --no-lab (e.g. a JupyterHub)


class AgentConfig(_Section):
    investigator: str = "rules"
    model: str = ""
    api_key_env: str = "ANTHROPIC_API_KEY"
    base_url: str = ""
    # Where Claude runs: the Anthropic API (key from api_key_env), Amazon Bedrock (AWS credentials
    # from the usual AWS environment/profile) or Google Vertex AI (application default credentials).
    provider: Literal["anthropic", "bedrock", "vertex"] = "anthropic"
    region: str = ""  # bedrock / vertex region, e.g. us-east-1 or us-east5
    project_id: str = ""  # vertex: the Google Cloud project
    # Budgets of one model-backed investigation (the rules result is kept whatever happens).
    max_turns: int = Field(default=12, ge=1)  # model requests in the tool-use loop
    max_tokens: int = Field(default=200_000, ge=1000)  # input + output tokens over the whole loop
    wall_clock_s: float = Field(default=120.0, gt=0)
    tool_result_tokens: int = Field(default=2_000, ge=100)  # each tool result is cut to about this


class SourceConfig(_Section):
    """One telemetry source. Only `url` is common; connectors validate the rest."""

    model_config = ConfigDict(extra="allow")
    url: str = ""
    headers_env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = 30.0
    verify_tls: bool | str = True

    def header_values(self, name: str) -> dict[str, str]:
        """The HTTP headers to send, read from the environment variables `headers_env` names."""
        return {h: secret_from_env(env, f"[sources.{name}] header {h}") for h, env in self.headers_env.items()}


class RunnerConfig(_Section):
    cell_timeout_s: int = 120
    kernel_name: str = "python3"
    runbooks_dir: str = "runbooks"


class StoreConfig(_Section):
    url: str = ""  # empty: SQLite in the home directory
    url_env: str = ""  # or read the URL (which may carry a password) from this variable


class LibraryConfig(_Section):
    path: str = "library"


def _signal_mapping_model() -> type[BaseModel]:
    """`[signals.<name>]`: which services it applies to, and one PromQL template per signal."""
    from pydantic import create_model

    from incidentbook.telemetry.signals import SIGNALS

    fields: dict[str, Any] = {
        "match": (str, ""),  # regex of a metric name the service exports
        "services": (list[str], []),  # or the services it applies to
        "service_label": (str, "service"),  # the label naming the service in these series
        "description": (str, ""),
    }
    fields.update({name: (str, "") for name in SIGNALS})
    model: type[BaseModel] = create_model("SignalMapping", __base__=_Section, **fields)
    return model


SignalMapping = _signal_mapping_model()


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    library: LibraryConfig = Field(default_factory=LibraryConfig)
    # service -> services it calls; alert-storm correlation groups alerts along these edges.
    topology: dict[str, list[str]] = Field(default_factory=dict)
    # The write-action policy; validated by incidentbook.actions.policy.ActionsConfig at load.
    actions: dict[str, Any] = Field(default_factory=dict)
    # [signals.<name>]: the user's own metric dialects (docs/signals.md); checked at load.
    signals: dict[str, SignalMapping] = Field(default_factory=dict)  # type: ignore[valid-type]

    # Not from the file: where it was found and where state lives.
    config_path: Path | None = None
    home: Path = Field(default_factory=lambda: Path.home() / ".incidentbook")

    @property
    def incidents_dir(self) -> Path:
        return self.home / "incidents"

    @property
    def audit_log(self) -> Path:
        return self.home / "audit.jsonl"

    @property
    def workspace_runbooks(self) -> Path:
        return self._relative(self.runner.runbooks_dir)

    @property
    def library_path(self) -> Path:
        return self._relative(self.library.path)

    def _relative(self, value: str) -> Path:
        p = Path(value).expanduser()
        if p.is_absolute():
            return p
        base = self.config_path.parent if self.config_path else self.home
        return base / p

    @property
    def db_url(self) -> str:
        if self.store.url_env:
            url = os.environ.get(self.store.url_env, "")
            if not url:
                raise ConfigError(
                    f"[store] url_env names {self.store.url_env!r} but it is not set; "
                    f"export {self.store.url_env}=postgresql+psycopg://… or remove url_env"
                )
            return url
        if self.store.url:
            return self.store.url
        return f"sqlite:///{self.home / 'incidentbook.db'}"


def find_config(start: Path | None = None) -> Path | None:
    """The nearest `incidentbook.toml` in `start` (default: cwd) or its parents."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        candidate = d / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def validation_message(err: ValidationError, where: Any, prefix: str = "",
                       hint: str = "check the spelling against `incidentbook init`'s template") -> str:
    """One line naming the first bad setting of a config file: `where: unknown setting 'x'; hint`."""
    first = err.errors()[0]
    key = prefix + ".".join(str(x) for x in first["loc"])
    src = f"{where}: " if where else ""
    if first["type"] == "extra_forbidden":
        return f"{src}unknown setting {key!r}; {hint}"
    return f"{src}setting {key!r}: {first['msg']}"


def load_config(start: Path | None = None, path: Path | None = None) -> Config:
    """Load the configuration that applies to `start` (default: cwd).

    `path` forces a file. `INCIDENTBOOK_HOME` overrides the state directory; otherwise it is the
    directory holding the config file, or `~/.incidentbook` when there is none.
    """
    cfg_path = path or find_config(start)
    data: dict[str, Any] = {}
    if cfg_path is not None:
        try:
            data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{cfg_path}: not valid TOML ({e}); fix the line it names") from None
        except OSError as e:
            raise ConfigError(f"{cfg_path}: cannot read ({e.strerror})") from None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_message(e, cfg_path)) from None
    cfg.config_path = cfg_path
    if cfg.actions:
        from incidentbook.actions.policy import load_actions_config

        load_actions_config(cfg)  # a typo in [actions] is reported now, not at 3 a.m.
    if cfg.signals:
        from incidentbook.telemetry.signals import Catalogue, MappingError

        try:
            Catalogue(cfg.signals)  # a template that cannot work is reported now, naming the field
        except MappingError as e:
            raise ConfigError(f"{cfg_path}: {e}") from None
    env_home = os.environ.get(HOME_ENV)
    if env_home:
        cfg.home = Path(env_home).expanduser().resolve()
    elif cfg_path is not None:
        cfg.home = cfg_path.parent.resolve()
    return cfg


def secret_from_env(name: str, what: str) -> str:
    """Read a secret from the environment variable `name`; ConfigError names it if unset."""
    value = os.environ.get(name, "")
    if not value:
        raise NotConfigured(f"{what} needs the environment variable {name}; export it (never put secrets in incidentbook.toml)")
    return value


@contextlib.contextmanager
def temporary_env(name: str, value: str) -> Iterator[None]:
    """Set the environment variable `name` (which child processes such as kernels inherit) for
    the duration of the block, then restore what was there."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
