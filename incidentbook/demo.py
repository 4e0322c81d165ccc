"""`incidentbook demo`: the whole loop on a simulated system, with no external services.

Generate a scenario (a simulated shop with an injected fault), ingest the alert its rules
would have sent, run the matched runbook against the replayed telemetry bundle, and open the
incident notebook in JupyterLab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from incidentbook.config import Config, load_config
from incidentbook.errors import IncidentbookError
from incidentbook.intake.ingest import IngestedIncident, ingest_alertmanager


@dataclass
class DemoResult:
    """What the demo produced."""

    scenario: str
    home: Path
    bundle: Path
    incidents: list[IngestedIncident]


def demo_config(home: Path) -> Config:
    """A configuration whose state lives in `home`, ignoring any incidentbook.toml around."""
    cfg = load_config(path=None, start=home)
    cfg.home = home.resolve()
    cfg.config_path = None
    return cfg


def run_demo(scenario: str | None, home: Path, seed: int = 0, log=print) -> DemoResult:  # type: ignore[no-untyped-def]
    """Generate `scenario` into `home`, ingest its first alert group with the bundle, return the result."""
    from incidentbook import scenarios

    name = scenario or scenarios.DEFAULT_SCENARIO
    home.mkdir(parents=True, exist_ok=True)
    out = home / "scenarios" / f"{name}-seed{seed}"
    if out.exists():
        shutil.rmtree(out)
    log(f"[1/3] simulating scenario {name!r} (seed {seed}) ...")
    generated = scenarios.generate(name, out, seed=seed)
    if not generated.payloads:
        raise IncidentbookError(f"scenario {name!r} sent no alerts (it is not an incident); "
                                "pick another with `incidentbook scenario list`")
    log(f"      bundle: {generated.bundle_dir}")
    log(f"[2/3] ingesting the alert {generated.payloads[0].name} and running its runbook ...")
    cfg = demo_config(home)
    results = ingest_alertmanager(cfg, generated.payloads[0].read_bytes(), bundle=generated.bundle_dir)
    return DemoResult(scenario=name, home=home, bundle=generated.bundle_dir, incidents=results)


def lab_command(home: Path, notebook: Path) -> list[str]:
    """The `jupyter lab` command that serves `home` and opens `notebook`."""
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
    rel = notebook.resolve().relative_to(home.resolve())
    cmd = [jupyter, "lab", f"--notebook-dir={home}", f"--ServerApp.default_url=/lab/tree/{rel.as_posix()}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    if not os.environ.get("DISPLAY"):
        cmd.append("--no-browser")
    return cmd


def serve_lab(home: Path, notebook: Path) -> int:
    """Run JupyterLab on the demo home until interrupted."""
    cmd = lab_command(home, notebook)
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise IncidentbookError("JupyterLab is not installed; pip install 'incidentbook[lab]' or rerun with --no-lab")
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0
