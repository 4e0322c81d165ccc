"""`incidentbook init`: scaffold a workspace (config, runbooks/, library/)."""

from __future__ import annotations

from pathlib import Path

from incidentbook.config import CONFIG_NAME
from incidentbook.errors import BadInput

CONFIG_TEMPLATE = '''\
# incidentbook configuration. Every setting has a working default; uncomment what you change.
# Secrets never go in this file: settings ending in _env name environment variables that hold them.
# State (the incident store, incident notebooks, the audit log) lives beside this file, or in
# $INCIDENTBOOK_HOME when that is set.

[server]
# Where `incidentbook serve` listens for Alertmanager / PagerDuty webhooks.
host = "127.0.0.1"
port = 8700
# Webhooks must send `Authorization: Bearer <token>`; the token is read from this variable.
token_env = "INCIDENTBOOK_TOKEN"

[agent]
# Who investigates: "rules" (deterministic, offline) or "claude" (needs an API key).
investigator = "rules"
# model = "claude-sonnet-4-5"
api_key_env = "ANTHROPIC_API_KEY"
# base_url = ""              # optional, e.g. a gateway

[runner]
# Per-cell timeout for runbook notebooks, in seconds.
cell_timeout_s = 120
kernel_name = "python3"
# Your own runbooks; a runbook here overrides a built-in one of the same name.
runbooks_dir = "runbooks"

[store]
# Empty: SQLite in the state directory. A team uses PostgreSQL; keep its password out of this
# file by naming a variable that holds the URL:
# url_env = "INCIDENTBOOK_DB_URL"   # e.g. postgresql+psycopg://incidentbook:…@db/incidentbook
url = ""

[library]
# Where closed incidents become versioned, searchable postmortems.
path = "library"

[replay]
# PromQL semantics for bundles that do not record their Prometheus version: "3" or "2".
promql = "3"
# Prometheus 3.x --enable-feature flags the source runs with, for replay to follow as well:
# features = ["promql-duration-expr", "promql-experimental-functions"]

# Telemetry sources. Runbooks and magics query them read-only.
# [sources.prometheus]
# url = "http://prometheus:9090"
# headers_env = { Authorization = "PROM_AUTH" }   # header name -> variable holding its value
# timeout_s = 30
# verify_tls = true                                # or a CA bundle path
#
# [sources.loki]
# url = "http://loki:3100"
#
# [sources.kubernetes]
# kubeconfig = "~/.kube/config"                    # or in_cluster = true
# namespace = "shop"
'''

RUNBOOKS_README = """\
# Runbooks

Each `.ipynb` here is a runbook: a notebook with a cell tagged `parameters` and match metadata
in `metadata.incidentbook` (`title`, `match`, `match_re`, `priority`, `owner`, `description`).
A runbook here overrides a built-in runbook with the same file name.
Check them with `incidentbook runbooks check`.
"""


def init_workspace(directory: Path, force: bool = False) -> list[Path]:
    """Create `incidentbook.toml`, `runbooks/` and `library/` in `directory`; return what was made."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / CONFIG_NAME
    if cfg.exists() and not force:
        raise BadInput(f"{cfg} already exists; edit it, or pass --force to overwrite it")
    made = []
    cfg.write_text(CONFIG_TEMPLATE, encoding="utf-8")
    made.append(cfg)
    for sub in ("runbooks", "library"):
        d = directory / sub
        if not d.exists():
            d.mkdir()
            made.append(d)
    readme = directory / "runbooks" / "README.md"
    if not readme.exists():
        readme.write_text(RUNBOOKS_README, encoding="utf-8")
    return made
