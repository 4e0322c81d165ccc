"""Binder: a fresh environment built from `binder/` alone runs the start notebook.

repo2docker runs `pip install -r binder/requirements.txt` from the repository root, then
`binder/postBuild`; this test does the same in a new virtualenv (no system site-packages, so
a dependency missing from the requirements fails here), then runs start.ipynb with nbmake.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"


def test_binder_files_are_what_repo2docker_expects() -> None:
    reqs = [line.strip() for line in (BINDER / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert reqs == ["."], "installs this checkout; Binder's image brings JupyterLab"
    for script in ("postBuild", "start"):
        assert os.access(BINDER / script, os.X_OK), f"binder/{script} must be executable"
    assert (BINDER / "start.ipynb").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fresh_binder_environment_runs_the_start_notebook(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the checkout as Binder sees it")
    # Binder clones the repository: copy only what git tracks (plus binder/ being worked on).
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in files:
        src = ROOT / rel
        if src.is_file() and not rel.startswith((".venv/", "tests/")):
            dst = repo / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    bin_dir = env_dir / "bin"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path / "home"),
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))}
    env.pop("INCIDENTBOOK_HOME", None)
    env.pop("VIRTUAL_ENV", None)
    (tmp_path / "home").mkdir()

    def sh(*cmd: str) -> None:
        r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=800)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"

    sh(str(bin_dir / "python"), "-m", "pip", "install", "-q", "-r", "binder/requirements.txt")
    sh(str(bin_dir / "python"), "-m", "pip", "install", "-q", "nbmake", "pytest")  # the test runner only
    sh(str(repo / "binder" / "postBuild"))
    assert list((tmp_path / "home" / "incidentbook-demo" / "incidents").glob("INC-*/notebook.ipynb"))
    sh(str(repo / "binder" / "start"), str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
       "--nbmake", "binder/start.ipynb")
