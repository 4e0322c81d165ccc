"""policy.toml: which mode applies, grants with expiry, typos reported by key."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from incidentbook.autonomy import decide, grant_toml, load_policy
from incidentbook.errors import ConfigError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
POLICY = """
default = "propose"

[[rules]]
environment = "staging"
mode = "auto"

[[rules]]
environment = "staging"
severity = "critical"
mode = "cooldown"
cooldown_s = 120

[[rules]]
environment = "staging"
severity = "critical"
mode = "auto"

[[rules]]
environment = "production"
severity = "warning"
action = "restart"
mode = "cooldown"
cooldown_s = 600
"""


def policy(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(POLICY + extra)
    return p


def test_the_most_specific_rule_wins_and_ties_go_to_the_cautious_one(tmp_path: Path) -> None:
    pol = load_policy(policy(tmp_path))
    assert decide(pol, "staging", "warning", "scale", NOW).mode == "auto"
    d = decide(pol, "staging", "critical", "scale", NOW)
    assert (d.mode, d.cooldown_s) == ("cooldown", 120)  # cooldown beats auto at equal specificity
    assert decide(pol, "production", "warning", "restart", NOW).cooldown_s == 600
    prod = decide(pol, "production", "critical", "restart", NOW)
    assert prod.mode == "propose" and "no rule matches" in prod.reason


def test_a_grant_applies_until_it_expires(tmp_path: Path) -> None:
    block = grant_toml("production", "rollout_undo", "auto", timedelta(hours=2), "alice",
                       reason="freeze week", now=NOW)
    pol = load_policy(policy(tmp_path, block))
    d = decide(pol, "production", "critical", "rollout_undo", NOW + timedelta(hours=1))
    assert d.mode == "auto" and d.grant and "alice" in d.reason
    assert decide(pol, "production", "critical", "restart", NOW).mode == "propose"  # other action kinds: no
    assert decide(pol, "production", "critical", "rollout_undo", NOW + timedelta(hours=2, seconds=1)).mode == "propose"


def test_missing_file_means_propose_everywhere(tmp_path: Path) -> None:
    assert decide(load_policy(tmp_path / "nope.toml"), "production", "info", "scale", NOW).mode == "propose"


@pytest.mark.parametrize("text, match", [
    ('[[rules]]\nenvironment = "x"\nmdoe = "auto"\n', "unknown setting 'rules.0.mdoe'"),
    ('[[rules]]\nmode = "yolo"\n', "rules.0.mode"),
    ('[[rules]]\naction = "delete"\nmode = "auto"\n', "unknown action kinds \\['delete'\\]"),
    ('[[grants]]\nmode = "auto"\nexpires = "next tuesday"\n', "ISO 8601"),
])
def test_typos_are_reported_with_the_key(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "policy.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_policy(p)
