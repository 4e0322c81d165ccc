"""The durable work queue behind `incidentbook serve`, kept in the incident store.

Two kinds of work item:

- `alert`: a webhook body, inserted (one short transaction) before the HTTP 2xx is sent. An
  intake worker then, in ONE transaction, claims it, folds it into an incident (dedupe by group
  key, storm correlation by the dependency map), queues the runbook job of a new incident and
  marks the item done. A crash anywhere rolls all of it back, so the item is processed again and
  every alert is accounted for exactly once. An identical body received twice is one item.
- `runbook`: at most one per incident. A runbook worker claims it with a lease and heartbeats
  while the runbook runs; a job whose worker died (lease expired) is claimed again. A job whose
  incident already has a finished run is marked done without running again.

On PostgreSQL, claims use `SELECT … FOR UPDATE SKIP LOCKED`, so several `serve` processes share
one queue; intake transactions also take an advisory lock so correlation decisions are serial.
SQLite serialises writers itself (`BEGIN IMMEDIATE`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from incidentbook.errors import BadInput, InvalidPayload, NotFound
from incidentbook.incidents import Store
from incidentbook.incidents.models import IncidentRow, PayloadRow, WorkItemRow
from incidentbook.incidents.store import StoreError, _hash
from incidentbook.intake.alertmanager import AlertmanagerPayload, parse_alertmanager
from incidentbook.intake.correlate import Topology

#: Sources the intake accepts, and the parser of each one's stored body.
SOURCES = ("alertmanager", "pagerduty", "generic")
#: A runbook job is given up (state `failed`) after this many claims.
MAX_ATTEMPTS = 3
_PG_INTAKE_LOCK = 0x1C1DB0AA


def _now() -> datetime:
    return datetime.now(timezone.utc)


def default_worker_id() -> str:
    """`host:pid`, so a job's holder can be found in `ps`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def parse_body(source: str, raw: str) -> AlertmanagerPayload | None:
    """Parse a stored body by its source; None for a PagerDuty event that is not about an incident."""
    if source == "alertmanager":
        return parse_alertmanager(raw)
    if source == "pagerduty":
        from incidentbook.intake.pagerduty import parse_pagerduty

        return parse_pagerduty(raw)
    if source == "generic":
        from incidentbook.intake.generic import parse_generic

        return parse_generic(raw)
    raise InvalidPayload(f"unknown alert source {source!r}; use one of {', '.join(SOURCES)}")


def describe_error(e: BaseException) -> str:
    """A one-line description of why an item failed: the error type and its first line.

    For database errors only the driver's message is kept: SQLAlchemy's own text carries the SQL
    and its parameters (alert text, possibly secrets). NUL and lone surrogates are escaped so the
    description itself can be stored and printed.
    """
    from sqlalchemy.exc import DBAPIError

    inner: BaseException = e.orig if isinstance(e, DBAPIError) and e.orig is not None else e
    lines = str(inner).strip().splitlines()
    msg = f"{type(inner).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    msg = msg.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return msg[:500]


@dataclass(frozen=True)
class Enqueued:
    """What `enqueue_alert` did: the item id and whether the same body was already queued."""

    id: int
    duplicate: bool


@dataclass(frozen=True)
class Processed:
    """One intake item folded into the store."""

    item_id: int
    incident_id: str | None
    created: bool
    joined: str | None = None  # the incident correlation joined these alerts to
    alerts: int = 0
    error: str = ""


@dataclass(frozen=True)
class Job:
    """A claimed runbook job."""

    id: int
    incident_id: str
    attempts: int


@dataclass
class _Item:
    row: WorkItemRow
    payload: AlertmanagerPayload
    parent: IncidentRow | None
    original_group: str


