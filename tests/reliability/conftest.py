"""Fault-injection fixtures: an intake app on SQLite and (marked slow) on a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidentbook.config import Config
from incidentbook.incidents import Store
from incidentbook.intake.server import ServerSettings, create_app
from incidentbook.intake.service import IntakeService
from tests.incidents.conftest import pg_cluster, pg_database  # noqa: F401 - fixtures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"
TOKEN = "reliability-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def am_body(service: str, alertname: str = "HighErrorRate", fp: str = "", status: str = "firing",
            group_key: str = "", **labels: str) -> dict[str, Any]:
    """The checkout fixture as one alert of `service` (a dict, so tests can poison any field)."""
    doc = json.loads((FIXTURES / "checkout_firing.json").read_bytes())
    doc["groupKey"] = group_key or f'{{}}:{{alertname="{alertname}", service="{service}"}}'
    doc["status"] = status
    a = doc["alerts"][0]
    a["status"] = status
    a["labels"].update({"alertname": alertname, "service": service, **labels})
    a["fingerprint"] = fp or f"{abs(hash((service, alertname))) % 10**12:012x}"
    doc["alerts"] = [a]
    doc["commonLabels"] = {"alertname": alertname, "service": service}
    return doc


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def cfg(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """A workspace whose store is SQLite or a fresh database on a real PostgreSQL."""
    c = Config(home=tmp_path)
    c.server.rate_limit_per_s = 0
    if request.param == "postgresql":
        c.store.url = str(request.getfixturevalue("pg_database"))
    return c


@pytest.fixture
def service(cfg: Config) -> Iterator[IntakeService]:
    store = Store.from_config(cfg)
    svc = IntakeService(cfg, store, run_runbooks=False)
    yield svc
    svc.stop(timeout=5)
    store.close()


@pytest.fixture
def client(service: IntakeService) -> TestClient:
    return TestClient(create_app(service, ServerSettings(token=TOKEN)))


def drain(service: IntakeService) -> list[Any]:
    """Run the intake worker's passes until the queue is empty."""
    out: list[Any] = []
    while batch := service.queue.process_alerts(limit=50):
        out.extend(batch)
    return out
