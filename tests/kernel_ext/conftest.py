from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from tests.kernel_ext.incident_fixture import WINDOW, make_bundle, open_incident, write_config


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated incidentbook home with a config file, as the working directory."""
    h = tmp_path / "home"
    h.mkdir()
    write_config(h)
    monkeypatch.setenv("INCIDENTBOOK_HOME", str(h))
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.delenv("INCIDENTBOOK_HEADLESS", raising=False)
    monkeypatch.chdir(h)
    return h


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


@pytest.fixture
def incident_id(home: Path) -> str:
    return open_incident(home)


@pytest.fixture
def shell(home: Path) -> Iterator[Any]:
    """The real IPython shell with the extension loaded; unloaded and cleaned after the test."""
    sh = InteractiveShell.instance()
    sh.reset(new_session=False)
    sh.run_line_magic("load_ext", "incidentbook")
    yield sh
    sh.run_line_magic("unload_ext", "incidentbook")
    sh.rl_next_input = None
    sh.reset(new_session=False)


@pytest.fixture
def bound(shell: Any, incident_id: str, bundle: Path) -> Any:
    """The shell as papermill leaves it in an incident notebook: parameters injected."""
    shell.push({"incident_id": incident_id, "bundle": str(bundle), "window_start": WINDOW[0],
                "window_end": WINDOW[1], "service": "checkout",
                "labels": {"service": "checkout", "namespace": "shop"}})
    return shell
