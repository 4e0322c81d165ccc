"""The alertmanager.yml in docs/connecting.md is accepted by Alertmanager's own checker."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "connecting.md"


def snippet() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    (block,) = [b for b in blocks if "webhook_configs" in b]
    return block


def test_snippet_posts_to_the_intake_with_a_bearer_token() -> None:
    doc = yaml.safe_load(snippet())
    (hook,) = doc["receivers"][0]["webhook_configs"]
    assert hook["url"].endswith("/api/v1/alertmanager")
    assert hook["http_config"]["authorization"]["type"] == "Bearer"


def test_amtool_accepts_the_snippet(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager)")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(snippet().replace("/etc/alertmanager/secrets/incidentbook-token", str(token)))
    r = subprocess.run([amtool, "check-config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr
