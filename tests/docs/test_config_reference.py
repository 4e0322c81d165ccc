"""The committed configuration reference matches the config models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from incidentbook.actions.policy import ActionsConfig, EnvironmentPolicy
from incidentbook.config import Config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "generate_config_reference.py"


def test_committed_reference_is_up_to_date() -> None:
    r = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_reference_lists_every_key_with_a_meaning() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    sections = [m for m in Config.model_fields.values()
                if isinstance(m.default_factory, type) and hasattr(m.default_factory, "model_fields")]
    for section in sections:
        for key in section.default_factory.model_fields:  # type: ignore[union-attr]
            assert f"| `{key}` |" in text, key
    for key in [*ActionsConfig.model_fields, *EnvironmentPolicy.model_fields]:
        if key != "environments":
            assert f"| `{key}` |" in text, key
    empty = [line for line in text.splitlines() if line.startswith("| `") and line.endswith("|  |")]
    assert not empty, f"keys without a meaning: {empty}"
