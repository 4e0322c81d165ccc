"""The trust ledger: what became of every proposal and hypothesis, per investigator and model.

Built from the incident store's timeline, which the kernel extension writes as things happen:
`investigation` (the board: investigator, model, ranked hypotheses), `proposal` (each cell
offered, with its code and source hash), `proposal_approved` (a person ran it: verbatim or
edited), `cell_executed` (how the run went) and `hypothesis_confirmed` / `hypothesis_refuted`.

A proposal's fate is one of:
- `verbatim`: run exactly as proposed;
- `edited`: changed by a person, then run (the diff is kept);
- `refuted`: never run, and the hypothesis it was testing was refuted (moot, not ignored);
- `ignored`: never run while its hypothesis was still open or confirmed, in a closed incident;
- `pending`: not run yet in an incident that is still open (left out of acceptance rates).
A proposal that was run keeps its run fate even if its hypothesis was later refuted (running it
may be what refuted it); `hypothesis_status` says so. The acceptance rate is run proposals over
run + ignored ones: refuted and pending proposals are left out (nobody had a reason to run them).

Archived incidents from the postmortem library can be added: their incident notebook holds the
proposals (recorded output of the proposing cell) and the cells as they were run.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal

from incidentbook.errors import BadInput
from incidentbook.postmortems.draft import (
    investigation_state,
    looks_like_hypothesis_id,
    resolve_root_cause,
)
from incidentbook.proposals import (
    PROPOSAL_MIME,
    proposal_id_of,
    proposal_source,
    ran_by_person,
    source_hash,
)

Fate = Literal["verbatim", "edited", "ignored", "refuted", "pending"]
FATES: tuple[str, ...] = ("verbatim", "edited", "ignored", "refuted", "pending")
#: Investigator name for proposals no investigation made (e.g. a runbook's own `ib.act` call).
NO_INVESTIGATOR = "(runbook)"
#: Investigator name for archived incidents whose notebook does not say which investigator ran.
ARCHIVED = "(archived)"
#: `[fault_kind on service]` at the end of a root-cause line written by `root_cause_text`.
_RC_TAIL = re.compile(r"\[(?P<kind>[\w-]+) on (?P<service>[^\]]+)\]\s*$")
_SCAN_LIMIT = 100_000


@dataclass
class ProposalRecord:
    """One proposed cell and what a person did with it."""

    incident_id: str
    proposal_id: str
    investigator: str
    model: str
    kind: str
    hypothesis: str | None
    title: str
    proposed: str
    fate: str
    hypothesis_status: str = "open"
    ran_source: str = ""
    diff: str = ""
    who: str = ""
    outcome: str = ""  # ok | error | "" (never ran, or no cell_executed event)
    duration_s: float | None = None
    runs: int = 0
    source: str = "store"  # store | library

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class HypothesisRecord:
    """One hypothesis of one investigation and its verdict."""

    incident_id: str
    investigator: str
    model: str
    hypothesis_id: str
    statement: str
    service: str
    fault_kind: str
    rank: int
    status: str  # confirmed | refuted | open
    note: str = ""
    is_top: bool = False
    is_root_cause: bool | None = None  # None: the incident has no known root cause

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class InvestigationRecord:
    """One `%investigate` run and whether its top hypothesis was the confirmed root cause."""

    incident_id: str
    investigator: str
    model: str
    started: str
    hypotheses: int
    top: str  # "service:fault_kind" of the top cause hypothesis ('' when none)
    root_cause: str  # "service:fault_kind" of the incident's root cause ('' when unknown)
    top_was_root_cause: bool | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class Ledger:
    """Every proposal's fate and every hypothesis's verdict over a set of incidents."""

    proposals: list[ProposalRecord] = field(default_factory=list)
    hypotheses: list[HypothesisRecord] = field(default_factory=list)
    investigations: list[InvestigationRecord] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)
    since: str | None = None
    generated: str = ""

    def groups(self) -> list[tuple[str, str]]:
        """(investigator, model) pairs in the ledger, sorted."""
        keys = {(p.investigator, p.model) for p in self.proposals}
        keys |= {(i.investigator, i.model) for i in self.investigations}
        return sorted(keys)

    def rates(self) -> list[dict[str, Any]]:
        """Per investigator and model: proposals by fate, acceptance rates, hypotheses and top-hit rate."""
        rows = []
        for inv, model in self.groups():
            props = [p for p in self.proposals if (p.investigator, p.model) == (inv, model)]
            hyps = [h for h in self.hypotheses if (h.investigator, h.model) == (inv, model)]
            runs = [i for i in self.investigations if (i.investigator, i.model) == (inv, model)]
            counts = {f: sum(1 for p in props if p.fate == f) for f in FATES}
            n = len(props) - counts["pending"] - counts["refuted"]
            ran = counts["verbatim"] + counts["edited"]
            judged = [i for i in runs if i.top_was_root_cause is not None]
            rows.append({
                "investigator": inv, "model": model, "incidents": len({p.incident_id for p in props}
                                                                       | {i.incident_id for i in runs}),
                "investigations": len(runs), "proposals": len(props), **counts,
                "acceptance_rate": round(ran / n, 4) if n else None,
                "verbatim_rate": round(counts["verbatim"] / n, 4) if n else None,
                "edit_rate": round(counts["edited"] / ran, 4) if ran else None,
                "write_proposals": sum(1 for p in props if p.kind == "write"),
                "writes_run": sum(1 for p in props if p.kind == "write" and p.fate in ("verbatim", "edited")),
                "run_errors": sum(1 for p in props if p.outcome == "error"),
                "hypotheses": len(hyps),
                "confirmed": sum(1 for h in hyps if h.status == "confirmed"),
                "refuted_hypotheses": sum(1 for h in hyps if h.status == "refuted"),
                "open_hypotheses": sum(1 for h in hyps if h.status == "open"),
                "top_judged": len(judged),
                "top_was_root_cause": sum(1 for i in judged if i.top_was_root_cause),
                "top_hit_rate": round(sum(1 for i in judged if i.top_was_root_cause) / len(judged), 4) if judged else None,
            })
        return rows

    def totals(self) -> dict[str, Any]:
        """Fate counts and the acceptance rate over everything in the ledger."""
        counts = {f: sum(1 for p in self.proposals if p.fate == f) for f in FATES}
        n = len(self.proposals) - counts["pending"] - counts["refuted"]
        return {"incidents": len(self.incidents), "proposals": len(self.proposals), **counts,
                "acceptance_rate": round((counts["verbatim"] + counts["edited"]) / n, 4) if n else None}

    def edited(self) -> list[ProposalRecord]:
        """Proposals a person changed before running them."""
        return [p for p in self.proposals if p.fate == "edited"]

    def wrong_hypotheses(self) -> list[HypothesisRecord]:
        """Refuted hypotheses, and top hypotheses that were not the confirmed root cause."""
        return [h for h in self.hypotheses if h.status == "refuted" or (h.is_top and h.is_root_cause is False)]

    def to_dict(self) -> dict[str, Any]:
        """The `trust ledger --json` document."""
        return {"generated": self.generated, "since": self.since, "incidents": self.incidents,
                "totals": self.totals(), "rates": self.rates(),
                "proposals": [p.to_dict() for p in self.proposals],
                "hypotheses": [h.to_dict() for h in self.hypotheses],
                "investigations": [i.to_dict() for i in self.investigations]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Ledger:
        """A ledger from its `to_dict` document."""
        return cls(proposals=[ProposalRecord(**p) for p in doc.get("proposals", [])],
                   hypotheses=[HypothesisRecord(**h) for h in doc.get("hypotheses", [])],
                   investigations=[InvestigationRecord(**i) for i in doc.get("investigations", [])],
                   incidents=list(doc.get("incidents", [])), since=doc.get("since"),
                   generated=str(doc.get("generated", "")))

    def save(self, path: str | Path) -> Path:
        """Write the ledger as JSON to `path`."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> Ledger:
        """Read a ledger written by `save`; BadInput when the file is missing or not a ledger."""
        p = Path(path)
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise BadInput(f"ledger file {p} is missing; rebuild it with `incidentbook trust report`") from None
        except (ValueError, TypeError) as e:
            raise BadInput(f"{p} is not a trust ledger ({e}); rebuild it with `incidentbook trust report`") from None


