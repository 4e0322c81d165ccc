"""The workers behind `incidentbook serve`: intake (payload -> incident) and runbooks (-> notebook).

    service = IntakeService(cfg, store).start()
    service.submit("alertmanager", body)      # persisted when it returns
    ...
    service.stop()

One intake thread folds queued webhook bodies into incidents (fast: milliseconds each); a
bounded pool of `[server] workers` threads executes runbooks, each in a warm kernel from a
`KernelPool` (or with plain papermill when `[server] warm_kernels = false`). Everything they
work on lives in the store's queue, so a restart picks up where a crash left off.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from incidentbook.config import Config
from incidentbook.errors import IncidentbookError, RunbookError
from incidentbook.incidents import Store
from incidentbook.intake.correlate import Topology
from incidentbook.intake.ingest import run_incident_runbook
from incidentbook.intake.metrics import IntakeMetrics
from incidentbook.intake.queue import MAX_ATTEMPTS, Enqueued, Job, WorkQueue, describe_error

log = logging.getLogger(__name__)

#: Webhook bodies folded into the store per transaction (bounded so acks never wait long).
INTAKE_BATCH = 50
#: Why a runbook run was marked failed when its worker disappeared mid-run.
WORKER_LOST = "WorkerLost"


def load_topology(cfg: Config, bundle: Path | None = None) -> Topology:
    """The dependency map: `[topology]` in the config, else the bundle manifest's `topology`."""
    if cfg.topology:
        return Topology(cfg.topology)
    if bundle is not None:
        from incidentbook.telemetry.bundle import open_bundle

        return Topology(open_bundle(bundle).topology)
    return Topology()


