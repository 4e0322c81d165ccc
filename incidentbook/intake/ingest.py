"""The incident loop's front half: a payload in, an incident and an executed notebook out.

Order matters for durability: the payload is persisted (alerts, incident, timeline) before the
runbook runs, so a runbook or kernel failure never loses the alert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from incidentbook.config import Config
from incidentbook.errors import RunbookError
from incidentbook.incidents import Incident, Store
from incidentbook.intake.alertmanager import parse_alertmanager
from incidentbook.runner import (
    RunResult,
    build_parameters,
    load_runbooks,
    run_runbook,
    select_runbook,
)
from incidentbook.telemetry.bundle import iso, open_bundle, to_utc

#: How much telemetry before the first alert a runbook looks at by default.
DEFAULT_LOOKBACK = timedelta(hours=1)
#: How far past the last alert start the window reaches (capped at now).
DEFAULT_LOOKAHEAD = timedelta(minutes=30)


@dataclass
class IngestedIncident:
    """What `incidentbook ingest` reports per incident (the `--json` contract)."""

    id: str
    notebook: str | None
    runbook: str | None
    status: str
    runbook_status: str
    created: str
    deduplicated: bool
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def incident_window(incident: Incident, alert_starts: list[datetime],
                    bundle: Path | None = None) -> tuple[datetime, datetime]:
    """The telemetry window a runbook examines: the bundle's window, or around the alerts."""
    if bundle is not None:
        start, end = open_bundle(bundle).window
        return start.to_pydatetime(), end.to_pydatetime()
    starts = [to_utc(s).to_pydatetime() for s in alert_starts] or [incident.created]
    now = datetime.now(timezone.utc)
    return min(starts) - DEFAULT_LOOKBACK, min(now, max(starts) + DEFAULT_LOOKAHEAD)


def run_incident_runbook(cfg: Config, store: Store, incident_id: str,
                         bundle: Path | None = None,
                         execute: Callable[..., RunResult] = run_runbook) -> IngestedIncident:
    """Select the runbook for an incident, execute it with papermill and record the outcome.

    `execute` has `run_runbook`'s signature; `serve` passes a warm kernel pool's `run`.
    """
    incident = store.get_incident(incident_id)
    alerts = store.alerts(incident_id)
    first = alerts[0] if alerts else None
    labels = dict(incident.labels)
    if first is not None:
        labels = {**first.labels, **labels}
    runbook = select_runbook(labels, load_runbooks(cfg))
    workdir = cfg.incidents_dir / incident.id
    workdir.mkdir(parents=True, exist_ok=True)
    notebook = workdir / "notebook.ipynb"
    window_start, window_end = incident_window(incident, [a.starts_at for a in alerts], bundle)
    params = build_parameters(
        incident_id=incident.id,
        alertname=incident.alertname,
        service=incident.service or "",
        severity=incident.severity or "",
        labels=labels,
        annotations=dict(first.annotations) if first is not None else {},
        starts_at=iso(first.starts_at) if first is not None else iso(incident.created),
        window_start=iso(window_start),
        window_end=iso(window_end),
        sources=cfg.sources,
        bundle=str(bundle.resolve()) if bundle is not None else "",
        generator_url=(first.generator_url or "") if first is not None else "",
    )
    store.set_runbook(incident.id, runbook.name, str(notebook))
    run_id = store.start_run(incident.id, runbook.name)
    try:
        result = execute(runbook, params, notebook, cwd=workdir,
                             cell_timeout_s=cfg.runner.cell_timeout_s,
                             kernel_name=cfg.runner.kernel_name,
                             max_output_bytes=cfg.runner.max_output_bytes)
    except RunbookError as e:
        # An invalid runbook: the incident and its alerts stay stored; record why nothing ran.
        store.finish_run(run_id, "failed", ename=type(e).__name__, evalue=str(e))
        raise
    store.finish_run(run_id, "succeeded" if result.ok else "failed", cell_index=result.cell_index,
                     ename=result.ename, evalue=result.evalue)
    incident = store.get_incident(incident.id)
    error = ""
    if not result.ok:
        where = f"cell {result.cell_index}" if result.cell_index is not None else "the runbook"
        error = f"runbook {runbook.name!r} failed in {where}: {result.ename}: {result.evalue}".rstrip(": ")
    return IngestedIncident(
        id=incident.id, notebook=str(notebook), runbook=runbook.name, status=incident.status,
        runbook_status=incident.runbook_status, created=iso(incident.created),
        deduplicated=False, error=error,
    )


def ingest_alertmanager(cfg: Config, raw: bytes | str, *, bundle: Path | None = None,
                        run: bool = True, store: Store | None = None) -> list[IngestedIncident]:
    """Persist an Alertmanager webhook payload and run the runbook of any incident it opened.

    A re-notification of an open incident's group updates it without re-running the runbook.
    """
    payload = parse_alertmanager(raw)
    if bundle is not None:
        open_bundle(bundle)  # fail on a bad bundle before anything is stored
    store = store or Store.from_config(cfg)
    outcome = store.record_alerts(payload)
    incident = outcome.incident
    if outcome.created and bundle is not None:
        store.set_bundle(incident.id, str(bundle.resolve()))
    if outcome.created and run:
        return [run_incident_runbook(cfg, store, incident.id, bundle=bundle)]
    return [IngestedIncident(
        id=incident.id, notebook=incident.notebook, runbook=incident.runbook,
        status=incident.status, runbook_status=incident.runbook_status,
        created=iso(incident.created), deduplicated=not outcome.created,
    )]