# ---------------------------------------------------------------------------------- helpers

def parse_since(text: str | None) -> datetime | None:
    """`YYYY-MM-DD` (or a full ISO time) as an aware UTC datetime; BadInput naming the format."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"--since {text!r}: give a date as YYYY-MM-DD, e.g. --since 2026-01-01") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def edit_diff(proposed: str, ran: str, name: str = "") -> str:
    """A unified diff from the proposed cell to the cell as it was run ('' when they are the same)."""
    if source_hash(proposed) == source_hash(ran):
        return ""
    lines = difflib.unified_diff(proposed.strip().splitlines(), ran.strip().splitlines(),
                                 fromfile=f"{name} proposed".strip(), tofile=f"{name} as run".strip(), lineterm="")
    return "\n".join(lines)


def _key(h: dict[str, Any] | None) -> str:
    if not h:
        return ""
    return f"{h.get('service', '')}:{h.get('fault_kind', 'unknown')}"


def _top(hyps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The investigator's top hypothesis: the first-ranked cause (symptom-only boards have none)."""
    causes = [h for h in hyps if h.get("role", "cause") == "cause"]
    return causes[0] if causes else None


def root_cause_of(incident: Any, events: list[Any]) -> dict[str, Any] | None:
    """The incident's root cause as {service, fault_kind, ...}, or None when none is known.

    In order: the `root_cause` event `%close --root-cause H2` writes; a hypothesis id or a
    `H2: … [kind on service]` line in the incident's root_cause; a confirmed cause hypothesis.
    """
    for e in reversed(events):
        if e.kind == "root_cause" and isinstance(e.data.get("hypothesis"), dict):
            return dict(e.data["hypothesis"])
    text = (getattr(incident, "root_cause", None) or "").strip()
    if text:
        ref = text.split(":", 1)[0]
        if looks_like_hypothesis_id(ref):
            try:
                return resolve_root_cause(events, ref)
            except BadInput:
                pass
        m = _RC_TAIL.search(text)
        if m:
            return {"service": m.group("service").strip(), "fault_kind": m.group("kind"), "statement": text}
    _, hyps = investigation_state(events)
    confirmed = [h for h in hyps if h.get("status") == "confirmed" and h.get("role", "cause") == "cause"]
    return confirmed[0] if confirmed else None


