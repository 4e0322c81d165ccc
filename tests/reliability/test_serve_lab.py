"""The JupyterLab `serve` starts listens on loopback and dies with `serve`, even on SIGKILL.

A real `incidentbook serve` child process with a real JupyterLab (no --no-lab).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.serveproc import make_serve

psutil = pytest.importorskip("psutil", reason="psutil comes with ipykernel; without it this case cannot inspect processes")


def _lab_children(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [k for k in kids if "lab" in " ".join(k.cmdline())]


@pytest.mark.slow
def test_the_lab_listens_on_loopback_and_stops_when_serve_is_killed(tmp_path: Path) -> None:
    server = make_serve(tmp_path / "ws", "[server]\nworkers = 0\n")
    server.args.remove("--no-lab")
    server.start(ready_timeout=90)
    assert server.proc is not None
    labs: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        listening: list[str] = []
        while time.monotonic() < deadline and not listening:
            for lab in _lab_children(server.proc.pid):
                try:
                    listening = [c.laddr.ip for c in lab.net_connections(kind="inet") if c.status == "LISTEN"]
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.5)
        assert listening, "JupyterLab did not start listening"
        assert set(listening) <= {"127.0.0.1", "::1"}, listening
        labs = _lab_children(server.proc.pid)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        server.proc = None
        gone, alive = psutil.wait_procs(labs, timeout=20)
        assert not alive, f"JupyterLab outlived serve: {[p.pid for p in alive]}"
    finally:
        if server.proc is not None:
            server.stop()
        for p in labs:
            if p.is_running():
                p.kill()
