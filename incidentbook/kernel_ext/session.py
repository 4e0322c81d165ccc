"""Per-kernel state of the extension: the bound incident, its store, telemetry and proposals.

Timeline events are written as things happen (cell start/finish callbacks), so a kernel crash
loses nothing that already ran.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from IPython.core.error import UsageError

from incidentbook.errors import IncidentbookError
from incidentbook.proposals import (
    HEADLESS_ENV,
    classify,
    proposal_bundle,
    proposal_id_of,
    proposal_source,
    source_hash,
    stricter_kind,
)

#: A proposal cell starting less than this long after the previous cell finished was run in a
#: batch (Run All, "run all below"), not by a person deciding on it: it is not an approval.
BULK_GAP_S = 0.3

#: Set to 1 in the environment of a headless (papermill) kernel: proposals become output
#: metadata and write actions raise ApprovalRequired.


def detect_headless() -> bool:
    """Whether this kernel runs without a person at it (INCIDENTBOOK_HEADLESS or PAPERMILL_EXECUTION)."""
    for var in (HEADLESS_ENV, "PAPERMILL_EXECUTION"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes"):
            return True
    return False


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Session:
    """What the extension knows in one kernel."""

    def __init__(self, shell: Any, headless: bool | None = None) -> None:
        self.shell = shell
        self.headless = detect_headless() if headless is None else headless
        self.incident_id: str | None = None
        self.proposals: dict[str, dict[str, Any]] = {}
        self.queue: list[str] = []
        self._cfg: Any = None
        self._store: Any = None
        self._telemetry: Any = None
        self._telemetry_key: Any = None
        self._cell_started: float | None = None
        self._cell_proposal: str | None = None
        self._last_cell_end: float | None = None
        self._warned = False
        #: The action broker's client (None: the workspace's socket, `<home>/broker.sock`).
        self.broker_client: Any = None

    @staticmethod
    def detect_headless() -> bool:
        """Whether the environment says nobody is at this kernel (checked again per action)."""
        return detect_headless()

    # -- config, store, incident ---------------------------------------------------------------
    @property
    def cfg(self) -> Any:
        if self._cfg is None:
            from incidentbook.config import load_config

            self._cfg = load_config()
        return self._cfg

    @property
    def store(self) -> Any:
        if self._store is None:
            from incidentbook.incidents import Store

            self._store = Store.from_config(self.cfg)
        return self._store

    @property
    def user(self) -> str:
        from incidentbook.actions import current_user

        return current_user()

    def bound(self) -> str | None:
        """The bound incident id: `%incident use`, else the papermill-injected `incident_id`."""
        if self.incident_id is None:
            injected = self.shell.user_ns.get("incident_id")
            if isinstance(injected, str) and injected:
                self.bind(injected, check=False)
        return self.incident_id

    def require(self) -> str:
        """The bound incident id, or a one-line UsageError saying how to bind one."""
        iid = self.bound()
        if not iid:
            raise UsageError("no incident bound to this notebook; run %incident use INC-… (see %incident --help)")
        return iid

    def bind(self, incident_id: str, check: bool = True) -> Any:
        """Bind to an incident and recover the proposals it already has (from its timeline)."""
        incident = self.store.get_incident(incident_id) if check else None
        self.incident_id = incident.id if incident is not None else incident_id
        self._telemetry = None
        try:
            for ev in self.store.timeline(self.incident_id):
                self._remember_from_event(ev.kind, ev.data or {})
        except IncidentbookError:
            pass
        return incident

    def _remember_from_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "proposal" and "id" in data:
            self.proposals.setdefault(str(data["id"]), dict(data))
        elif kind == "investigation":
            for h in data.get("hypotheses", []):
                for p in h.get("proposals", []):
                    self.proposals.setdefault(str(p["id"]), {**p, "source_hash": source_hash(proposal_source(p))})

    def record(self, kind: str, summary: str, data: dict[str, Any] | None = None, *, quiet: bool = False) -> Any:
        """Append a timeline event to the bound incident (committed at once)."""
        iid = self.require()
        try:
            return self.store.add_event(iid, kind, summary, actor=self.user, data=data or {})
        except IncidentbookError as e:
            if not quiet:
                raise
            if not self._warned:
                self._warned = True
                print(f"incidentbook: could not write to the timeline ({e})")
        return None

    # -- window and telemetry ------------------------------------------------------------------
    def window(self) -> tuple[str, str]:
        """The incident window: the injected parameters, else 30 min before the first alert to now."""
        ns = self.shell.user_ns
        ws, we = ns.get("window_start"), ns.get("window_end")
        if ws and we:
            return str(ws), str(we)
        now = datetime.now(timezone.utc)
        start = now - timedelta(hours=1)
        iid = self.bound()
        if iid:
            try:
                alerts = self.store.alerts(iid)
                if alerts:
                    start = min(a.starts_at for a in alerts) - timedelta(minutes=30)
            except IncidentbookError:
                pass
        return _iso(start), _iso(now)

    def bundle_path(self) -> str:
        """The telemetry bundle this notebook replays ('' for live sources)."""
        b = self.shell.user_ns.get("bundle")
        if isinstance(b, str) and b:
            return b
        iid = self.bound()
        if iid:
            try:
                return self.store.get_incident(iid).bundle or ""
            except IncidentbookError:
                return ""
        return ""

    def telemetry(self) -> Any:
        """The telemetry facade: the incident's bundle when it has one, else the configured sources."""
        key = self.bundle_path()
        if self._telemetry is None or key != self._telemetry_key:
            try:
                from incidentbook.telemetry.sources import Telemetry
            except ImportError:
                raise UsageError("the telemetry layer is not installed in this environment; reinstall incidentbook") from None
            self._telemetry = Telemetry.from_bundle(key) if key else Telemetry.from_config(self.cfg)
            self._telemetry_key = key
        return self._telemetry

    # -- proposals -----------------------------------------------------------------------------
    def _free_id(self, wanted: str) -> str:
        if wanted and wanted not in self.proposals:
            return wanted
        n = len(self.proposals) + 1
        while f"P{n}" in self.proposals:
            n += 1
        return f"P{n}"

    def propose(self, p: dict[str, Any], *, show: bool = True) -> str:
        """Offer a proposal: a new cell below (live) or output metadata (headless). Returns its id."""
        p = dict(p)
        wanted = str(p.get("id") or "")
        existing = self.proposals.get(wanted)
        if existing and existing.get("source_hash") == source_hash(proposal_source(p)):
            pid = wanted
        else:
            pid = self._free_id(wanted)
        p["id"] = pid
        p.setdefault("author", "incidentbook")
        p.setdefault("kind", "read")
        p.setdefault("created", _iso(datetime.now(timezone.utc)))
        p.setdefault("hypothesis", None)
        src = proposal_source(p)
        # The code decides its kind: a "read" that reaches ib.act, os or a file write is a write.
        p["kind"] = stricter_kind(p.get("kind"), classify(src))
        entry = {**p, "source_hash": source_hash(src)}
        self.proposals[pid] = entry
        if self.bound():
            self.record("proposal", f"proposed {pid}: {p.get('title') or p.get('rationale', '')}"[:200],
                        {k: v for k, v in entry.items()}, quiet=True)
        if show:
            if self.headless:
                from IPython.display import display

                display(proposal_bundle(p), raw=True)
            else:
                self.queue.append(pid)
        return pid

    def offer_next(self) -> None:
        """Put the next queued proposal below the current cell (frontends take one per cell run)."""
        while self.queue:
            pid = self.queue.pop(0)
            if pid in self.proposals:
                self.shell.set_next_input(proposal_source(self.proposals[pid]), replace=False)
                return

    # -- cell callbacks --------------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        """Note the start; a person running a read proposal is its approval, recorded before it runs.

        Not an approval (recorded as `proposal_run` with the reason): a headless run, a cell run in
        a batch right after the previous one (Run All), and any cell whose code writes: writes are
        approved at the action broker, never by running a cell.
        """
        started = time.perf_counter()
        # Only a kernel has a front end that can send a batch; a bare shell runs what it is given.
        in_kernel = getattr(self.shell, "kernel", None) is not None
        bulk = in_kernel and self._last_cell_end is not None and started - self._last_cell_end < BULK_GAP_S
        self._cell_started = started
        self._cell_proposal = None
        raw = getattr(info, "raw_cell", "") or ""
        pid = proposal_id_of(raw)
        if not pid or not self.bound():
            return
        self._cell_proposal = pid
        known = self.proposals.get(pid)
        h = source_hash(raw)
        if known is None:
            how = "unknown"
        else:
            how = "verbatim" if known.get("source_hash") == h else "edited"
        kind = stricter_kind((known or {}).get("kind", "read"), classify(raw))
        headless = self.headless or detect_headless()
        data = {"proposal_id": pid, "who": self.user, "when": _iso(datetime.now(timezone.utc)),
                "verbatim": how == "verbatim", "how": how, "source_hash": h,
                "proposed_hash": (known or {}).get("source_hash"), "kind": kind,
                "headless": headless, "bulk": bulk}
        why = ("headless run" if headless else "run in a batch (Run All)" if bulk
               else "a write: it is approved at the action broker, not by running the cell" if kind == "write" else "")
        if why:
            self.record("proposal_run", f"proposal {pid} ran, not an approval: {why}", {**data, "why": why}, quiet=True)
            return
        summary = f"{self.user} ran proposal {pid}" + ("" if how == "verbatim" else f" ({how})")
        self.record("proposal_approved", summary, data, quiet=True)

    def post_run_cell(self, result: Any) -> None:
        """Record every executed cell with its duration and outcome."""
        started = self._cell_started
        self._cell_started = None
        self._last_cell_end = time.perf_counter()
        if started is None or not self.bound():
            return
        duration = time.perf_counter() - started
        raw = getattr(getattr(result, "info", None), "raw_cell", "") or ""
        err = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        outcome = "error" if err is not None else "ok"
        first = raw.strip().split("\n", 1)[0][:120]
        data = {"duration_s": round(duration, 4), "outcome": outcome, "first_line": first,
                "source_hash": source_hash(raw), "execution_count": getattr(result, "execution_count", None),
                "proposal_id": self._cell_proposal}
        if err is not None:
            data["error"] = f"{type(err).__name__}: {err}"[:500]
        self.record("cell_executed", f"cell ran in {duration:.2f}s ({outcome}): {first}"[:200], data, quiet=True)
        if self._cell_proposal and not self.headless:
            self.offer_next()
