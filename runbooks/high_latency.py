# ---
# jupyter:
#   incidentbook:
#     description: 'p99 latency of a service: its own CPU and database time versus its
#       dependencies, and the changes before it.'
#     match:
#       alertname: HighLatency
#     owner: ''
#     priority: 0
#     title: High latency
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # High latency
#
# A service answers slowly. Slowness is usually **inherited**: a slow dependency (database, cache, another
# service) makes every caller slow. This runbook shows the latency percentiles, the service's own CPU
# throttling and database time, the calls it makes, and proposes a look at the slowest dependency.

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "HighLatency"
service = "checkout"
severity = "warning"
labels = {
    "alertname": "HighLatency",
    "service": "checkout",
    "severity": "warning",
    "namespace": "shop",
}
annotations = {
    "summary": "checkout p99 latency is 2.4s",
    "description": "The 99th percentile request latency of checkout has been above 1s for 3 minutes.",
    "runbook_url": "https://runbooks.example.com/alerts/HighLatency",
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
latency = show_panels([
    Panel("p50 / p99 latency", 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{service="{service}"}}[5m])))', "s"),
    Panel("p50 latency", 'histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{{service="{service}"}}[5m])))', "s"),
    Panel("Requests per second", 'sum(rate(http_requests_total{{service="{service}"}}[5m]))', "req/s", signal="requests"),
    Panel("5xx error ratio", 'sum(rate(http_requests_total{{service="{service}",code=~"5.."}}[5m])) / sum(rate(http_requests_total{{service="{service}"}}[5m]))', "ratio", signal="error_ratio"),
], **scope)

# %%
# Is the time spent here (CPU throttling, database) or downstream?
own = show_panels([
    Panel("CPU throttled share", 'sum(increase(container_cpu_cfs_throttled_periods_total{{service="{service}"}}[5m])) / sum(increase(container_cpu_cfs_periods_total{{service="{service}"}}[5m]))', "ratio"),
    Panel("Database query p99", 'histogram_quantile(0.99, sum by (le) (rate(db_query_duration_seconds_bucket{{service="{service}"}}[5m])))', "s"),
], **scope)

# %%
# p99 latency of every service: the one that got slow first is usually the cause.
everyone = show_panels([
    Panel("p99 latency by service", 'histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket{{namespace="{namespace}"}}[5m])))', "s"),
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
propose_next("p99 latency by service, last 30 minutes",
             magic_line("promql", "histogram_quantile(0.99, sum by (service, le) "
                        "(rate(http_request_duration_seconds_bucket{{namespace={namespace}}}[5m]))) -r 30m", namespace=namespace),
             "Find the service whose latency rose first; callers of a slow service are slow too.")
propose_next(f"timeouts and slow calls in {service}'s logs",
             magic_line("logql", '{{service={service}}} |~ "(?i)(timeout|deadline|slow)" --limit 30', service=service),
             "Timeouts name the dependency that is slow.")

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
