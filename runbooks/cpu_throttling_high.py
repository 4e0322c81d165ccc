# ---
# jupyter:
#   incidentbook:
#     description: 'CFS throttling of a service: CPU used against the limit, CPU per
#       request (more work per request or more requests) and latency.'
#     match:
#       alertname: CPUThrottlingHigh
#     owner: ''
#     priority: 0
#     title: CPU throttling high
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # CPU throttling high
#
# The container uses its whole CPU quota and the kernel pauses it (CFS throttling), so latency rises.
# The question is **why it needs more CPU**: more requests (capacity: scale out) or **more CPU per
# request** (a code path, a flag, or a noisy neighbour on the node: scaling only hides it).

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "CPUThrottlingHigh"
service = "catalog"
severity = "warning"
labels = {
    "alertname": "CPUThrottlingHigh",
    "service": "catalog",
    "severity": "warning",
    "namespace": "shop",
    "pod": "catalog-5c6d7-xyz12",
}
annotations = {
    "summary": "catalog-5c6d7-xyz12 is CPU throttled 41% of the time",
    "description": "41% of CFS periods of catalog-5c6d7-xyz12 (catalog) were throttled over 5 minutes.",
    "runbook_url": "https://runbooks.example.com/alerts/CPUThrottlingHigh",
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
cpu = show_panels([
    Panel("Throttled share of CFS periods (per pod)", 'sum by (pod) (increase(container_cpu_cfs_throttled_periods_total{{service="{service}"}}[5m])) / sum by (pod) (increase(container_cpu_cfs_periods_total{{service="{service}"}}[5m]))', "ratio", signal="cpu_throttling"),
    Panel("CPU used / limit (per pod)", 'sum by (pod) (rate(container_cpu_usage_seconds_total{{service="{service}"}}[5m])) / sum by (pod) (kube_pod_container_resource_limits{{service="{service}",resource="cpu"}})', "ratio"),
    Panel("CPU seconds per request", 'sum(rate(container_cpu_usage_seconds_total{{service="{service}"}}[5m])) / sum(rate(http_requests_total{{service="{service}"}}[5m]))', "s"),
    Panel("Requests per second", 'sum(rate(http_requests_total{{service="{service}"}}[5m]))', "req/s", signal="requests"),
    Panel("p95 latency", 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{service="{service}"}}[5m])))', "s", signal="latency_p95"),
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
per_request = cpu.get("CPU seconds per request") or {}
traffic = cpu.get("Requests per second") or {}
def _growth(stats):
    return (stats.get("after") or 0) / stats["before"] if stats.get("before") else 0.0
if _growth(per_request) > 1.5 and _growth(traffic) < 1.3:
    why = (f"CPU per request rose {_growth(per_request):.1f}x while traffic stayed flat: each request costs more "
           "(a noisy neighbour, a code path or a flag). Scaling out buys headroom while you find it.")
else:
    why = "Traffic rose with CPU: this is capacity. Scaling out adds headroom."
propose_next(f"which nodes {service}'s pods run on, and what else runs there",
             magic_line("k8s", "pods"),
             "A batch job or another heavy pod on the same node makes every request cost more CPU.")
propose_next(f"scale {service} out by 2",
             python_call("ib.act.scale", service, replicas=5, namespace=namespace, reason="CPU throttling"),
             why + " Set replicas to the current count + 2; the dry run shows the change before it applies.",
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
