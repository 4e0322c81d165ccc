# ---
# jupyter:
#   incidentbook:
#     description: Days until each endpoint's TLS certificate expires, probe success,
#       and the callers already failing the handshake.
#     match_re:
#       alertname: CertificateExpiringSoon|.*Cert(ificate)?Expir.*
#     owner: ''
#     priority: 0
#     title: Certificate expiring soon
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Certificate expiring soon
#
# A TLS certificate is about to expire (or already has). Once it does, every caller fails the handshake
# and the service's own traffic drops. This runbook shows **days left per endpoint**, whether probes
# still succeed, and the callers' errors, then proposes renewing it.

# %% tags=["parameters"]
# Parameters: incidentbook replaces these sample values with the real alert's.
incident_id = "INC-SAMPLE-0001"
alertname = "CertificateExpiringSoon"
service = "payments"
severity = "warning"
labels = {
    "alertname": "CertificateExpiringSoon",
    "service": "payments",
    "severity": "warning",
    "namespace": "shop",
    "instance": "https://payments.shop.svc:8443/healthz",
}
annotations = {
    "summary": "TLS certificate of payments expires in 2 days",
    "description": "The certificate served at https://payments.shop.svc:8443/healthz expires in less than 7 days; renew it.",
    "runbook_url": "https://runbooks.example.com/alerts/CertificateExpiringSoon",
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
# Days left on every endpoint's certificate at the end of the window (soonest first).
expiry = show_instant("Days until the certificate expires",
                      '(probe_ssl_earliest_cert_expiry{{namespace="{namespace}"}} - time()) / 86400',
                      unit="days",
                      **scope)

# %%
probes = show_panels([
    Panel("Probe success", 'min(probe_success{{service="{service}"}})', "", worse="down", signal="probe_success"),
    Panel("Requests per second", 'sum(rate(http_requests_total{{service="{service}"}}[5m]))', "req/s", worse="down", signal="requests"),
    Panel("5xx ratio of every service", 'sum by (service) (rate(http_requests_total{{namespace="{namespace}",code=~"5.."}}[5m])) / sum by (service) (rate(http_requests_total{{namespace="{namespace}"}}[5m]))', "ratio"),
], **scope)

# %% [markdown]
# ## Next steps
#
# Proposed below as cells, **not run**: running one is the approval, and it is recorded on
# the incident timeline. Edit a cell before running it if it is not quite right.

# %%
from incidentbook.proposals import comment_line, magic_line, plain_text, python_call  # proposals are built, not formatted
propose_next(f"TLS and handshake errors mentioning {service}",
             magic_line("logql", '{{namespace={namespace}}} |~ "(?i)(x509|certificate|handshake|tls)" --limit 30',
                        namespace=namespace),
             "Callers log the failed handshake with the certificate's name and expiry date.")
propose_next(f"renew {service}'s certificate",
             "\n".join([comment_line(f"cert-manager: kubectl -n {namespace} cert-manager renew {service}-tls"),
                        comment_line("then reload the pods so they serve the new certificate:"),
                        python_call("ib.act.restart", service, namespace=namespace, reason="serve the renewed certificate")]),
             "Renew the certificate, then restart so the pods load it.", kind="write")

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
