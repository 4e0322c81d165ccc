"""`incidentbook demo`: the whole loop on a simulated system, with no external services.

Generate a scenario (a simulated shop with an injected fault), ingest the alert its rules
would have sent, run the matched runbook against the replayed telemetry bundle, and open the
incident notebook in JupyterLab.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from incidentbook.config import CONFIG_NAME, HOME_ENV, Config, load_config
from incidentbook.errors import IncidentbookError
from incidentbook.intake.ingest import IngestedIncident, ingest_alertmanager
from incidentbook.workspace import init_workspace


@dataclass
class DemoResult:
    """What the demo produced."""

    scenario: str
    home: Path
    bundle: Path
    incidents: list[IngestedIncident]


def demo_config(home: Path) -> Config:
    """The demo workspace's configuration, scaffolding `home` as a workspace the first time.

    A real workspace (not a patched config) so that the incident notebook's kernel, which
    finds its configuration from its own directory, sees the same store.
    """
    toml = home / CONFIG_NAME
    if not toml.exists():
        init_workspace(home)
    # --home wins over an INCIDENTBOOK_HOME from the user's shell, here and in the runbook's kernel.
    os.environ[HOME_ENV] = str(home.resolve())
    return load_config(path=toml)


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
    firing = [p for p in generated.payloads if json.loads(p.read_text())["status"] == "firing"]
    if not firing:
        raise IncidentbookError(f"scenario {name!r} fired no alerts (it is not an incident); "
                                "pick another with `incidentbook scenario list`")
    log(f"      bundle: {generated.bundle_dir} ({len(generated.payloads)} alert notifications)")
    log(f"[2/3] ingesting the first page, {firing[0].name}, and running its runbook ...")
    cfg = demo_config(home)
    results = ingest_alertmanager(cfg, firing[0].read_bytes(), bundle=generated.bundle_dir)
    return DemoResult(scenario=name, home=home, bundle=generated.bundle_dir, incidents=results)


def lab_command(home: Path, notebook: Path) -> list[str]:
    """The `jupyter lab` command that serves `home` and opens `notebook`."""
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
    rel = notebook.resolve().relative_to(home.resolve())
    from incidentbook.presave import LAB_OPTION

    cmd = [jupyter, "lab", f"--notebook-dir={home}", f"--ServerApp.default_url=/lab/tree/{rel.as_posix()}",
           LAB_OPTION]  # notebooks are saved with their secrets taken out
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
