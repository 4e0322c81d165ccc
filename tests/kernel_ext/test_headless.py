"""Headless: a papermill run of a notebook that investigates the incident's bundle.

Proposals come out as output metadata and become un-run cells after materialize_proposals; a
write action raises ApprovalRequired, is left as a write proposal, and the audit log has no
entry for it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

from incidentbook.proposals import PROPOSAL_MIME, materialize_proposals, proposal_id_of
from tests.kernel_ext.incident_fixture import WINDOW


def runbook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('incident_id = ""\nbundle = ""\nwindow_start = ""\nwindow_end = ""')
    params.metadata["tags"] = ["parameters"]
    write = nbformat.v4.new_code_cell('ib.act.scale("checkout", 4, namespace="shop", reason="absorb retries")')
    nb.cells = [params, nbformat.v4.new_code_cell("%load_ext incidentbook"),
                nbformat.v4.new_code_cell("%investigate"), write,
                nbformat.v4.new_markdown_cell("End of runbook.")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_papermill_run_records_proposals_and_refuses_writes(home: Path, incident_id: str, bundle: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENTBOOK_HEADLESS", "1")
    out = tmp_path / "notebook.ipynb"
    # The write is the runbook's last code cell: papermill stops there with ApprovalRequired.
    with pytest.raises(papermill.PapermillExecutionError, match="ApprovalRequired"):
        papermill.execute_notebook(str(runbook(tmp_path / "runbook.ipynb")), str(out), cwd=str(home),
                                   parameters={"incident_id": incident_id, "bundle": str(bundle),
                                               "window_start": WINDOW[0], "window_end": WINDOW[1]},
                                   progress_bar=False, kernel_name="python3")
    nb = nbformat.read(out, as_version=4)
    inv_cell = next(c for c in nb.cells if c.source == "%investigate")
    recorded = [o["data"][PROPOSAL_MIME] for o in inv_cell.outputs if PROPOSAL_MIME in o.get("data", {})]
    assert recorded and all(p["kind"] == "read" for p in recorded)
    assert any("text/html" in o.get("data", {}) and "Hypotheses" in o["data"]["text/html"] for o in inv_cell.outputs)

    write_cell = next(c for c in nb.cells if c.source.startswith("ib.act.scale"))
    err = next(o for o in write_cell.outputs if o["output_type"] == "error")
    assert err["ename"] == "ApprovalRequired" and len(err["traceback"]) == 1
    write_props = [o["data"][PROPOSAL_MIME] for o in write_cell.outputs if PROPOSAL_MIME in o.get("data", {})]
    assert [p["kind"] for p in write_props] == ["write"]
    assert not (home / "audit.jsonl").exists()

    n_before = len(nb.cells)
    added = materialize_proposals(nb)
    assert added == len(recorded) + 1 and len(nb.cells) == n_before + 2 * added
    assert materialize_proposals(nb) == 0  # idempotent
    idx = nb.cells.index(inv_cell)
    md, code = nb.cells[idx + 1], nb.cells[idx + 2]
    assert md.cell_type == "markdown" and recorded[0]["rationale"] in md.source
    meta = code.metadata["incidentbook"]["proposal"]
    assert set(meta) == {"id", "rationale", "hypothesis", "kind", "author", "created"}
    assert meta["id"] == recorded[0]["id"] and proposal_id_of(code.source) == meta["id"]
    assert code.outputs == [] and code.execution_count is None
    widx = nb.cells.index(write_cell)
    assert nb.cells[widx + 2].metadata["incidentbook"]["proposal"]["kind"] == "write"
    assert "ib.act.scale('checkout', 4, namespace='shop'" in nb.cells[widx + 2].source
    nbformat.validate(nb)

    # Every runbook cell and every proposal is on the incident timeline, written during the run.
    from incidentbook.config import load_config
    from incidentbook.incidents import Store

    with Store.from_config(load_config()) as store:
        timeline = store.timeline(incident_id)
    kinds = [e.kind for e in timeline]
    cells = [e.data for e in timeline if e.kind == "cell_executed"]
    assert [c["first_line"] for c in cells] == ["%investigate", 'ib.act.scale("checkout", 4, namespace="shop", reason="absorb retries")']
    assert [c["outcome"] for c in cells] == ["ok", "error"] and "ApprovalRequired" in cells[1]["error"]
    assert "investigation" in kinds
    assert kinds.count("proposal") == added
