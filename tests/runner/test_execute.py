"""Running runbooks with papermill: success, and failures that still leave a notebook."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from incidentbook.errors import ConfigError, RunbookError, RunbookFailed
from incidentbook.runner import (
    build_parameters,
    get_runbook,
    load_runbooks,
    read_runbook,
    run_runbook,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runbooks"
WriteRunbook = Callable[..., Path]
BANNER_TAG = "papermill-error-cell-tag"


def params(**overrides: object) -> dict:
    base = dict(
        incident_id="INC-20261123-0042", alertname="HighErrorRate",
        labels={"alertname": "HighErrorRate", "service": "checkout", "severity": "critical"},
        annotations={"summary": "5xx <b>above</b> 5%", "runbook_url": "https://wiki.example/x"},
        starts_at="2026-11-23T10:00:00Z", generator_url="http://prom.example:9090/alerts",
        sources={"prometheus": {"url": "http://prom.example:9090",
                                "headers_env": {"Authorization": "PROM_AUTH"}}},
    )
    base.update(overrides)
    return build_parameters(**base)  # type: ignore[arg-type]


def outputs_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.extend(str(v) for v in out.get("data", {}).values())
    return "".join(parts)


def html_outputs(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("data", {}).get("text/html", "")
                   for c in nb.cells for o in c.get("outputs", []))


def test_generic_runbook_runs_with_injected_parameters(tmp_path: Path) -> None:
    generic = get_runbook("generic", load_runbooks(workspace_dir=tmp_path / "none"))
    p = params()
    out = tmp_path / "inc" / "notebook.ipynb"
    result = run_runbook(generic, p, out, tmp_path / "inc", cell_timeout_s=60)

    assert result.ok, result.message
    nb = nbformat.read(str(out), as_version=4)
    assert nb.metadata["incidentbook"] == {"incident_id": "INC-20261123-0042",
                                           "runbook": "generic", "parameters": p}
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "INC-20261123-0042" in injected[0].source
    html = html_outputs(nb)
    # The alert card shows the real alert, escaped, with its links; never the sample defaults.
    assert "HighErrorRate" in html and "INC-20261123-0042" in html
    assert "5xx &lt;b&gt;above&lt;/b&gt; 5%" in html and "<b>above</b>" not in html
    assert 'href="http://prom.example:9090/alerts"' in html
    assert 'href="https://wiki.example/x"' in html
    assert "INC-SAMPLE-0001" not in html
    # Sources are references: the env var name is there, never a value.
    assert "PROM_AUTH" in html
    assert not any(c.get("outputs") and any(o.output_type == "error" for o in c.outputs)
                   for c in nb.cells if c.cell_type == "code")


def test_cells_run_in_the_incident_directory(tmp_path: Path, write_runbook: WriteRunbook) -> None:
    path = write_runbook("writer", cells=[
        'import os\nopen("evidence.txt", "w").write(incident_id)\nprint(os.getcwd())'])
    cwd = tmp_path / "incidents" / "INC-1"
    out = tmp_path / "elsewhere" / "out.ipynb"
    result = run_runbook(read_runbook(path), {"incident_id": "INC-1"}, out, cwd, cell_timeout_s=30)
    assert result.ok, result.message
    assert (cwd / "evidence.txt").read_text() == "INC-1"
    assert out.is_file() and not (out.parent / "evidence.txt").exists()


def test_a_run_does_not_move_the_callers_working_directory(
        tmp_path: Path, write_runbook: WriteRunbook) -> None:
    # `serve` runs runbooks in worker threads: the process cwd must stay put meanwhile.
    import os
    import threading
    import time

    path = write_runbook("slow", cells=["import time\ntime.sleep(1.5)"])
    before = os.getcwd()
    results = []
    worker = threading.Thread(target=lambda: results.append(run_runbook(
        read_runbook(path), {}, tmp_path / "o.ipynb", tmp_path / "inc", cell_timeout_s=30)))
    worker.start()
    seen = set()
    while worker.is_alive():
        seen.add(os.getcwd())
        time.sleep(0.05)
    worker.join()
    assert results[0].ok, results[0].message
    assert seen == {before}


@pytest.mark.parametrize(("fixture", "ename", "failing_source", "evalue_part"), [
    ("syntax_error", "SyntaxError", "def broken(:", "invalid syntax"),
    ("raises", "RuntimeError", 'raise RuntimeError("upstream returned 503")', "upstream returned 503"),
    ("timeout", "CellTimeoutError", "time.sleep(60)", "within 2 s"),
    ("kills_kernel", "DeadKernelError", "os._exit(1)", "kernel died"),
])
def test_failing_runbook_returns_failed_and_keeps_partial_notebook(
        tmp_path: Path, fixture: str, ename: str, failing_source: str, evalue_part: str) -> None:
    runbook = read_runbook(FIXTURES / f"{fixture}.ipynb")
    out = tmp_path / "notebook.ipynb"
    result = run_runbook(runbook, {"incident_id": "INC-7"}, out, tmp_path, cell_timeout_s=2)

    assert result.status == "failed"
    assert result.ename == ename
    assert evalue_part in result.evalue
    nb = nbformat.read(str(out), as_version=4)
    # The failing cell is where cell_index says, in the notebook on disk.
    assert result.cell_index is not None
    failing = nb.cells[result.cell_index]
    assert failing_source in failing.source
    assert [o.ename for o in failing.outputs if o.output_type == "error"] == [ename]
    # papermill's red banner is at the top, and an anchor sits right above the failing cell.
    assert BANNER_TAG in nb.cells[0].metadata.get("tags", [])
    assert "An Exception was encountered" in nb.cells[0].source
    assert BANNER_TAG in nb.cells[result.cell_index - 1].metadata.get("tags", [])
    # The cells before it ran (with the injected parameters); the one after never did.
    ran = next(c for c in nb.cells if 'print("step 1 ran' in c.source)
    assert "step 1 ran for INC-7" in outputs_text(ran)
    last = nb.cells[-1]
    assert "never reached" in last.source and not last.outputs
    assert last.metadata.papermill.status == "pending"
    assert nb.metadata["incidentbook"]["incident_id"] == "INC-7"
    with pytest.raises(RunbookFailed) as info:
        result.raise_for_status()
    assert info.value.cell_index == result.cell_index and info.value.ename == ename
    assert str(out) in str(info.value)


@pytest.mark.parametrize(("fixture", "text"), [
    ("no_parameters", "no code cell tagged 'parameters'"),
    ("not_json", "not valid notebook JSON"),
])
def test_invalid_runbook_raises_before_running(tmp_path: Path, fixture: str, text: str) -> None:
    out = tmp_path / "notebook.ipynb"
    with pytest.raises(RunbookError) as info:
        run_runbook(read_runbook(FIXTURES / f"{fixture}.ipynb"), {}, out, tmp_path, 5)
    assert text in str(info.value) and fixture in str(info.value)
    assert not out.exists()


def test_missing_kernel_raises_before_running(tmp_path: Path, write_runbook: WriteRunbook) -> None:
    path = write_runbook("plain", cells=["print(1)"])
    with pytest.raises(RunbookError, match="kernel 'nope-kernel' is not installed"):
        run_runbook(read_runbook(path), {}, tmp_path / "o.ipynb", tmp_path, 5,
                    kernel_name="nope-kernel")


def test_notebook_kernel_is_checked_when_no_kernel_is_forced(tmp_path: Path) -> None:
    runbook = read_runbook(FIXTURES / "missing_kernel.ipynb")
    with pytest.raises(RunbookError, match="kernel 'no-such-kernel-xyz'.*not installed"):
        run_runbook(runbook, {}, tmp_path / "o.ipynb", tmp_path, 5, kernel_name=None)
    assert not (tmp_path / "o.ipynb").exists()


def test_parameters_hold_references_and_iso_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_AUTH", "Bearer s3cr3t-token")
    p = params(sources={"prometheus": {"url": "http://prom:9090",
                                       "headers_env": {"Authorization": "PROM_AUTH"},
                                       "password": "hunter22", "namespace": "shop"}})
    assert p["sources"] == {"prometheus": {"url": "http://prom:9090", "namespace": "shop",
                                           "headers_env": {"Authorization": "PROM_AUTH"}}}
    assert "s3cr3t" not in json.dumps(p) and "hunter22" not in json.dumps(p)
    assert p["starts_at"] == "2026-11-23T10:00:00.000Z"
    assert p["window_start"] == "2026-11-23T09:00:00.000Z"
    assert p["window_end"] >= "2026-11-23T10:30:00.000Z"
    assert (p["service"], p["severity"], p["bundle"]) == ("checkout", "critical", "")


def test_secret_value_anywhere_in_parameters_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_AUTH", "Bearer s3cr3t-token")
    with pytest.raises(ConfigError, match=r"annotations\.note contains the value of \$PROM_AUTH"):
        params(annotations={"note": "curl -H 'Authorization: Bearer s3cr3t-token'"})
    with pytest.raises(ConfigError, match="labels.key contains the value of secret #1"):
        params(labels={"key": "abc-key-123"}, secrets=["abc-key-123"])


def test_password_in_source_url_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[sources.prometheus\] url carries a password"):
        params(sources={"prometheus": {"url": "https://admin:pw@prom.example"}})