def _notebook_cells(path: Path | None) -> dict[str, list[str]]:
    """Proposal id -> sources of the incident notebook's cells whose first line names it."""
    out: dict[str, list[str]] = {}
    if path is None or not path.is_file():
        return out
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # a corrupt notebook loses the diffs, not the ledger
        return out
    for cell in nb.cells:
        if cell.cell_type == "code" and (pid := proposal_id_of(cell.source)):
            out.setdefault(pid, []).append(cell.source)
    return out


def _ran_source(candidates: list[str], wanted_hash: str | None, proposed: str) -> str:
    """The notebook cell that was run: the one with the approval's hash, else one that differs."""
    for src in candidates:
        if wanted_hash and source_hash(src) == wanted_hash:
            return src
    changed = [s for s in candidates if source_hash(s) != source_hash(proposed)]
    return changed[0] if changed else ""


# ---------------------------------------------------------------------------------- from the store

def incident_ledger(incident: Any, events: list[Any], notebook: Path | None = None) -> Ledger:
    """The ledger of one incident from its timeline (oldest first) and its notebook (for edited diffs)."""
    led = Ledger(incidents=[incident.id])
    root = root_cause_of(incident, events)
    # Split the timeline at each investigation: verdicts apply to the board in force when given.
    cuts = [i for i, e in enumerate(events) if e.kind == "investigation"] + [len(events)]
    owner: dict[str, tuple[str, str]] = {}  # proposal id -> (investigator, model)
    hyp_owner: dict[str, tuple[str, str]] = {}
    hyp_status: dict[tuple[str, str, str], str] = {}  # (investigator, model, hypothesis id) -> status
    for a, b in zip(cuts, cuts[1:]):
        data = events[a].data or {}
        who = (str(data.get("investigator") or "unknown"), str(data.get("model") or ""))
        _, hyps = investigation_state(events[:b])
        top = _top(hyps)
        judged = None if root is None or top is None else _key(top) == _key(root)
        if root is not None and top is None and hyps:
            judged = False
        led.investigations.append(InvestigationRecord(
            incident.id, who[0], who[1], str(data.get("started", events[a].timestamp)), len(hyps), _key(top),
            _key(root), judged))
        for rank, h in enumerate(hyps, 1):
            hid = str(h["id"])
            led.hypotheses.append(HypothesisRecord(
                incident.id, who[0], who[1], hid, str(h.get("statement", "")), str(h.get("service", "")),
                str(h.get("fault_kind", "unknown")), rank, str(h.get("status", "open")),
                str(h.get("verdict_note", "")), is_top=h is top,
                is_root_cause=None if root is None else _key(h) == _key(root)))
            hyp_owner[hid] = who
            hyp_status[(*who, hid)] = str(h.get("status", "open"))
            for p in h.get("proposals", []):
                owner[str(p["id"])] = who

    offered: dict[str, dict[str, Any]] = {}
    offered_by: dict[str, tuple[str, str]] = {}
    latest: tuple[str, str] | None = None
    approvals: dict[str, list[dict[str, Any]]] = {}
    executions: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        d = e.data or {}
        if e.kind == "investigation":
            latest = (str(d.get("investigator") or "unknown"), str(d.get("model") or ""))
        elif e.kind == "proposal" and "id" in d:
            pid = str(d["id"])
            offered.setdefault(pid, dict(d))
            hyp = d.get("hypothesis")
            # An id the investigator chose, else the hypothesis it tests, else the latest board
            # (a renamed duplicate id); a proposal with none of those came from the runbook itself.
            by = owner.get(pid) or (hyp_owner.get(str(hyp)) if hyp else None)
            if by is None and latest is not None and d.get("author", "incidentbook") == "incidentbook" and hyp:
                by = latest
            offered_by.setdefault(pid, by or (NO_INVESTIGATOR, ""))
        elif ran_by_person(e.kind, d) and d.get("proposal_id"):
            # Headless runs and Run All batches are nobody's decision: they do not count.
            approvals.setdefault(str(d["proposal_id"]), []).append({**d, "_actor": e.actor})
        elif e.kind == "cell_executed" and d.get("proposal_id"):
            executions.setdefault(str(d["proposal_id"]), []).append(d)

    cells = _notebook_cells(notebook) if any(approvals.values()) else {}
    for pid, p in offered.items():
        inv, model = offered_by[pid]
        proposed = str(p.get("source") or proposal_source(p))
        proposed_hash = str(p.get("source_hash") or source_hash(proposed))
        hyp = p.get("hypothesis")
        status = hyp_status.get((inv, model, str(hyp)), "open") if hyp else "open"
        rec = ProposalRecord(incident.id, pid, inv, model, str(p.get("kind", "read")), hyp,
                             str(p.get("title") or p.get("rationale", ""))[:120], proposed, "ignored",
                             hypothesis_status=status)
        runs = approvals.get(pid, [])
        if runs:
            first = runs[0]
            edited = first.get("source_hash") != proposed_hash if first.get("source_hash") else not first.get("verbatim")
            rec.fate = "edited" if edited else "verbatim"
            rec.who = str(first.get("who") or first.get("_actor") or "")
            rec.runs = len(runs)
            if edited:
                rec.ran_source = _ran_source(cells.get(pid, []), first.get("source_hash"), proposed)
                rec.diff = edit_diff(proposed, rec.ran_source, pid) if rec.ran_source else ""
            ex = executions.get(pid, [])
            if ex:
                rec.outcome = str(ex[0].get("outcome", ""))
                rec.duration_s = ex[0].get("duration_s")
        elif status == "refuted":
            rec.fate = "refuted"
        elif getattr(incident, "status", "closed") == "open":
            rec.fate = "pending"
        led.proposals.append(rec)
    return led


