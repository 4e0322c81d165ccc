# ---
# jupyter:
#   incidentbook:
#     description: Cache hit ratio, misses, evictions and memory against maxmemory,
#       and the extra database load the misses cause.
#     match:
#       alertname: CacheHitRatioLow
#     owner: ''
#     priority: 0
#     title: Cache hit ratio low
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Cache hit ratio low
#
# Fewer lookups hit the cache, so every miss goes to the database. **More database traffic and slower
# callers are symptoms here, not the cause**: scaling the database or the callers does not help. Look at
# evictions and memory against `maxmemory` (a config change or a restart with a smaller limit) and at what
# changed in the cache.

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "CacheHitRatioLow"
service = "kv-cache"
severity = "warning"
labels = {
    "alertname": "CacheHitRatioLow",
    "service": "kv-cache",
    "severity": "warning",
    "namespace": "shop",
}
annotations = {
    "summary": "kv-cache hit ratio is 12%",
    "description": "Fewer than 60% of lookups in kv-cache are hits; every miss goes to the database.",
    "runbook_url": "https://runbooks.example.com/alerts/CacheHitRatioLow",
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
cache = show_panels([
    Panel("Hit ratio", 'sum(rate(redis_keyspace_hits_total{{service="{service}"}}[5m])) / (sum(rate(redis_keyspace_hits_total{{service="{service}"}}[5m])) + sum(rate(redis_keyspace_misses_total{{service="{service}"}}[5m])))', "ratio", worse="down", signal="cache_hit_ratio"),
    Panel("Misses per second", 'sum(rate(redis_keyspace_misses_total{{service="{service}"}}[5m]))', "/s"),
    Panel("Evictions per second", 'sum(rate(redis_evicted_keys_total{{service="{service}"}}[5m]))', "/s"),
    Panel("Memory used / maxmemory", 'max(redis_memory_used_bytes{{service="{service}"}}) / max(redis_memory_max_bytes{{service="{service}"}})', "ratio"),
    Panel("maxmemory", 'max(redis_memory_max_bytes{{service="{service}"}})', "bytes", worse="down"),
], **scope)

# %%
# The misses land on the database: its transactions climb as a symptom.
db = show_panels([
    Panel("Database transactions per second", 'sum(rate(pg_stat_database_xact_commit{{namespace="{namespace}"}}[5m]))', "/s"),
    Panel("p99 latency of every service", 'histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket{{namespace="{namespace}"}}[5m])))', "s"),
], **scope)

# %%
changes = show_changes(**scope)
events = show_events(**scope)

# %% [markdown]
# ## Next steps
#
# Proposed below as cells, **not run**: running one is the approval, and it is recorded on
# the incident timeline. Edit a cell before running it if it is not quite right.

# %%
from incidentbook.proposals import comment_line, magic_line, plain_text, python_call  # proposals are built, not formatted
maxmem = cache.get("maxmemory") or {}
shrunk = bool(maxmem.get("before")) and (maxmem.get("worst") or 0) < 0.5 * maxmem["before"]
propose_next(f"{service}'s own log since the alert",
             magic_line("logql", '{{service={service}}} --limit 30', service=service),
             "Restarts, config reloads and maxmemory warnings of the cache itself.")
if shrunk:
    propose_next(f"restore {service}'s maxmemory",
                 "\n".join([comment_line(f'maxmemory fell from {maxmem["before"] / 2**20:.0f} MiB to '
                                          f'{maxmem["worst"] / 2**20:.0f} MiB: revert the config'),
                            comment_line("(e.g. CONFIG SET maxmemory back in the redis ConfigMap) and restart the primary."),
                            python_call("ib.act.restart", service, namespace=namespace, reason="reload restored maxmemory")]),
                 "The cache runs with a much smaller maxmemory than before: it evicts its working set. "
                 "Restoring the limit fixes the hit ratio; do not scale the database for the symptom.",
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
