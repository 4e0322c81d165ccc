# ---
# jupyter:
#   incidentbook:
#     description: 'A service''s database pool: in use against max, waits, idle-in-transaction
#       connections on the database, and query time.'
#     match:
#       alertname: DBConnectionsSaturated
#     owner: ''
#     priority: 0
#     title: Database connections saturated
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Database connections saturated
#
# The service's connection pool is (nearly) full, so requests wait for a connection and then time out.
# Two very different causes look alike: **connections leaked or held** (in use climbs while queries
# stay fast; `idle in transaction` grows on the database: restart to release them, then find the leak)
# or **the database got slow** (query time rises first: fix the database, not the pool).

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "DBConnectionsSaturated"
service = "inventory"
severity = "critical"
labels = {
    "alertname": "DBConnectionsSaturated",
    "service": "inventory",
    "severity": "critical",
    "namespace": "shop",
}
annotations = {
    "summary": "inventory database pool is 96% used",
    "description": "The database connection pool of inventory is nearly exhausted; requests wait for a connection and time out.",
    "runbook_url": "https://runbooks.example.com/alerts/DBConnectionsSaturated",
}
starts_at = "2026-11-23T10:00:00.000Z"
window_start = "2026-11-23T09:00:00.000Z"
window_end = "2026-11-23T10:30:00.000Z"
generator_url = ""
# Telemetry sources as references: URLs and the NAMES of environment variables holding secrets.
sources = {}
# Path of a telemetry bundle to replay instead of querying live sources ("" for none).
bundle = ""

# %%
# The incidentbook extension (%promql, %logql, %k8s, %changes, %investigate …) and the evidence helpers.
# %load_ext incidentbook
from incidentbook.notebook import (
    Panel, own_deploys, propose_next, show_alert, show_changes, show_error_logs, show_events,
    show_instant, show_panels, show_planned_events, show_table,
)

namespace = labels.get("namespace", "")
# Every evidence helper takes the same scope: where the telemetry is and which window to show.
scope = dict(sources=sources, bundle=bundle, service=service, namespace=namespace,
             window_start=window_start, window_end=window_end, starts_at=starts_at)

# %% [markdown]
# ## Alert

# %%
show_alert(alertname=alertname, service=service, severity=severity, labels=labels,
           annotations=annotations, starts_at=starts_at, generator_url=generator_url,
           incident_id=incident_id)

# %% [markdown]
# ## Evidence

# %%
pool = show_panels([
    Panel("Pool connections in use / max", 'max(db_pool_connections_in_use{{service="{service}"}} / db_pool_connections_max{{service="{service}"}})', "ratio"),
    Panel("Time spent waiting for a connection (s/s)", 'sum(rate(db_pool_wait_seconds_total{{service="{service}"}}[5m]))', "s"),
    Panel("Database query p99", 'histogram_quantile(0.99, sum by (le) (rate(db_query_duration_seconds_bucket{{service="{service}"}}[5m])))', "s"),
    Panel("Database sessions by state", 'sum by (state) (pg_stat_activity_count{{namespace="{namespace}"}})', "sessions"),
    Panel("5xx error ratio", 'sum(rate(http_requests_total{{service="{service}",code=~"5.."}}[5m])) / sum(rate(http_requests_total{{service="{service}"}}[5m]))', "ratio", signal="error_ratio"),
], **scope)

# %%
changes = show_changes(**scope)

# %% [markdown]
# ## Next steps
#
# Proposed below as cells, **not run**: running one is the approval, and it is recorded on
# the incident timeline. Edit a cell before running it if it is not quite right.

# %%
from incidentbook.proposals import comment_line, magic_line, plain_text, python_call  # proposals are built, not formatted
query_p99 = pool.get("Database query p99") or {}
slow_db = bool(query_p99.get("before")) and (query_p99.get("after") or 0) > 3 * query_p99["before"]
propose_next(f"pool and connection errors in {service}'s logs",
             magic_line("logql", '{{service={service}}} |~ "(?i)(pool|connection|timeout)" --limit 30', service=service),
             "Pool timeouts and leaked-connection warnings confirm where the connections go.")
if not slow_db:
    propose_next(f"rolling restart of {service}",
                 python_call("ib.act.restart", service, namespace=namespace, reason="release leaked database connections"),
                 "Queries stay fast while the pool fills: connections are held, not slow. A rolling restart "
                 "releases them; then look for the leak (a missing close, a long transaction).",
                 kind="write")

# %% [markdown]
# ## Investigation
#
# The configured investigator ranks hypotheses (cause or symptom, upstream or downstream) with the
# evidence for and against each. Its proposed cells appear below, **not run**.

# %%
if bundle or sources:
    # %investigate
else:
    print("No telemetry configured: nothing to investigate yet.")

# %% [markdown]
# ## Wrap-up
#
# 1. `%confirm H1 "why"` or `%refute H1 "why"` as the evidence comes in; `%note "…"` for anything else.
# 2. `%timeline` shows what happened and who approved what.
# 3. Close with `incidentbook incidents close ID --summary "…"`; the postmortem draft starts from this notebook.
