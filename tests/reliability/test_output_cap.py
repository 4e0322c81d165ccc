"""A runbook cell that prints without end leaves a notebook of bounded size that says it was cut.

Real papermill runs in a real kernel (cold, and warm from a KernelPool).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from incidentbook.runner import read_runbook, run_runbook
from incidentbook.runner.execute import cap_outputs

CHATTY = "for i in range(60_000):\n    print('line', i, 'x' * 40)"
PLOT = "from IPython.display import display, HTML\nfor i in range(50):\n    display(HTML('<p>' + 'y' * 20000 + '</p>'))"


def _runbook(tmp_path: Path) -> Path:
    nb = new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["incidentbook"] = {}
    params = new_code_cell('incident_id = "INC-TEST"\nalertname = "TestAlert"\nlabels = {}')
    params.metadata.tags = ["parameters"]
    nb.cells = [new_markdown_cell("# chatty"), params, new_code_cell(CHATTY), new_code_cell(PLOT),
                new_code_cell("print('after the chatty cells')")]
    path = tmp_path / "runbooks" / "chatty.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))
    return path


def _check(out: Path, cap: int) -> None:
    nb = nbformat.read(str(out), as_version=4)
    assert out.stat().st_size < 4 * cap + 200_000  # was ~3 MB uncapped
    by_source = {c.source: c for c in nb.cells}  # papermill inserts its injected-parameters cell
    chatty, plot, last = by_source[CHATTY], by_source[PLOT], by_source["print('after the chatty cells')"]
    for cell in (chatty, plot):
        note = cell.outputs[-1]
        assert note["name"] == "stderr" and f"{cap:,}-byte cap" in note["text"]
        assert "[runner] max_output_bytes" in note["text"]
        assert cell.metadata["incidentbook"]["outputs_truncated"]["cap_bytes"] == cap
    assert chatty.outputs[0]["text"].startswith("line 0 ")  # the start is kept
    assert "after the chatty cells" in last.outputs[0]["text"]  # the run went on


def test_a_chatty_runbook_is_capped_per_cell_in_a_cold_run(tmp_path: Path) -> None:
    out = tmp_path / "out" / "notebook.ipynb"
    result = run_runbook(read_runbook(_runbook(tmp_path)), {"incident_id": "INC-1"}, out, tmp_path / "out",
                         cell_timeout_s=120, max_output_bytes=100_000)
    assert result.ok, result.message
    _check(out, 100_000)


@pytest.mark.slow
def test_a_chatty_runbook_is_capped_in_a_warm_kernel(tmp_path: Path) -> None:
    from incidentbook.runner.pool import KernelPool

    out = tmp_path / "out" / "notebook.ipynb"
    with KernelPool(1).start() as pool:
        result = pool.run(read_runbook(_runbook(tmp_path)), {"incident_id": "INC-1"}, out, tmp_path / "out",
                          cell_timeout_s=120, max_output_bytes=50_000)
    assert result.ok, result.message
    _check(out, 50_000)


def test_cells_under_the_cap_are_left_alone() -> None:
    nb = new_notebook(cells=[new_code_cell("print(1)")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    assert cap_outputs(nb, 1024) == 0 and nb.cells[0].outputs[0]["text"] == "1\n"
