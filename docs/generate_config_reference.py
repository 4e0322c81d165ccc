"""Write docs/configuration.md from the config models (run after changing a setting).

    python docs/generate_config_reference.py          # rewrite the reference
    python docs/generate_config_reference.py --check  # exit 1 if it is out of date

Every table and key comes from the pydantic models in incidentbook/config.py and
incidentbook/actions/policy.py; each key's description is the comment next to (or just above)
its definition, so the reference cannot drift from the code.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

OUT = Path(__file__).resolve().parent / "configuration.md"


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comment on its line, else the comment lines right above it."""
    lines, _ = inspect.getsourcelines(model)
    tree = ast.parse("".join(lines).lstrip() if lines[0].startswith(" ") else "".join(lines))
    found: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        line = lines[node.lineno - 1]
        text = ""
        if "  # " in line:
            text = line.split("  # ", 1)[1].strip()
        else:
            above, i = [], node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            text = " ".join(above)
        found[node.target.id] = text
    return found


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("pathlib.", "")


def _default(field: Any) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(table)"
    else:
        value = field.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if value == {} or value == []:
        return "{}" if isinstance(value, dict) else "[]"
    return f"{value}"


#: Meanings of keys whose definition carries no comment or description yet.
_FALLBACK = {
    "[server].host": "address the intake listens on",
    "[server].port": "port the intake listens on",
    "[server].token_env": "variable holding the bearer token webhooks must send; serve refuses to start without it "
                          "unless --no-auth on loopback",
    "[server].rate_limit_burst": "requests a client may send in a burst above the sustained rate",
    "[server].pagerduty_secret_env": "variable holding the PagerDuty webhook signing secret",
    "[agent].investigator": "`rules` (deterministic, offline), `claude`, or a registered investigator",
    "[agent].model": "model name for a model-backed investigator",
    "[agent].api_key_env": "variable holding the model API key",
    "[agent].base_url": "optional API base URL, e.g. a gateway",
    "[agent].wall_clock_s": "seconds one model-backed investigation may take in all",
    "[sources.NAME].url": "base URL of the source's HTTP API",
    "[sources.NAME].headers_env": "HTTP header -> variable holding its value, e.g. `{ Authorization = \"PROM_AUTH\" }`",
    "[sources.NAME].timeout_s": "seconds before a request fails",
    "[sources.NAME].verify_tls": "verify TLS certificates; or the path of a CA bundle",
    "[runner].cell_timeout_s": "seconds one runbook cell may run before the run fails",
    "[runner].kernel_name": "Jupyter kernel runbooks run in",
    "[runner].runbooks_dir": "workspace runbooks (override the shipped ones of the same name)",
    "[library].path": "where archived incidents and postmortems live",
    "[actions].environment": "preferred environment when several list a namespace (the broker decides from the target namespace; INCIDENTBOOK_ENVIRONMENT is ignored)",
    "[actions].kubeconfig": "kubeconfig for actions; default: [sources.kubernetes], then ~/.kube/config",
    "[actions].context": "kubeconfig context; default: the current one",
    "[actions].in_cluster": "use the pod's service account instead of a kubeconfig",
    "[actions.environments.NAME].namespaces": "namespaces actions may touch (`*` for any)",
    "[actions.environments.NAME].actions": "allowed actions: rollout_undo, scale, restart",
    "[actions.environments.NAME].max_replicas_change": "scale: at most this many replicas added or removed",
    "[actions.environments.NAME].max_replicas": "scale: never above this many replicas",
    "[actions.environments.NAME].max_pods_restarted": "restart / rollout_undo: at most this many pods replaced",
    "[actions.environments.NAME].second_approver": "another person must `%approve ACTION-ID` before it runs",
}


def _table(title: str, model: type[BaseModel], intro: str, skip: tuple[str, ...] = ()) -> str:
    notes = _comments(model)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        meaning = (field.description or notes.get(name) or _FALLBACK.get(f"{title}.{name}", "")).replace("|", "\\|")
        rows.append(f"| `{name}` | `{_type(field.annotation)}` | `{_default(field)}` | {meaning} |")
    doc = (model.__dict__.get("__doc__") or "").strip().split("\n")[0]
    extra = f"{doc}\n\n" if doc and not doc.startswith(model.__name__) else ""
    return f"## `{title}`\n\n{intro}\n\n{extra}" + "\n".join(rows) + "\n"


_COMMON = ("url", "headers_env", "timeout_s", "verify_tls", "kind")

