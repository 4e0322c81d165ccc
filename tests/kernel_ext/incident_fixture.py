"""A small incident for extension tests: one store incident plus a replayable telemetry bundle.

checkout's 5xx ratio jumps from ~0.5% to ~20% at the onset, ten minutes after a deploy;
payments stays healthy. The incident is opened from the sample Alertmanager payload.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"
START = pd.Timestamp("2026-03-14T08:00:00Z")
ONSET = pd.Timestamp("2026-03-14T09:05:00Z")
END = pd.Timestamp("2026-03-14T09:40:00Z")
WINDOW = ("2026-03-14T08:50:00Z", "2026-03-14T09:40:00Z")


def _counter(rate: np.ndarray, step: float) -> np.ndarray:
    return np.cumsum(rate * step)


def make_bundle(out: Path) -> Path:
    """Write the checkout bundle to `out` and return its path."""
    from incidentbook.telemetry.bundle import labels_key, write_bundle

    step = 15.0
    ts = pd.date_range(START, END, freq="15s")
    after = ts >= ONSET
    rows: list[dict[str, Any]] = []
    for svc, bad in (("checkout", True), ("payments", False)):
        for pod in (f"{svc}-a", f"{svc}-b"):
            ok_rate = np.full(len(ts), 10.0)
            err_rate = np.where(after & bad, 2.5, 0.05)
            for code, r in (("200", ok_rate), ("500", err_rate)):
                values = _counter(r, step)
                key = labels_key({"service": svc, "pod": pod, "code": code, "namespace": "shop"})
                rows += [{"timestamp": t, "metric": "http_requests_total", "labels": key, "value": v}
                         for t, v in zip(ts, values)]
    metrics = pd.DataFrame(rows)
    changes = [{"timestamp": "2026-03-14T08:55:00Z", "service": "checkout", "kind": "deploy",
                "description": "checkout v2.3.1 -> v2.4.0", "author": "ci", "details": {}}]
    events = [{"timestamp": "2026-03-14T08:55:10Z", "namespace": "shop", "kind": "Deployment", "name": "checkout",
               "type": "Normal", "reason": "ScalingReplicaSet", "message": "Scaled up replica set checkout-7d9f8b6c5 to 2",
               "count": 1}]
    logs = [{"timestamp": "2026-03-14T09:06:00Z", "labels": {"service": "checkout"},
             "line": "ERROR payment authorisation failed: upstream 500"}]
    manifest = {"window": {"start": WINDOW[0], "end": WINDOW[1]}, "services": ["checkout", "payments"],
                "topology": {"checkout": ["payments"]}, "namespace": "shop", "source": "test"}
    return write_bundle(out, manifest, metrics, logs=logs, events=events, changes=changes)


def open_incident(home: Path) -> str:
    """Open the checkout incident in the store under `home` and return its id."""
    from incidentbook.config import load_config
    from incidentbook.incidents import Store
    from incidentbook.intake.alertmanager import parse_alertmanager

    cfg = load_config()
    assert cfg.home == home
    payload = parse_alertmanager((FIXTURES / "checkout_firing.json").read_text())
    with Store.from_config(cfg) as store:
        outcome = store.record_alerts(payload)
        return outcome.incident.id


def write_config(home: Path, extra: str = "") -> Path:
    """An incidentbook.toml in `home` (the investigator name points at a missing one on purpose)."""
    p = home / "incidentbook.toml"
    p.write_text('[agent]\ninvestigator = "simple"\n' + extra, encoding="utf-8")
    return p


def dumps(obj: Any) -> str:
    return json.dumps(obj)
