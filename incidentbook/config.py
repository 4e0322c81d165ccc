"""Configuration: `incidentbook.toml` plus environment overrides.

The file is looked for in the working directory and its parents. `INCIDENTBOOK_HOME` overrides
where state lives (store, incident workspaces, audit log). With no file at all every default
works: state goes to `~/.incidentbook`.

Secrets never live in the file: it names environment variables (`token_env`, `api_key_env`,
`headers_env`) and the values are read from the environment when needed. A secret-looking
literal (`password = "…"`, a token, a URL with a password) is refused at load, and every
`*_env` variable's value is redacted wherever incidentbook writes or sends text.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
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
    # The JupyterLab serve starts listens here (loopback: reach it through SSH or a proxy).
    lab_host: str = "127.0.0.1"
    # If set, POST /api/v1/alerts needs the token in this variable (and no other endpoint takes it).
    generic_token_env: str = ""
    ready_max_pending_s: float = Field(default=300.0, gt=0)  # /readyz fails when an alert waits longer
    min_free_mb: int = Field(default=32, ge=0)  # /readyz fails and webhooks get 503 below this


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


class _ConnectorSettings(SourceConfig):
    model_config = ConfigDict(extra="forbid")
    kind: str = ""  # the connector; default: the table's NAME


class PrometheusSettings(_ConnectorSettings):
    """`[sources.NAME]` with `kind = "prometheus"`."""

    retries: int = Field(default=2, ge=0)  # retries of a failed or throttled request


class LokiSettings(_ConnectorSettings):
    """`[sources.NAME]` with `kind = "loki"`."""

    retries: int = Field(default=2, ge=0)  # retries of a failed or throttled request
    page_size: int = Field(default=5000, ge=1)  # lines per query_range request
    tenant: str = ""  # X-Scope-OrgID of a multi-tenant Loki


class KubernetesSettings(_ConnectorSettings):
    """`[sources.NAME]` with `kind = "kubernetes"`."""

    kubeconfig: str = ""  # kubeconfig path; default: $KUBECONFIG, then ~/.kube/config
    context: str = ""  # kubeconfig context; default: the current one
    in_cluster: bool = False  # use the pod's service account
    namespace: str = ""  # default namespace of event queries; empty: all


class FeedSettings(_ConnectorSettings):
    """`[sources.NAME]` with `kind = "changes"` or `"context"` (a JSON-lines file)."""

    path: str = ""  # the file, relative to the workspace; default: changes.jsonl / context.jsonl


#: Built-in connectors and the settings their tables accept; others (entry points) are not checked.
CONNECTOR_SETTINGS: dict[str, type[SourceConfig]] = {
    "prometheus": PrometheusSettings, "loki": LokiSettings, "kubernetes": KubernetesSettings,
    "changes": FeedSettings, "context": FeedSettings, "replay": _ConnectorSettings,
}


class RunnerConfig(_Section):
    cell_timeout_s: int = 120
    kernel_name: str = "python3"
    max_output_bytes: int = Field(default=1_000_000, ge=1024)  # per cell; longer output is cut, saying so
    runbooks_dir: str = "runbooks"


class StoreConfig(_Section):
    url: str = ""  # empty: SQLite in the home directory
    url_env: str = ""  # or read the URL (which may carry a password) from this variable


class LibraryConfig(_Section):
    path: str = "library"


class ReplayConfig(_Section):
    # PromQL semantics ("3" or "2") of replayed bundles that do not record their Prometheus version
    promql: Literal["3", "2"] = "3"
    # Prometheus 3.x feature flags the source runs with (e.g. "promql-duration-expr"); none by default
    features: list[str] = Field(default_factory=list)


class ConfluenceConfig(_Section):
    url: str = ""  # base URL, e.g. https://example.atlassian.net/wiki (Cloud) or https://confluence.example.com
    space: str = ""  # space key the postmortems live in, e.g. OPS
    parent_id: str = ""  # page id new postmortems are created under (or give parent_title)
    parent_title: str = ""  # title of the parent page, looked up in the space when parent_id is empty
    # `basic` (Cloud: account email in user_env + API token in token_env) or `bearer` (Data Center personal access token in token_env)
    auth: Literal["basic", "bearer"] = "basic"
    user_env: str = "CONFLUENCE_USER"  # variable holding the account email (basic auth)
    token_env: str = "CONFLUENCE_TOKEN"  # variable holding the API token or personal access token
    timeout_s: float = Field(default=30.0, gt=0)  # seconds before one request fails
    max_retry_wait_s: float = Field(default=30.0, ge=0)  # a 429 is retried once after its Retry-After, waiting at most this long
    verify_tls: bool | str = True  # verify TLS certificates; or the path of a CA bundle
    search_history: bool = True  # similar incidents also searches the space (CQL) when url and space are set
    search_limit: int = Field(default=5, ge=1, le=50)  # most Confluence pages one history search returns


class McpConfig(_Section):
    host: str = "127.0.0.1"  # address the HTTP transport listens on
    port: int = 8711  # port the HTTP transport listens on
    token_env: str = "INCIDENTBOOK_MCP_TOKEN"  # variable holding the bearer token HTTP clients must send; required on a non-loopback host
    result_tokens: int = Field(default=2_000, ge=100, le=100_000)  # each tool result is cut to about this many tokens (the cut is stated)
    max_result_chars: int = Field(default=20_000, ge=200)  # hard cap on one result's characters after redaction


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
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    confluence: ConfluenceConfig = Field(default_factory=ConfluenceConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
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
        near = _nearest(str(first["loc"][-1]), _known_keys(first["loc"])) if not prefix else ""
        return f"{src}unknown setting {key!r}; {near}{hint}"
    return f"{src}setting {key!r}: {first['msg']}"


def _nearest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}? " if close else ""


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys valid next to the unknown one at `loc` (a pydantic error location)."""
    model: Any = Config
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


