from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from tests.kernel_ext.conftest import home  # noqa: F401  (the isolated home fixture)
from tests.kernel_ext.incident_fixture import WINDOW, make_bundle, open_incident


@pytest.fixture
def bound(home: Path, tmp_path: Path) -> Iterator[Any]:  # noqa: F811
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
