"""Prometheus metrics of the intake server (`GET /metrics`), in a registry of their own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RUN_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class IntakeMetrics:
    """Counters, gauges and histograms of one server; `registry` is what /metrics exposes."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.received = Counter("incidentbook_alerts_received", "Webhook bodies accepted and persisted",
                                ["source"], registry=r)
        self.deduplicated = Counter("incidentbook_payloads_deduplicated",
                                    "Webhook bodies identical to one already stored", ["source"], registry=r)
        self.grouped = Counter("incidentbook_notifications_grouped",
                               "Notifications folded into an existing incident", ["how"], registry=r)
        self.rejected = Counter("incidentbook_requests_rejected", "Requests refused",
                                ["reason"], registry=r)
        self.incidents_opened = Counter("incidentbook_incidents_opened", "Incidents opened", registry=r)
        self.failed = Counter("incidentbook_work_failed", "Work items that failed", ["kind"], registry=r)
        self.queued = Gauge("incidentbook_work_queued", "Work items waiting", ["kind"], registry=r)
        self.failed_items = Gauge("incidentbook_work_failed_items",
                                  "Work items in state failed now (see `incidentbook intake failed`)",
                                  ["kind"], registry=r)
        self.oldest_queued = Gauge("incidentbook_oldest_queued_alert_seconds",
                                   "Age of the oldest queued alert item (0 when none is queued)", registry=r)
        self.worker_restarts = Counter("incidentbook_worker_restarts", "Dead workers restarted by the watchdog",
                                       ["worker"], registry=r)
        self.ready = Gauge("incidentbook_ready", "1 when /readyz answers 200", registry=r)
        self.running = Gauge("incidentbook_runbooks_running", "Runbooks executing now", registry=r)
        self.ack_seconds = Histogram("incidentbook_ack_seconds", "Time from request to 2xx (persisted)",
                                     ["source"], buckets=_ACK_BUCKETS, registry=r)
        self.runbook_seconds = Histogram("incidentbook_runbook_seconds", "Runbook execution time",
                                         buckets=_RUN_BUCKETS, registry=r)
        self.alert_to_notebook = Histogram("incidentbook_alert_to_notebook_seconds",
                                           "Incident opened -> executed notebook written",
                                           buckets=_RUN_BUCKETS, registry=r)

    def refresh_queue(self, counts: Callable[[], dict[str, dict[str, int]]]) -> None:
        """Set the queue gauges from the store (called on each scrape)."""
        c = counts()
        for kind in ("alert", "runbook"):
            self.queued.labels(kind=kind).set(c.get(kind, {}).get("queued", 0))
            self.failed_items.labels(kind=kind).set(c.get(kind, {}).get("failed", 0))
