# ---
# jupyter:
#   incidentbook:
#     description: Free space of a service's volumes and node filesystems, the time
#       until full at the current rate, and what writes.
#     match_re:
#       alertname: DiskFillingUp|KubePersistentVolumeFillingUp|NodeFilesystemSpaceFillingUp
#     owner: ''
#     priority: 0
#     title: Disk filling up
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Disk filling up
#
# A volume is running out of space. The urgent number is **time until full at the current rate**: hours
# means clean up now (old logs, WAL, temp files), days means plan an expansion. This runbook shows free
# space per volume, the fill rate and the projection, and the writes that could explain it.

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "DiskFillingUp"
service = "orders-db"
severity = "warning"
labels = {
    "alertname": "DiskFillingUp",
    "service": "orders-db",
    "severity": "warning",
    "namespace": "shop",
    "persistentvolumeclaim": "data-orders-db-0",
}
annotations = {
    "summary": "Volume data-orders-db-0 of orders-db will be full in 3 hours",
    "description": "At the current rate the volume data-orders-db-0 fills up within 4 hours.",
    "runbook_url": "https://runbooks.example.com/alerts/DiskFillingUp",
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
disk = show_panels([
    Panel("Volume free space (share)", 'min by (persistentvolumeclaim) (kubelet_volume_stats_available_bytes{{service="{service}"}} / kubelet_volume_stats_capacity_bytes{{service="{service}"}})', "ratio", worse="down", signal="disk_free_ratio"),
    Panel("Volume free space", 'min by (persistentvolumeclaim) (kubelet_volume_stats_available_bytes{{service="{service}"}})', "bytes", worse="down"),
    Panel("Fill rate (bytes per hour)", '-3600 * sum(deriv(kubelet_volume_stats_available_bytes{{service="{service}"}}[15m]))', "bytes"),
    Panel("Node filesystem free space (share)", 'min by (instance) (node_filesystem_avail_bytes{{service="{service}"}} / node_filesystem_size_bytes{{service="{service}"}})', "ratio", worse="down"),
], **scope)

# %%
# Hours until full at the rate of the last 30 minutes (negative or missing: not filling).
hours_left = show_instant(
    "Hours until the volume is full",
    'min by (persistentvolumeclaim) (kubelet_volume_stats_available_bytes{{service="{service}"}} / clamp_min(-deriv(kubelet_volume_stats_available_bytes{{service="{service}"}}[30m]), 1)) / 3600',
    unit="hours", **scope)

# %%
changes = show_changes(**scope)

# %% [markdown]
# ## Next steps
#
# Proposed below as cells, **not run**: running one is the approval, and it is recorded on
# the incident timeline. Edit a cell before running it if it is not quite right.

# %%
from incidentbook.proposals import comment_line, magic_line, plain_text, python_call  # proposals are built, not formatted
propose_next(f"what {service} logs about disk space",
             magic_line("logql", '{{service={service}}} |~ "(?i)(no space|disk|wal|checkpoint|vacuum)" --limit 30',
                        service=service),
             "Write-ahead logs that are not recycled, failed checkpoints or runaway temp files show up here.")
propose_next("free space of every volume in the namespace",
             magic_line("promql", "min by (service, persistentvolumeclaim) (kubelet_volume_stats_available_bytes{{namespace={ns}}}"
                        " / kubelet_volume_stats_capacity_bytes{{namespace={ns}}}) -r 6h", ns=namespace),
             "Other volumes on the same trend need the same fix.")

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
