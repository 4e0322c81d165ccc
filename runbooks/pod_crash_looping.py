# ---
# jupyter:
#   incidentbook:
#     description: 'Restarts of a service''s containers: why they exit (OOMKilled, error),
#       pod events, the last logs and the rollout that started it.'
#     match:
#       alertname: PodCrashLooping
#     owner: ''
#     priority: 0
#     title: Pod crash looping
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Pod crash looping
#
# A container keeps restarting. The **termination reason** decides the next step: `OOMKilled` is memory
# (see the OOMKilled runbook's memory-vs-limit chart below), an error exit is a crash in the code or its
# configuration. This runbook shows restarts per pod, the reason, pod events and the rollout before it.

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "PodCrashLooping"
service = "cart"
severity = "warning"
labels = {
    "alertname": "PodCrashLooping",
    "service": "cart",
    "severity": "warning",
    "namespace": "shop",
    "pod": "cart-7d9f8-abcde",
    "container": "cart",
}
annotations = {
    "summary": "Pod cart-7d9f8-abcde of cart is crash looping",
    "description": "Container cart in pod cart-7d9f8-abcde restarted 3 times in 15 minutes.",
    "runbook_url": "https://runbooks.example.com/alerts/PodCrashLooping",
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
restarts = show_panels([
    Panel("Container restarts (per pod)", 'max by (pod) (kube_pod_container_status_restarts_total{{service="{service}"}})', "restarts", signal="restarts"),
    Panel("Last termination was OOMKilled", 'max by (pod) (kube_pod_container_status_last_terminated_reason{{service="{service}",reason="OOMKilled"}})', "", signal="oom"),
    Panel("Memory working set vs limit", 'max by (pod) (container_memory_working_set_bytes{{service="{service}"}}) / max by (pod) (kube_pod_container_resource_limits{{service="{service}",resource="memory"}})', "ratio"),
    Panel("Pods serving (up)", 'sum(up{{service="{service}"}})', "pods", worse="down"),
], **scope)

# %%
# Pod events: BackOff, OOMKilled, Killing, failed probes.
events = show_events(**scope, reasons=("BackOff", "OOMKilled", "Killing", "Unhealthy", "Failed", "Started"))

# %%
changes = show_changes(**scope)

# %% [markdown]
# ## Next steps
#
# Proposed below as cells, **not run**: running one is the approval, and it is recorded on
# the incident timeline. Edit a cell before running it if it is not quite right.

# %%
from incidentbook.proposals import comment_line, magic_line, plain_text, python_call  # proposals are built, not formatted
oom = (restarts.get("Last termination was OOMKilled") or {}).get("worst") or 0
if oom >= 1:
    propose_next("memory against the limit, per pod",
                 magic_line("promql", "max by (pod) (container_memory_working_set_bytes{{service={service}}}) -r 1h",
                            service=service),
                 "The containers exit OOMKilled: check whether memory climbs steadily (a leak) or jumps (a burst).")
propose_next(f"last log lines before each restart of {service}",
             magic_line("logql", '{{service={service}}} |~ "(?i)(fatal|panic|exception|killed|exit)" --limit 30',
                        service=service),
             "The last lines before a restart usually name the crash.")
deploys = own_deploys(changes, service)
if deploys is not None:
    propose_next(f"roll back {service}",
                 python_call("ib.act.rollout_undo", service, namespace=namespace,
                             reason=f"crash loop after {deploys.iloc[-1]['description']}"),
                 "The restarts began after this service's rollout; undoing it restores the last good version.",
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
