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
def bound(home: Path, tmp_path: Path) -> Iterator[Any]:
    """A real IPython shell with the extension, bound to a fresh incident replaying a bundle."""
    bundle = make_bundle(tmp_path / "bundle")
    incident_id = open_incident(home)
    sh = InteractiveShell.instance()
    sh.reset(new_session=False)
    sh.run_line_magic("load_ext", "incidentbook")
    sh.push({"incident_id": incident_id, "bundle": str(bundle), "window_start": WINDOW[0],
             "window_end": WINDOW[1], "service": "checkout",
             "labels": {"service": "checkout", "namespace": "shop"}})
    yield sh
    sh.run_line_magic("unload_ext", "incidentbook")
    sh.rl_next_input = None
    sh.reset(new_session=False)