# Keys whose literal value would be a secret in the file.
_SECRET_KEY = re.compile(r"(?i)(?:^|[_-])(?:password|passwd|pwd|pass|token|secret|api[_-]?key|apikey|"
                         r"access[_-]?key|private[_-]?key|credentials?|authorization|auth|webhook(?:_url)?)$")
# `auth = "bearer"` names a method, not a credential.
_AUTH_METHODS = {"basic", "bearer", "digest", "none", "oauth", "oauth2", "ntlm", "pat", "token", "header"}


def check_secret_literals(data: Any, where: Any, path: str = "") -> None:
    """Refuse a secret written into the config file: a key such as `password` or `token` with a
    literal value, or a value that looks like a key, token or password-carrying URL."""
    from incidentbook.redact import Redactor

    shapes = Redactor(personal=False, known={})

    def walk(value: Any, key: str, dotted: str) -> None:
        if isinstance(value, dict):
            if key.endswith("_env"):  # headers_env = {Header = "VARIABLE"}: names, not values
                return
            for k, v in value.items():
                walk(v, str(k), f"{dotted}.{k}" if dotted else str(k))
            return
        if isinstance(value, list):
            for v in value:
                walk(v, key, dotted)
            return
        if not isinstance(value, str) or not value or key.endswith("_env"):
            return
        section = dotted.rsplit(".", 1)[0] if "." in dotted else ""
        if key.lower() in ("auth", "authorization") and value.strip().lower() in _AUTH_METHODS:
            return
        if _SECRET_KEY.search(key) or shapes.redact(value) != value:
            fix = (f"put it in an environment variable and name it in `{key}_env`"
                   if key != "url" else
                   "remove the credentials from the URL, put them in an environment variable and "
                   "name it in `headers_env` (or `url_env` where the table has one)")
            raise ConfigError(f"{where}: [{section}] {key} holds what looks like a secret; "
                              f"secrets never go in incidentbook.toml: {fix}")

    walk(data, "", path)


def check_sources(data: dict[str, Any], where: Any) -> None:
    """Validate each `[sources.NAME]` table against its connector's settings (built-in kinds)."""
    sources = data.get("sources")
    if not isinstance(sources, dict):
        return
    for name, raw in sources.items():
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: [sources.{name}] is not a table; write it as [sources.{name}] with url = …")
        kind = str(raw.get("kind") or name)
        model = CONNECTOR_SETTINGS.get(kind)
        if model is None:
            continue  # a registered connector checks its own settings
        try:
            model.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            key = ".".join(str(x) for x in first["loc"])
            known = list(model.model_fields)
            if first["type"] == "extra_forbidden":
                raise ConfigError(f"{where}: unknown setting 'sources.{name}.{key}'; {_nearest(key, known)}"
                                  f"[sources.{name}] (kind {kind!r}) takes: {', '.join(known)}") from None
            raise ConfigError(f"{where}: setting 'sources.{name}.{key}': {first['msg']}") from None


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
    check_secret_literals(data, cfg_path)
    check_sources(data, cfg_path)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_message(e, cfg_path)) from None
    cfg.config_path = cfg_path
    from incidentbook.redact import config_secret_envs, note_secret_envs

    note_secret_envs(config_secret_envs(cfg))  # their values are redacted everywhere from now on
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