class IntakeService:
    """Queue, intake worker and runbook workers for one `serve` process."""

    def __init__(self, cfg: Config, store: Store, *, bundle: Path | None = None,
                 workers: int | None = None, warm: bool | None = None,
                 topology: Topology | None = None,
                 notify: Callable[[str], None] | None = None,
                 metrics: IntakeMetrics | None = None, run_runbooks: bool = True) -> None:
        self.cfg = cfg
        self.store = store
        self.bundle = bundle.resolve() if bundle is not None else None
        self.queue = WorkQueue(
            store, topology=topology if topology is not None else load_topology(cfg, bundle),
            correlation_window_s=cfg.server.correlation_window_s, lease_s=cfg.server.lease_s,
            bundle=str(self.bundle) if self.bundle else None)
        self.workers = cfg.server.workers if workers is None else workers
        self.warm = cfg.server.warm_kernels if warm is None else warm
        self.notify = notify
        self.metrics = metrics or IntakeMetrics()
        self.run_runbooks = run_runbooks
        self.pool: Any = None
        self._stop = threading.Event()
        self._wake_intake = threading.Event()
        self._wake_runbooks = threading.Event()
        self._threads: list[threading.Thread] = []
        self._supervised: dict[str, tuple[Callable[[], None], threading.Thread]] = {}
        self._deaths: dict[str, str] = {}  # worker name -> why it last died
        self._intake_beat = time.monotonic()
        self._store_error = ""  # the last store failure of the intake worker ("" once it works again)
        self._running = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> IntakeService:
        """Start the warm kernels and the worker threads; returns at once."""
        # Runbook kernels open the same store and workspace as this process.
        self._saved_home = os.environ.get("INCIDENTBOOK_HOME")
        os.environ.setdefault("INCIDENTBOOK_HOME", str(self.cfg.home))
        # The action broker holds the write credentials; kernels started from here get none.
        from incidentbook.actions.broker import start_in_process

        self.broker = start_in_process(self.cfg, self.store)
        if self.run_runbooks and self.workers > 0 and self.warm:
            from incidentbook.runner.pool import KernelPool

            self.pool = KernelPool(self.workers, kernel_name=self.cfg.runner.kernel_name).start()
        self._supervise(self._intake_loop, "incidentbook-intake")
        if self._escalation() is not None:
            self._supervise(self._escalation_loop, "incidentbook-escalation")
        if self.run_runbooks:
            for i in range(self.workers):
                self._supervise(self._runbook_loop, f"incidentbook-runbook-{i}")
        self._spawn(self._watchdog_loop, "incidentbook-watchdog")
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)
        return t

    # ------------------------------------------------------------------ supervision

    #: How often the watchdog looks for dead workers.
    watchdog_interval_s = 1.0

    def _supervise(self, target: Callable[[], None], name: str) -> None:
        """Run `target` in a thread the watchdog restarts if it dies."""
        def guarded() -> None:
            try:
                target()
            except BaseException as e:  # noqa: BLE001 - recorded; the thread ends and the watchdog restarts it
                self._deaths[name] = describe_error(e)
                log.error("%s died: %s", name, self._deaths[name], exc_info=True)
        self._supervised[name] = (target, self._spawn(guarded, name))

    def dead_workers(self) -> dict[str, str]:
        """Supervised workers not running now (name -> why), empty when all are alive."""
        if self._stop.is_set():
            return {}
        return {name: self._deaths.get(name, "stopped") for name, (_, t) in self._supervised.items()
                if not t.is_alive()}

    def _watchdog_loop(self) -> None:
        while not self._stop.wait(self.watchdog_interval_s):
            for name, why in self.dead_workers().items():
                log.error("restarting %s (it died: %s)", name, why)
                self.metrics.worker_restarts.labels(worker=name.removeprefix("incidentbook-")).inc()
                self._supervise(self._supervised[name][0], name)

    def readiness(self, max_pending_age_s: float | None = None) -> list[str]:
        """Why this server should not take traffic now; an empty list means ready.

        Checks: a dead worker, the intake worker stuck or failing on the store, the store
        unreachable, the oldest queued item older than `[server] ready_max_pending_s`, and the
        disk holding the store below `[server] min_free_mb`.
        """
        from incidentbook.incidents.store import StoreError

        reasons = [f"worker {name} is dead ({why}); it is being restarted"
                   for name, why in self.dead_workers().items()]
        stalled = time.monotonic() - self._intake_beat
        if not self._stop.is_set() and self._supervised and stalled > max(30.0, 10 * self.watchdog_interval_s):
            reasons.append(f"the intake worker has not completed a pass for {stalled:.0f} s")
        if self._store_error:
            reasons.append(f"the intake worker is failing: {self._store_error}")
        limit = self.cfg.server.ready_max_pending_s if max_pending_age_s is None else max_pending_age_s
        try:
            age = self.queue.oldest_queued_age()
        except StoreError as e:
            reasons.append(str(e))
            age = None
        if age is not None and age > limit:
            reasons.append(f"the oldest queued alert has waited {age:.0f} s (limit {limit:g} s, "
                           "[server] ready_max_pending_s)")
        free = self.store.free_bytes()
        if free is not None and free < self.cfg.server.min_free_mb * 1024 * 1024:
            reasons.append(f"disk full: {free / 1024 / 1024:.1f} MB free where the store lives (below "
                           f"[server] min_free_mb = {self.cfg.server.min_free_mb}); free space")
        return reasons

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking work, let running runbooks finish (up to `timeout`), shut kernels down."""
        self._stop.set()
        self._wake_intake.set()
        self._wake_runbooks.set()
        for t in self._threads:
            t.join(timeout=timeout)
        if self.pool is not None:
            self.pool.close()
        if getattr(self, "broker", None) is not None:
            self.broker.close()
            self.broker = None
        if getattr(self, "_saved_home", "unset") is None:  # start() set it: leave no trace
            os.environ.pop("INCIDENTBOOK_HOME", None)

    # ------------------------------------------------------------------ escalation

    #: How often open incidents are checked against policy.toml's [escalation] deadline.
    escalation_interval_s = 30.0

    def _escalation(self) -> Any:
        """policy.toml's [escalation] table, or None when there is none (or the file is broken)."""
        from incidentbook.autonomy.policy import load_policy, policy_path

        try:
            return load_policy(policy_path(self.cfg)).escalation
        except IncidentbookError as e:
            log.error("escalation is off: %s", e)
            return None

    def _escalation_loop(self) -> None:
        """Page a human for every open incident not mitigated within [escalation] after_minutes."""
        from incidentbook.autonomy.escalate import escalate_unmitigated

        while not self._stop.is_set():
            esc = self._escalation()
            if esc is not None:
                try:
                    log_ = self.broker.broker.audit if getattr(self, "broker", None) is not None else None
                    for page in escalate_unmitigated(esc, self.store, self.cfg.audit_log, log=log_):
                        log.warning("escalated %s: not mitigated after %.0f min", page.incident_id, page.minutes_open)
                except IncidentbookError as e:
                    log.error("escalation: %s", e)
            self._stop.wait(self.escalation_interval_s)

    # ------------------------------------------------------------------ intake

    def submit(self, source: str, raw: str) -> Enqueued:
        """Persist a webhook body in the queue (committed on return) and wake the intake worker."""
        result = self.queue.enqueue_alert(source, raw)
        if result.duplicate:
            self.metrics.deduplicated.labels(source=source).inc()
        self._wake_intake.set()
        return result

    def _intake_loop(self) -> None:
        from incidentbook.incidents.store import StoreError

        while not self._stop.is_set():
            self._intake_beat = time.monotonic()
            try:
                batch = self.queue.process_alerts(limit=INTAKE_BATCH)
                self._store_error = ""
            except StoreError as e:  # items stay queued; readiness reports it until the store is back
                if str(e) != self._store_error:
                    log.error("intake: %s", e)
                self._store_error = str(e)
                self._stop.wait(1.0)
                continue
            except Exception as e:  # noqa: BLE001 - the worker never dies of one pass
                log.error("intake: %s", describe_error(e), exc_info=True)
                self._store_error = f"its last pass failed ({describe_error(e)})"
                self._stop.wait(1.0)
                continue
            if not batch:
                self._wake_intake.wait(0.5)
                self._wake_intake.clear()
                continue
            for done in batch:
                if done.error:
                    self.metrics.failed.labels(kind="alert").inc()
                    log.warning("intake: item %s rejected: %s", done.item_id, done.error)
                elif done.created:
                    self.metrics.incidents_opened.inc()
                    self._wake_runbooks.set()
                elif done.incident_id:
                    self.metrics.grouped.labels(how="correlated" if done.joined else "group_key").inc()

    # ------------------------------------------------------------------ runbooks

    def _runbook_loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.queue.claim_runbook()
            except Exception as e:  # noqa: BLE001 - store trouble: back off and try again
                log.error("runbook worker: %s", describe_error(e) if not isinstance(e, IncidentbookError) else e)
                self._stop.wait(1.0)
                continue
            if job is None:
                self._wake_runbooks.wait(1.0)
                self._wake_runbooks.clear()
                continue
            self.run_job(job)

    def run_job(self, job: Job) -> str:
        """Execute one claimed runbook job; returns the job's final state."""
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, beat_stop), daemon=True)
        beat.start()
        with self._lock:
            self._running += 1
            self.metrics.running.set(self._running)
        state, error = "failed", ""
        try:
            state, error = self._run(job)
        except Exception as e:  # noqa: BLE001 - a broken job must not kill the worker
            error = f"{type(e).__name__}: {e}"
            log.exception("runbook job %s for %s", job.id, job.incident_id)
            if job.attempts < MAX_ATTEMPTS and not self._stop.is_set():
                beat_stop.set()
                self.queue.release(job)
                return "queued"
        finally:
            beat_stop.set()
            with self._lock:
                self._running -= 1
                self.metrics.running.set(self._running)
        if state == "failed":
            self.metrics.failed.labels(kind="runbook").inc()
        self.queue.finish(job, "done" if state in ("done", "skipped") else "failed", error)
        return state

    def _heartbeat(self, job: Job, stop: threading.Event) -> None:
        period = max(0.2, self.cfg.server.lease_s / 3)
        while not stop.wait(period):
            try:
                if not self.queue.heartbeat(job):
                    return
            except IncidentbookError as e:
                log.warning("heartbeat for job %s: %s", job.id, e)

    def _run(self, job: Job) -> tuple[str, str]:
        incident = self.store.get_incident(job.incident_id)
        runs = self.store.runs(incident.id)
        if any(r.status != "running" and r.ename != WORKER_LOST for r in runs):
            return "skipped", ""  # it already ran to completion: never twice
        for r in runs:
            if r.status == "running":
                self.store.finish_run(r.id, "failed", ename=WORKER_LOST,
                                      evalue="the server stopped while this runbook ran; it is run again")
        if job.attempts > MAX_ATTEMPTS:
            return "failed", f"gave up after {MAX_ATTEMPTS} attempts"
        bundle = Path(incident.bundle) if incident.bundle else None
        execute = self.pool.run if self.pool is not None else None
        started = time.monotonic()
        try:
            if execute is not None:
                result = run_incident_runbook(self.cfg, self.store, incident.id, bundle=bundle, execute=execute)
            else:
                result = run_incident_runbook(self.cfg, self.store, incident.id, bundle=bundle)
        except RunbookError as e:
            return "failed", str(e)
        self.metrics.runbook_seconds.observe(time.monotonic() - started)
        self.metrics.alert_to_notebook.observe(
            max(0.0, time.time() - incident.created.timestamp()))
        if not result.error:
            # Write proposals the autonomy policy lets run (cooldown or auto) go to the
            # Autopilot; a cooldown waits for vetoes, so it must not hold this worker.
            self._spawn(lambda: self._act(incident.id), f"incidentbook-autonomy-{incident.id}")
        if self.notify is not None:
            try:
                self.notify(incident.id)
            except Exception as e:  # noqa: BLE001 - a chat outage never fails the incident
                log.warning("notification for %s failed: %s", incident.id, e)
        return ("done" if not result.error else "failed"), result.error

    def _act(self, incident_id: str) -> None:
        from incidentbook.autonomy.proposals import act_on_proposals

        try:
            broker = self.broker.broker if getattr(self, "broker", None) is not None else None
            for out in act_on_proposals(self.cfg, self.store, incident_id, broker=broker):
                log.warning("autonomy for %s: %s %s", incident_id, out.status, out.detail)
        except IncidentbookError as e:
            log.error("autonomy for %s: %s", incident_id, e)

    @property
    def running(self) -> int:
        """Runbooks executing now."""
        return self._running