_SECRETS = """## Secrets and redaction

A secret written into `incidentbook.toml` is refused when the file is loaded: a key such as
`password`, `token`, `secret`, `api_key` or `authorization` with a literal value, or any value
that looks like a key, a token or a URL with a password in it. The error names the table and the
key and says where it goes instead: put it in an environment variable and name it in
`<key>_env` (for a source's URL, in `headers_env`).

The values of all variables the file names in a `*_env` key (including the values of a
`headers_env` table) are then redacted by exact value wherever incidentbook writes or sends
text — notebooks, the store, logs, Slack, the library, exported bundles, model requests. What
else is redacted, where, and how to add your own pattern (`redaction.toml` in the library) is in
[the postmortem library](postmortems.md#what-is-redacted-and-where).
"""
def _signals_table() -> str:
    """`[signals.NAME]`: a user dialect (its keys come from the signal catalogue)."""
    from incidentbook.telemetry.signals import SIGNALS

    rows = ["| key | type | default | meaning |", "|---|---|---|---|",
            '| `match` | `str` | `""` | regex of a metric name; the mapping applies to every service exporting one |',
            "| `services` | `list[str]` | `[]` | or the services it applies to |",
            '| `service_label` | `str` | `"service"` | the label naming the service in these series |',
            '| `description` | `str` | `""` | shown by `incidentbook signals` |']
    rows += [f'| `{name}` | `str` | `""` | PromQL template for {what} (`$sel`, `$by`) |'
             for name, what in SIGNALS.items()]
    return ("## `[signals.NAME]`\n\nYour own metric dialect: one PromQL template per signal, used before the "
            "built-in dialects (see docs/signals.md). Checked when the file is loaded and by "
            "`incidentbook signals --check`.\n\n" + "\n".join(rows) + "\n")


def render() -> str:
    """The whole reference as Markdown."""
    from incidentbook.actions.policy import ActionsConfig, EnvironmentPolicy
    from incidentbook.config import (
        AgentConfig,
        ConfluenceConfig,
        FeedSettings,
        KubernetesSettings,
        LibraryConfig,
        LokiSettings,
        McpConfig,
        PrometheusSettings,
        ReplayConfig,
        RunnerConfig,
        ServerConfig,
        SourceConfig,
        StoreConfig,
    )

    parts = [
        "# Configuration reference\n",
        "<!-- Generated by docs/generate_config_reference.py from the config models; do not edit. -->\n",
        "incidentbook reads `incidentbook.toml` from the working directory or its parents "
        "(`incidentbook init` writes one with every setting explained). `INCIDENTBOOK_HOME` sets where "
        "state lives (incidents, the SQLite store, the audit log). Unknown keys are errors that name the "
        "key. Secrets never go in the file: settings ending in `_env` name the environment variable "
        "that holds the value.\n",
        _table("[server]", ServerConfig, "`incidentbook serve`: the webhook intake and its workers."),
        _table("[agent]", AgentConfig, "Which investigator ranks hypotheses, and the budgets of a model-backed one."),
        _table("[sources.NAME]", SourceConfig,
               "One table per telemetry source: `prometheus`, `loki`, `kubernetes`, `changes`, `context`, "
               "`replay`, or a registered connector (`kind = \"…\"` picks it; default: NAME). A built-in "
               "connector's table accepts only the keys below plus its own (next tables); an unknown key is "
               "an error naming the nearest valid one. A registered connector checks its own keys."),
        _table("[sources.NAME] kind = \"prometheus\"", PrometheusSettings, "Prometheus, keys of its own.",
               skip=_COMMON),
        _table("[sources.NAME] kind = \"loki\"", LokiSettings, "Loki, keys of its own.", skip=_COMMON),
        _table("[sources.NAME] kind = \"kubernetes\"", KubernetesSettings, "The Kubernetes API (events, "
               "rollouts), keys of its own.", skip=_COMMON),
        _table("[sources.NAME] kind = \"changes\" / \"context\"", FeedSettings, "A JSON-lines feed of "
               "deploys or planned events, keys of its own.", skip=_COMMON),
        _table("[runner]", RunnerConfig, "How runbooks run (papermill, one kernel per run)."),
        _table("[store]", StoreConfig, "Where incidents live: SQLite by default, PostgreSQL for a team."),
        _table("[library]", LibraryConfig, "The postmortem library."),
        _table("[replay]", ReplayConfig, "Replaying telemetry bundles (see docs/connecting.md for what "
               "each PromQL version changes)."),
        _table("[confluence]", ConfluenceConfig, "Publishing postmortems to Confluence and searching past ones "
               "there (see [confluence](confluence.md))."),
        _table("[mcp]", McpConfig, "`incidentbook mcp`: the investigator's read-only tools for any MCP client "
               "(see [mcp](mcp.md))."),
        "## `[topology]`\n\nService -> the services it calls, e.g. `checkout = [\"payments\", \"inventory\"]`. "
        "Alert-storm correlation groups alerts along these edges.\n",
        _signals_table(),
        _table("[actions]", ActionsConfig, "The write-action policy. With no policy for the current "
               "environment every write is denied.", skip=("environments",)),
        _table("[actions.environments.NAME]", EnvironmentPolicy,
               "What write actions one environment allows and how big they may be "
               "(actions: `rollout_undo`, `scale`, `restart`)."),
        _SECRETS,
    ]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Rewrite the reference, or with --check report whether it is current."""
    text = render()
    if "--check" in argv:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date; run python docs/generate_config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
