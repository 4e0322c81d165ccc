# ---
# jupyter:
#   incidentbook:
#     description: 'Memory of a service''s containers against their limit, restarts
#       and OOM events: a leak (steady climb after a rollout) or a burst.'
#     match_re:
#       alertname: (Kube)?(Pod)?OOMKilled|ContainerMemoryNearLimit
#     owner: ''
#     priority: 0
#     title: Container OOMKilled
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Container OOMKilled
#
# A container was killed for going over its memory limit. The shape of the memory curve tells you which
# problem you have: a **steady climb** that resets at every restart is a leak (usually in the newest
# release: roll back); a **sudden jump** is a burst of work (raise the limit or bound the work).

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "KubePodOOMKilled"
service = "cart"
severity = "warning"
labels = {
    "alertname": "KubePodOOMKilled",
    "service": "cart",
    "severity": "warning",
    "namespace": "shop",
    "pod": "cart-7d9f8-abcde",
    "container": "cart",
    "reason": "OOMKilled",
}
annotations = {
    "summary": "Container cart in cart-7d9f8-abcde was OOMKilled",
    "description": "cart-7d9f8-abcde (cart) was killed for exceeding its memory limit and restarted in the last 10 minutes.",
    "runbook_url": "https://runbooks.example.com/alerts/KubePodOOMKilled",
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
memory = show_panels([
    Panel("Memory working set / limit (per pod)", 'max by (pod) (container_memory_working_set_bytes{{service="{service}"}}) / max by (pod) (kube_pod_container_resource_limits{{service="{service}",resource="memory"}})', "ratio"),
    Panel("Memory working set (per pod)", 'max by (pod) (container_memory_working_set_bytes{{service="{service}"}})', "bytes", signal="memory"),
    Panel("Container restarts (per pod)", 'max by (pod) (kube_pod_container_status_restarts_total{{service="{service}"}})', "restarts", signal="restarts"),
], **scope)

# %%
# OOM kills and restarts as Kubernetes recorded them.
events = show_events(**scope, reasons=("OOMKilled", "OOMKilling", "BackOff", "Killing"))

# %%
changes = show_changes(**scope)

# %% [markdown]
# ## Next steps
#
# Proposed below as cells, **not run**: running one is the approval, and it is recorded on
# the incident timeline. Edit a cell before running it if it is not quite right.

# %%
from incidentbook.proposals import comment_line, magic_line, plain_text, python_call  # proposals are built, not formatted
peak = (memory.get("Memory working set / limit (per pod)") or {}).get("worst") or 0
deploys = own_deploys(changes, service)
propose_next(f"heap and allocation errors in {service}'s logs",
             magic_line("logql", '{{service={service}}} |~ "(?i)(out of memory|heap|alloc|oom)" --limit 30', service=service),
             "Allocation errors before the kill show what was growing.")
if peak >= 0.9 and deploys is not None:
    propose_next(f"roll back {service}",
                 python_call("ib.act.rollout_undo", service, namespace=namespace,
                             reason=f"memory climbs to the limit after {deploys.iloc[-1]['description']}"),
                 f"Memory reaches {peak:.0%} of the limit after the newest rollout: a leak in that release is the likeliest cause.",
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
