"""The ledger of an incident worked in a real IPython shell with the extension, and its review notebook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat

from incidentbook.config import load_config
from incidentbook.incidents import Store
from incidentbook.proposals import proposal_source
from incidentbook.trust import build_ledger, write_report
from tests.trust.timelines import write_notebook


def outputs_text(nb: Any) -> str:
    """Everything a reader sees in the executed notebook's outputs."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts += [json.dumps(v) if not isinstance(v, str) else v for v in out.get("data", {}).values()]
    return "\n".join(parts)


def work_the_incident(sh: Any) -> tuple[str, str]:
    """%investigate; run P1 verbatim, P2 edited, leave P1c; refute H2 (P2c moot); close on H1."""
    from incidentbook.kernel_ext import get_session

    sh.run_cell("%investigate")
    s = get_session(sh)
    src = {pid: proposal_source(p) for pid, p in s.proposals.items()}
    assert set(src) == {"P1", "P1c", "P2", "P2c"}, src  # the simple investigator: H1 checkout, H2 payments
    # a person changes the query before running it (whatever the investigator wrote)
    edited = src["P2"] + "\nprint('checked by hand')"
    assert edited != src["P2"]
    ran = ["%investigate", src["P1"], edited]
    for cell in ran[1:]:
        assert not sh.run_cell(cell).error_in_exec
    sh.run_cell('%refute H2 "payments error ratio flat"')
    sh.run_cell('%close --summary "checkout deploy" --root-cause H1')
    cfg = load_config()
    write_notebook(cfg.incidents_dir / s.incident_id / "notebook.ipynb", ran)  # as saved from JupyterLab
    return s.incident_id, edited


def test_ledger_and_report_of_a_live_session(bound: Any, home: Path) -> None:
    iid, edited = work_the_incident(bound)
    cfg = load_config()
    with Store.from_config(cfg) as store:
        led = build_ledger(store, incidents_dir=cfg.incidents_dir)
        assert {p.proposal_id: p.fate for p in led.proposals} == {
            "P1": "verbatim", "P2": "edited", "P1c": "ignored", "P2c": "refuted"}
        p2 = next(p for p in led.proposals if p.proposal_id == "P2")
        assert p2.who == "alice" and p2.hypothesis_status == "refuted" and p2.ran_source.strip() == edited.strip()
        (row,) = led.rates()
        assert (row["investigator"], row["proposals"], row["acceptance_rate"]) == ("simple", 4, round(2 / 3, 4))
        assert (row["top_judged"], row["top_was_root_cause"]) == (1, 1)  # H1 was ranked first and confirmed

        path, _ = write_report(cfg, store)
    assert path == (home / "trust" / path.name) and path.name.startswith("report-")
    assert path.with_suffix(".json").is_file()
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "the report opens with its outputs"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    text = outputs_text(nb)
    assert "application/vnd.plotly.v1+json" in {k for c in code for o in c.outputs for k in o.get("data", {})}
    assert "4 proposals" in text and "67%" in text  # summary and the rates table
    assert "+print('checked by hand')" in text  # the edited diff shows what the person added
    assert "payments error ratio flat" in text  # the refuted hypothesis and its reason


def test_a_failing_report_cell_is_one_line(tmp_path: Path) -> None:
    import pytest

    from incidentbook.trust.report import ReportFailed, build_report, execute_report

    with pytest.raises(ReportFailed) as err:
        execute_report(build_report("gone.json"), tmp_path)
    msg = str(err.value)
    assert "gone.json is missing" in msg and "\n" not in msg and "\x1b" not in msg