def _merge(into: Ledger, part: Ledger) -> None:
    into.proposals += part.proposals
    into.hypotheses += part.hypotheses
    into.investigations += part.investigations
    into.incidents += part.incidents


def build_ledger(store: Any, since: str | None = None, incidents_dir: Path | None = None,
                 library: Any = None) -> Ledger:
    """The ledger over every incident in `store` opened on or after `since` (YYYY-MM-DD).

    `incidents_dir` (`cfg.incidents_dir`) finds each incident's notebook when the store has no
    path for it; `library` (a postmortems Library) adds archived incidents the store does not hold.
    """
    start = parse_since(since)
    led = Ledger(since=since, generated=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    for inc in reversed(store.list_incidents(limit=_SCAN_LIMIT)):
        if start is not None and inc.created < start:
            continue
        nb = Path(inc.notebook) if inc.notebook else (incidents_dir / inc.id / "notebook.ipynb" if incidents_dir else None)
        _merge(led, incident_ledger(inc, store.timeline(inc.id), nb))
    if library is not None:
        for part in library_ledgers(library, start, skip=set(led.incidents)):
            _merge(led, part)
    return led


# ---------------------------------------------------------------------------------- from the library

def notebook_ledger(incident_id: str, nb: Any) -> Ledger:
    """The ledger of an archived incident notebook (no timeline: fates come from the cells).

    Proposals are the recorded outputs of the cell that proposed them; a proposal cell with an
    execution count was run, edited when its source differs from the proposal. The investigator
    is the notebook's `metadata.incidentbook.investigator` when present, else "(archived)";
    proposals testing no hypothesis came from the runbook.
    """
    led = Ledger(incidents=[incident_id])
    meta = nb.metadata.get("incidentbook", {}) if hasattr(nb, "metadata") else {}
    inv, model = str(meta.get("investigator") or ARCHIVED), str(meta.get("model") or "")
    proposals: dict[str, dict[str, Any]] = {}
    ran: dict[str, list[Any]] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            payload = out.get("data", {}).get(PROPOSAL_MIME)
            if isinstance(payload, dict) and "id" in payload:
                proposals.setdefault(str(payload["id"]), payload)
        pid = proposal_id_of(cell.source)
        # A cell papermill executed ran headless: nobody decided to run it.
        headless = bool((cell.get("metadata", {}).get("papermill") or {}).get("start_time"))
        if pid and cell.get("execution_count") is not None and not headless:
            ran.setdefault(pid, []).append(cell)
    for pid, p in proposals.items():
        proposed = str(p.get("source") or proposal_source(p))
        by = inv if p.get("hypothesis") else NO_INVESTIGATOR
        rec = ProposalRecord(incident_id, pid, by, model if p.get("hypothesis") else "", str(p.get("kind", "read")),
                             p.get("hypothesis"),
                             str(p.get("title") or p.get("rationale", ""))[:120], proposed, "ignored",
                             source="library")
        if ran.get(pid):
            src = ran[pid][0].source
            rec.runs = len(ran[pid])
            if source_hash(src) == source_hash(proposed):
                rec.fate = "verbatim"
            else:
                rec.fate, rec.ran_source, rec.diff = "edited", src, edit_diff(proposed, src, pid)
        led.proposals.append(rec)
    return led


def library_ledgers(library: Any, start: datetime | None = None, skip: Iterable[str] = ()) -> list[Ledger]:
    """One ledger per archived incident in `library` (those in `skip` left out)."""
    import nbformat

    skipped = {s.upper() for s in skip}
    out = []
    for entry in library.entries():
        if entry.id.upper() in skipped:
            continue
        opened = str(entry.meta.get("opened", ""))
        if start is not None and opened and parse_since(opened) < start:  # type: ignore[operator]
            continue
        path = entry.path / "incident.ipynb"
        if not path.is_file():
            continue
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # one unreadable archive must not hide the rest
            continue
        out.append(notebook_ledger(entry.id, nb))
    return out


def today() -> str:
    """Today's date (UTC) as YYYY-MM-DD, the default report name's suffix."""
    return date.today().isoformat()
