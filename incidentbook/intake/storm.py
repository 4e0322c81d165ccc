"""An alert-storm load generator for the intake server (loopback testing and benchmarks).

`storm_plan` builds Alertmanager notifications for `clusters` independent call chains
(`web-i -> api-i -> db-i`), each alert with its own fingerprint; one cause per chain, so a
correct intake opens exactly `clusters` incidents. `send_storm` posts them at a steady rate
from a thread pool, retrying a request until it is acknowledged (as Alertmanager does), and
reports per-request acknowledgement latency.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import requests


def storm_topology(clusters: int) -> dict[str, list[str]]:
    """`web-i` calls `api-i`, which calls `db-i`, for each cluster i."""
    topo: dict[str, list[str]] = {}
    for i in range(clusters):
        topo[f"web-{i}"] = [f"api-{i}"]
        topo[f"api-{i}"] = [f"db-{i}"]
        topo[f"db-{i}"] = []
    return topo


@dataclass
class StormPlan:
    """The notifications to send and the fingerprints they carry."""

    bodies: list[str]
    fingerprints: list[str]
    clusters: int
    topology: dict[str, list[str]]


def storm_plan(alerts: int, clusters: int = 4, per_notification: int = 5) -> StormPlan:
    """`alerts` alerts in notifications of `per_notification`, spread over `clusters` chains."""
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    names = ("HighErrorRate", "HighLatency", "PodRestarts")
    bodies: list[str] = []
    fps: list[str] = []
    n = 0
    k = 0
    while n < alerts:
        cluster = k % clusters
        tier = ("db", "api", "web")[min(2, (k // clusters) % 3)]  # each chain's cause shows first
        service = f"{tier}-{cluster}"
        alertname = names[(k // (3 * clusters)) % len(names)]
        labels_common = {"alertname": alertname, "service": service, "severity": "critical",
                         "namespace": "storm"}
        batch = []
        for j in range(min(per_notification, alerts - n)):
            fp = f"{n + j:016x}"
            fps.append(fp)
            batch.append({"status": "firing", "labels": {**labels_common, "pod": f"{service}-{n + j}"},
                          "annotations": {"summary": f"{service} {alertname}"}, "startsAt": now,
                          "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fp})
        n += len(batch)
        group = {"alertname": alertname, "service": service}
        bodies.append(json.dumps({
            "version": "4", "groupKey": "{}:" + json.dumps(group, sort_keys=True), "truncatedAlerts": 0,
            "status": "firing", "receiver": "incidentbook", "groupLabels": group,
            "commonLabels": labels_common, "commonAnnotations": {}, "externalURL": "", "alerts": batch}))
        k += 1
    return StormPlan(bodies, fps, clusters, storm_topology(clusters))


@dataclass
class StormReport:
    """What the load generator saw."""

    sent: int = 0
    acked: int = 0
    duplicates: int = 0
    retries: int = 0
    failed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        """Acknowledgement latency percentile `q` (0-100) in seconds."""
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"sent": self.sent, "acked": self.acked, "duplicates": self.duplicates,
                "retries": self.retries, "failed": self.failed, "elapsed_s": round(self.elapsed_s, 3),
                "throughput_per_s": round(self.acked / self.elapsed_s, 1) if self.elapsed_s else 0.0,
                "ack_p50_ms": round(self.percentile(50) * 1000, 2),
                "ack_p99_ms": round(self.percentile(99) * 1000, 2),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}


def send_storm(url: str, token: str | None, bodies: list[str], duration_s: float,
               concurrency: int = 16, give_up_s: float = 60.0) -> StormReport:
    """POST `bodies` evenly over `duration_s`; each is retried until a 2xx (or `give_up_s`)."""
    report = StormReport()
    lock = threading.Lock()
    local = threading.local()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    start = time.monotonic()
    interval = duration_s / max(1, len(bodies))

    def send(i: int, body: str) -> None:
        due = start + i * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if not hasattr(local, "session"):
            local.session = requests.Session()
        deadline = time.monotonic() + give_up_s
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                r = local.session.post(url, data=body.encode(), headers=headers, timeout=10)
                status = r.status_code
            except requests.RequestException:
                status = 0
                local.session = requests.Session()
            took = time.perf_counter() - t0
            with lock:
                report.statuses[status] = report.statuses.get(status, 0) + 1
                if attempt == 0:
                    report.sent += 1
                else:
                    report.retries += 1
                if 200 <= status < 300:
                    report.acked += 1
                    report.latencies_s.append(took)
                    if status == 200:
                        report.duplicates += 1
                    return
            attempt += 1
            if time.monotonic() > deadline or (400 <= status < 500 and status != 429):
                with lock:
                    report.failed += 1
                return
            time.sleep(min(1.0, 0.05 * attempt))

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for i, body in enumerate(bodies):
            pool.submit(send, i, body)
    report.elapsed_s = time.monotonic() - start
    return report
