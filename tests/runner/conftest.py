"""Helpers for runner tests: small real runbook notebooks written to temp dirs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runbooks"

WriteRunbook = Callable[..., Path]


@pytest.fixture
def write_runbook(tmp_path: Path) -> WriteRunbook:
    """Write a minimal valid runbook `name.ipynb` into `directory` (default tmp_path/runbooks)."""

    def write(name: str, directory: Path | None = None, cells: list[str] | None = None,
              **meta: Any) -> Path:
        directory = directory or tmp_path / "runbooks"
        directory.mkdir(parents=True, exist_ok=True)
        nb = new_notebook()
        nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3",
                                  "language": "python"}
        nb.metadata["incidentbook"] = meta
        params = new_code_cell('incident_id = "INC-TEST"\nalertname = "TestAlert"\nlabels = {}')
        params.metadata.tags = ["parameters"]
        nb.cells = [new_markdown_cell(f"# {name}"), params,
                    *(new_code_cell(c) for c in (cells or []))]
        path = directory / f"{name}.ipynb"
        nbformat.write(nb, str(path))
        return path

    return write