class WorkQueue:
    """The queue in `store`, worked by `worker` (default host:pid)."""

    def __init__(self, store: Store, *, topology: Topology | None = None,
                 correlation_window_s: float = 600.0, lease_s: float = 60.0,
                 worker: str | None = None, bundle: str | None = None) -> None:
        self.store = store
        self.topology = topology or Topology()
        self.window = timedelta(seconds=correlation_window_s)
        self.lease = timedelta(seconds=lease_s)
        self.worker = worker or default_worker_id()
        self.bundle = bundle
        # SQLite has one writer at a time and its busy handler sleeps in steps of up to 100 ms;
        # writers of this process queue on a lock instead, so an HTTP ack waits only for the
        # transaction in progress. (PostgreSQL needs no such thing: rows are locked one by one.)
        self._local_writer = threading.Lock() if store.dialect == "sqlite" else contextlib.nullcontext()

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        with self._local_writer, self.store._session(write=True) as s:
            yield s

    # ------------------------------------------------------------------ intake

    def enqueue_alert(self, source: str, raw: str) -> Enqueued:
        """Persist a webhook body (committed when this returns); the same body twice is one item."""
        key = _hash(f"{source}\n{raw}")
        try:
            with self._session() as s:
                row = WorkItemRow(kind="alert", source=source, state="queued", dedupe_key=key, raw=raw,
                                  received_at=_now(), worker="", attempts=0)
                s.add(row)
                s.flush()
                return Enqueued(row.id, False)
        except IntegrityError:
            with self.store._session(write=False) as s:
                existing = s.scalars(select(WorkItemRow.id).where(WorkItemRow.dedupe_key == key)).first()
            return Enqueued(int(existing or 0), True)

    def process_next_alert(self) -> Processed | None:
        """Fold the oldest queued body into the store; None when nothing is queued."""
        done = self.process_alerts(limit=1)
        return done[0] if done else None

    def process_alerts(self, limit: int = 100) -> list[Processed]:
        """Fold up to `limit` queued bodies into the store in one transaction (oldest first).

        Bodies that land on the same open incident are applied together, so a storm of
        notifications for one incident costs one pass over its alerts, not one per body.
        If the batch fails for any reason other than the store being unreachable, each body is
        retried alone and the ones that still fail are marked `failed` with the error (payload
        kept), so one poison body never stops the others. StoreError (database down, disk full)
        is raised: nothing is marked, the items stay queued.
        """
        claimed: list[int] = []
        for _ in range(5):
            claimed.clear()
            try:
                with self._session() as s:
                    rows = self._claim_alerts(s, limit)
                    claimed.extend(r.id for r in rows)
                    return self._process_batch(s, rows) if rows else []
            except IntegrityError:
                continue  # someone else (`incidentbook ingest`) opened the group first: retry
            except StoreError:
                raise
            except Exception:  # noqa: BLE001 - isolated below, item by item
                if not claimed:
                    raise
                break
        return [self._process_alone(item_id) for item_id in claimed]

    def _claim_alerts(self, s: Session, limit: int, item_id: int | None = None) -> list[WorkItemRow]:
        if self.store.dialect == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_INTAKE_LOCK})
        stmt = select(WorkItemRow).where(WorkItemRow.kind == "alert", WorkItemRow.state == "queued")
        if item_id is not None:
            stmt = stmt.where(WorkItemRow.id == item_id)
        return list(s.scalars(stmt.order_by(WorkItemRow.id).limit(limit).with_for_update(skip_locked=True)))

    def _process_alone(self, item_id: int) -> Processed:
        """Process one item in its own transaction; on any error mark it failed and say why."""
        error = ""
        for _ in range(3):
            try:
                with self._session() as s:
                    rows = self._claim_alerts(s, 1, item_id)
                    if not rows:  # taken by another worker meanwhile
                        return Processed(item_id, None, False)
                    return self._process_batch(s, rows)[0]
            except IntegrityError as e:
                error = describe_error(e)
                continue
            except StoreError:
                raise
            except Exception as e:  # noqa: BLE001 - any error of one body fails that body only
                error = describe_error(e)
                break
        self._mark_failed(item_id, error)
        return Processed(item_id, None, False, error=error)

    def _mark_failed(self, item_id: int, error: str) -> None:
        with self._session() as s:
            row = s.get(WorkItemRow, item_id, with_for_update=True)
            if row is not None and row.state == "queued":
                now = _now()
                row.state, row.error, row.finished_at = "failed", error[:2000], now
                row.attempts += 1
                row.started_at = row.started_at or now

    def _process_batch(self, s: Session, rows: list[WorkItemRow]) -> list[Processed]:
        now = _now()
        results: dict[int, Processed] = {}
        buckets: dict[str, list[_Item]] = {}
        for row in rows:
            row.attempts += 1
            row.started_at = row.started_at or now
            try:
                payload = parse_body(row.source, row.raw)
            except InvalidPayload as e:
                row.state, row.error, row.finished_at = "failed", str(e), now
                results[row.id] = Processed(row.id, None, False, error=str(e))
                continue
            if payload is None:
                row.state, row.finished_at = "done", now
                results[row.id] = Processed(row.id, None, False)
                continue
            original_group = payload.group_key
            payload, parent = self._correlate(s, payload, now)
            item = _Item(row, payload, parent, original_group)
            if parent is not None or self._open_incident(s, payload.group_key) is not None:
                buckets.setdefault(payload.group_key, []).append(item)
            else:  # it opens (or records on a closed) incident: apply now, later bodies may join it
                for r in self._apply_group(s, [item], now):
                    results[r.item_id] = r
        for items in buckets.values():
            for r in self._apply_group(s, items, now):
                results[r.item_id] = r
        s.flush()
        return [results[row.id] for row in rows]

    @staticmethod
    def _open_incident(s: Session, group_key: str) -> str | None:
        return s.scalars(select(IncidentRow.id).where(
            IncidentRow.group_key_hash == _hash(group_key), IncidentRow.status == "open")).first()

    def _apply_group(self, s: Session, items: list[_Item], now: datetime) -> list[Processed]:
        """Apply bodies bound for one alert group as one notification (their alerts in order)."""
        prows = [PayloadRow(received_at=it.row.received_at, source=it.row.source,
                            group_key=it.payload.group_key, status=it.payload.status, raw=it.row.raw)
                 for it in items]
        s.add_all(prows)
        s.flush()
        payload = items[0].payload
        if len(items) > 1:
            alerts = [a for it in items for a in it.payload.alerts]
            merged = payload.model_copy(update={
                "alerts": alerts, "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
                "truncated_alerts": sum(it.payload.truncated_alerts for it in items)})
            merged._raw = payload.raw
            payload = merged
        outcome = self.store._apply(s, payload, prows[0].id, items[0].row.source, now)
        incident_id = outcome.incident.id
        for prow in prows[1:]:
            prow.incident_id, prow.processed_at = incident_id, now
        joined = [it for it in items if it.parent is not None]
        if joined:
            services = sorted({a.labels.get("service", "") for it in joined for a in it.payload.alerts} - {""})
            why = self.topology.explains(joined[0].parent.service, services)  # type: ignore[union-attr]
            self.store._add_event(
                s, incident_id, "symptoms_joined",
                f"{', '.join(services)} alerts joined as symptoms ({why})", "incidentbook",
                {"services": services, "original_group_keys": sorted({it.original_group for it in joined}),
                 "alerts": [a.key for it in joined for a in it.payload.alerts][:1000],
                 "payload_ids": [p.id for p, it in zip(prows, items) if it.parent is not None][:1000]}, now)
        if outcome.created:
            if self.bundle:
                inc = s.get(IncidentRow, incident_id)
                if inc is not None:
                    inc.bundle = self.bundle
            s.add(WorkItemRow(kind="runbook", source=items[0].row.source, state="queued",
                              dedupe_key=_hash(f"runbook\n{incident_id}"), raw="",
                              incident_id=incident_id, received_at=now, worker="", attempts=0))
        out = []
        for i, it in enumerate(items):
            it.row.state, it.row.finished_at, it.row.incident_id = "done", now, incident_id
            out.append(Processed(it.row.id, incident_id, outcome.created and i == 0,
                                 joined=incident_id if it.parent is not None else None,
                                 alerts=len(it.payload.alerts)))
        return out

    def _correlate(self, s: Session, payload: AlertmanagerPayload,
                   now: datetime) -> tuple[AlertmanagerPayload, IncidentRow | None]:
        if not self.topology or not payload.firing:
            return payload, None
        own = s.scalars(select(IncidentRow.id).where(
            IncidentRow.group_key_hash == _hash(payload.group_key), IncidentRow.status == "open")).first()
        if own is not None:
            return payload, None
        services = {a.labels.get("service", "") for a in payload.firing} - {""}
        if not services:
            return payload, None
        candidates = s.scalars(
            select(IncidentRow).where(IncidentRow.status == "open", IncidentRow.updated >= now - self.window)
            .order_by(IncidentRow.created, IncidentRow.id)
        )
        for inc in candidates:
            if any(self.topology.related(svc, inc.service) for svc in services):
                joined = payload.model_copy(update={"group_key": inc.group_key})
                joined._raw = payload.raw
                return joined, inc
        return payload, None

    # ------------------------------------------------------------------ runbook jobs

    def claim_runbook(self) -> Job | None:
        """Take the oldest runbook job that is queued or whose worker's lease ran out."""
        now = _now()
        with self._session() as s:
            row = s.scalars(
                select(WorkItemRow)
                .where(WorkItemRow.kind == "runbook",
                       or_(WorkItemRow.state == "queued",
                           and_(WorkItemRow.state == "running", WorkItemRow.lease_until < now)))
                .order_by(WorkItemRow.id).limit(1).with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            row.state, row.worker, row.attempts = "running", self.worker, row.attempts + 1
            row.started_at, row.lease_until = now, now + self.lease
            return Job(row.id, str(row.incident_id), row.attempts)

    def heartbeat(self, job: Job) -> bool:
        """Extend the job's lease; False if another worker has taken it over."""
        with self._session() as s:
            row = s.get(WorkItemRow, job.id, with_for_update=True)
            if row is None or row.worker != self.worker or row.state != "running":
                return False
            row.lease_until = _now() + self.lease
            return True

    def finish(self, job: Job, state: str, error: str = "") -> None:
        """Mark a job `done` or `failed` (with the error)."""
        with self._session() as s:
            row = s.get(WorkItemRow, job.id, with_for_update=True)
            if row is not None:
                row.state, row.finished_at, row.lease_until = state, _now(), None
                row.error = error[:2000] or None

    def release(self, job: Job) -> None:
        """Give a claimed job back (server shutting down) so another worker runs it now."""
        with self._session() as s:
            row = s.get(WorkItemRow, job.id, with_for_update=True)
            if row is not None and row.worker == self.worker and row.state == "running":
                row.state, row.lease_until = "queued", None

    # ------------------------------------------------------------------ reporting

    def counts(self) -> dict[str, dict[str, int]]:
        """kind -> state -> number of items."""
        out: dict[str, dict[str, int]] = {}
        with self.store._session(write=False) as s:
            for kind, state, n in s.execute(
                    select(WorkItemRow.kind, WorkItemRow.state, func.count()).group_by(
                        WorkItemRow.kind, WorkItemRow.state)):
                out.setdefault(kind, {})[state] = int(n)
        return out

    def pending(self) -> int:
        """Items not finished yet (queued or running), of both kinds."""
        c = self.counts()
        return sum(v.get("queued", 0) + v.get("running", 0) for v in c.values())

    # ------------------------------------------------------------------ failed items

    def failed_items(self, limit: int = 100) -> list[FailedItem]:
        """Alert items that failed (newest first), with their error and the stored body."""
        with self.store._session(write=False) as s:
            rows = s.scalars(select(WorkItemRow).where(WorkItemRow.kind == "alert", WorkItemRow.state == "failed")
                             .order_by(WorkItemRow.id.desc()).limit(limit))
            return [FailedItem(r.id, r.source, r.received_at, r.finished_at, r.attempts, r.error or "", r.raw)
                    for r in rows]

    def count_failed(self) -> int:
        """How many alert items are failed (waiting for `intake retry` or `intake drop`)."""
        return self.store.count_failed_work_items()

    def _failed_row(self, s: Session, item_id: int) -> WorkItemRow:
        row = s.get(WorkItemRow, item_id, with_for_update=True)
        if row is None or row.kind != "alert":
            raise NotFound(f"no intake item {item_id}; run `incidentbook intake failed` to see failed items")
        if row.state != "failed":
            raise BadInput(f"intake item {item_id} is {row.state}, not failed; only failed items can be "
                           "retried or dropped")
        return row

    def retry(self, item_id: int) -> None:
        """Queue a failed item again (after the cause was fixed); the worker picks it up."""
        with self._session() as s:
            row = self._failed_row(s, item_id)
            row.state, row.finished_at = "queued", None

    def drop(self, item_id: int) -> None:
        """Give up on a failed item: state `dropped`; its body stays stored for audit."""
        with self._session() as s:
            row = self._failed_row(s, item_id)
            row.state, row.finished_at = "dropped", _now()

    def oldest_queued_age(self) -> float | None:
        """Seconds the oldest queued alert item has waited (None when nothing is queued)."""
        with self.store._session(write=False) as s:
            oldest = s.execute(select(func.min(WorkItemRow.received_at)).where(
                WorkItemRow.kind == "alert", WorkItemRow.state == "queued")).scalar_one()
        if oldest is None:
            return None
        if oldest.tzinfo is None:  # func.min bypasses the column type on SQLite
            oldest = datetime.fromisoformat(str(oldest)).replace(tzinfo=timezone.utc)
        return max(0.0, (_now() - oldest).total_seconds())


@dataclass(frozen=True)
class FailedItem:
    """A webhook body the intake could not fold into an incident (`incidentbook intake failed`)."""

    id: int
    source: str
    received_at: datetime
    failed_at: datetime | None
    attempts: int
    error: str
    raw: str

    def to_dict(self, body: bool = True) -> dict[str, object]:
        """The `--json` shape; `body` includes the stored payload text."""
        out: dict[str, object] = {
            "id": self.id, "source": self.source, "received_at": self.received_at.isoformat(),
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
            "attempts": self.attempts, "error": self.error}
        if body:
            out["body"] = self.raw
        return out
