"""Timelines written through the store API, shaped as the kernel extension writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat

from incidentbook.agent.base import Hypothesis, Investigation, Proposal
from incidentbook.proposals import proposal_source, source_hash

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "alerts" / "checkout_firing.json"


def open_incident(store: Any, group: str, service: str = "checkout") -> str:
    """A new incident in `store` for alert group `group` (the sample Alertmanager payload)."""
    from incidentbook.intake.alertmanager import parse_alertmanager

    doc = json.loads(FIXTURE.read_text())
    doc["groupKey"] = f'{{}}:{{alertname="X",group="{group}"}}'
    doc["commonLabels"]["service"] = service
    return str(store.record_alerts(parse_alertmanager(json.dumps(doc))).incident.id)


def hypothesis(hid: str, service: str, kind: str, proposals: list[Proposal], role: str = "cause") -> Hypothesis:
    return Hypothesis(id=hid, statement=f"{kind} on {service}", service=service, fault_kind=kind,
                      role=role, proposals=proposals)  # type: ignore[arg-type]


def proposal(pid: str, hyp: str, code: str, kind: str = "read") -> Proposal:
    return Proposal(id=pid, code=code, rationale=f"check {hyp}", hypothesis=hyp, kind=kind,  # type: ignore[arg-type]
                    title=f"check {hyp}")


def investigate(store: Any, iid: str, investigator: str, model: str, hyps: list[Hypothesis]) -> None:
    """An `investigation` event, then one `proposal` event per proposal (as %investigate writes them)."""
    inv = Investigation(incident_id=iid, investigator=investigator, model=model, hypotheses=hyps)
    store.add_event(iid, "investigation", f"{investigator}: {len(hyps)} hypotheses", actor="alice", data=inv.to_dict())
    for p in inv.proposals:
        d = p.to_dict()
        store.add_event(iid, "proposal", f"proposed {p.id}", actor="alice",
                        data={**d, "source_hash": source_hash(proposal_source(d))})


def run(store: Any, iid: str, p: Proposal, source: str | None = None, who: str = "bob") -> str:
    """A person runs proposal `p` (its own source, or `source` when they edited it); returns what ran."""
    proposed = proposal_source(p.to_dict())
    ran = source if source is not None else proposed
    h = source_hash(ran)
    verbatim = h == source_hash(proposed)
    store.add_event(iid, "proposal_approved", f"{who} ran proposal {p.id}", actor=who,
                    data={"proposal_id": p.id, "who": who, "verbatim": verbatim,
                          "how": "verbatim" if verbatim else "edited", "source_hash": h,
                          "proposed_hash": source_hash(proposed), "kind": p.kind})
    store.add_event(iid, "cell_executed", "cell ran", actor=who,
                    data={"duration_s": 0.2, "outcome": "ok", "first_line": ran.splitlines()[0],
                          "source_hash": h, "proposal_id": p.id})
    return ran


def verdict(store: Any, iid: str, hid: str, kind: str, note: str = "") -> None:
    store.add_event(iid, f"hypothesis_{kind}", f"{hid} {kind}", actor="bob",
                    data={"hypothesis": hid, "note": note, "who": "bob"})


def write_notebook(path: Path, sources: list[str]) -> Path:
    """The incident notebook as saved from JupyterLab: the cells as they were run."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s, execution_count=i + 1)
                                         for i, s in enumerate(sources)])
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
