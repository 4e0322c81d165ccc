# ---
# jupyter:
#   incidentbook:
#     description: '5xx ratio of a service: which status codes, which routes and pods,
#       which change came just before, and the error lines.'
#     match:
#       alertname: HighErrorRate
#     owner: ''
#     priority: 0
#     title: High error rate
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # High error rate
#
# A service returns too many 5xx. This runbook shows **which codes**, **where** (route and pod), **what changed**
# just before the errors began and **the error lines**, then proposes the usual next steps: read the newest
# deploy's diff, compare old and new pods, roll back.
#
# Errors that start at a deploy of this service point at the deploy; errors that follow a dependency's errors
# are a symptom (look at that dependency's alert first).

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "HighErrorRate"
service = "checkout"
severity = "critical"
labels = {
    "alertname": "HighErrorRate",
    "service": "checkout",
    "severity": "critical",
    "namespace": "shop",
}
annotations = {
    "summary": "checkout is failing 12% of requests",
    "description": "More than 5% of requests to checkout returned 5xx over the last 2 minutes.",
    "runbook_url": "https://runbooks.example.com/alerts/HighErrorRate",
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
# Requests, errors and latency of the alerting service, before and since the alert.
red = show_panels([
    Panel("Requests per second by status code", 'sum by (code) (rate(http_requests_total{{service="{service}"}}[5m]))', "req/s"),
    Panel("5xx error ratio", 'sum(rate(http_requests_total{{service="{service}",code=~"5.."}}[5m])) / sum(rate(http_requests_total{{service="{service}"}}[5m]))', "ratio", signal="error_ratio"),
    Panel("p95 latency", 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{service="{service}"}}[5m])))', "s", signal="latency_p95"),
], **scope)

# %%
# Where the errors are: by route, and by pod (a bad rollout shows on the new pods only).
by_where = show_panels([
    Panel("5xx per second by route", 'sum by (route) (rate(http_requests_total{{service="{service}",code=~"5.."}}[5m]))', "req/s"),
    Panel("5xx per second by pod", 'sum by (pod) (rate(http_requests_total{{service="{service}",code=~"5.."}}[5m]))', "req/s"),
], **scope)

# %%
# Deploys, config and flag changes in the window (a change just before the errors is the first suspect).
changes = show_changes(**scope)

# %%
show_error_logs(**scope)

# %% [markdown]
# ## Next steps
#
# Proposed below as cells, **not run**: running one is the approval, and it is recorded on
# the incident timeline. Edit a cell before running it if it is not quite right.

# %%
from incidentbook.proposals import comment_line, magic_line, plain_text, python_call  # proposals are built, not formatted
deploys = own_deploys(changes, service)
propose_next("errors by route and pod over the last 30 minutes",
             magic_line("promql", 'sum by (route, pod) (rate(http_requests_total{{service={service},code=~"5.."}}[5m])) -r 30m',
                        service=service),
             "Narrow the errors to a route or to the new pods before acting.")
if deploys is not None:
    last = deploys.iloc[-1]
    propose_next(f"roll back {service}",
                 python_call("ib.act.rollout_undo", service, namespace=namespace,
                             reason=f"5xx began after {last['description']}"),
                 f"{service} was deployed at {last['timestamp']} ({last['description']}) and errors followed. "
                 "Rolling back is the fastest fix; it is previewed with a dry run and needs your approval.",
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
