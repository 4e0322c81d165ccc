# ---
# jupyter:
#   incidentbook:
#     description: 'Unusual request volume: the planned-events calendar first, then
#       the traffic against an hour ago, errors and who sends it.'
#     match:
#       alertname: TrafficAnomaly
#     owner: ''
#     priority: 0
#     title: Traffic anomaly
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Traffic anomaly
#
# Request volume is far from normal. **First check the planned-events calendar**: a launch, a sale or a
# campaign explains a spike, and then the only questions are capacity and errors. An unplanned spike
# that concentrates on a few clients or one route is abuse; a drop is usually an upstream failure.

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "TrafficAnomaly"
service = "frontend"
severity = "info"
labels = {
    "alertname": "TrafficAnomaly",
    "service": "frontend",
    "severity": "info",
    "namespace": "shop",
}
annotations = {
    "summary": "frontend request rate is unusual (412/s)",
    "description": "The request rate of frontend is 412/s, far from its rate an hour ago. Check planned events before acting.",
    "runbook_url": "https://runbooks.example.com/alerts/TrafficAnomaly",
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
# 1. The planned-events calendar: a launch or a campaign in the window explains the traffic.
planned = show_planned_events(**scope)

# %%
traffic = show_panels([
    Panel("Requests per second", 'sum(rate(http_requests_total{{service="{service}"}}[5m]))', "req/s", signal="requests"),
    Panel("Requests per second an hour earlier", 'sum(rate(http_requests_total{{service="{service}"}}[5m] offset 1h))', "req/s"),
    Panel("5xx error ratio", 'sum(rate(http_requests_total{{service="{service}",code=~"5.."}}[5m])) / sum(rate(http_requests_total{{service="{service}"}}[5m]))', "ratio", signal="error_ratio"),
    Panel("Requests per second by route", 'sum by (route) (rate(http_requests_total{{service="{service}"}}[5m]))', "req/s"),
], **scope)

# %% [markdown]
# ## Next steps
#
# Proposed below as cells, **not run**: running one is the approval, and it is recorded on
# the incident timeline. Edit a cell before running it if it is not quite right.

# %%
from incidentbook.proposals import comment_line, magic_line, plain_text, python_call  # proposals are built, not formatted
errors = (traffic.get("5xx error ratio") or {}).get("after") or 0
if planned is not None and len(planned):
    first = planned.iloc[0]
    print(f"Planned: {first['title']} ({first['kind']}). The traffic is expected; 5xx ratio since the alert "
          f"is {errors:.1%}. If errors stay low this is not an incident.")
    propose_next("note the planned event on the timeline",
                 magic_line("note", "{text}", text=plain_text(f"traffic change explained by planned event: {first['title']}")),
                 "Record why this alert needs no action, so the postmortem and the evals know.")
else:
    propose_next("top clients and routes in the access log",
                 magic_line("logql", '{{service={service}}} --limit 50', service=service),
                 "No planned event explains it: look for a few clients or one route sending most requests (abuse).")

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
