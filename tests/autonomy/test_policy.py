"""policy.toml: which mode applies, grants with expiry, typos reported by key."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from incidentbook.autonomy import decide, grant_toml, load_policy
from incidentbook.errors import ConfigError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
WHO = {"author": "incidentbook", "target": "shop/checkout"}
POLICY = """
default = "propose"

[[rules]]
environment = "staging"
mode = "auto"
author = "incidentbook"
target = "shop/checkout"

[[rules]]
environment = "staging"
severity = "critical"
mode = "cooldown"
cooldown_s = 120
author = "incidentbook"
target = "shop/checkout"

[[rules]]
environment = "staging"
severity = "critical"
mode = "auto"
author = "incidentbook"
target = "shop/checkout"

[[rules]]
environment = "production"
severity = "warning"
action = "restart"
mode = "cooldown"
cooldown_s = 600
author = "incidentbook"
target = "shop/checkout"
"""


def policy(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(POLICY + extra)
    return p


def test_the_most_specific_rule_wins_and_ties_go_to_the_cautious_one(tmp_path: Path) -> None:
    pol = load_policy(policy(tmp_path))
    assert decide(pol, "staging", "warning", "scale", NOW, **WHO).mode == "auto"
    d = decide(pol, "staging", "critical", "scale", NOW, **WHO)
    assert (d.mode, d.cooldown_s) == ("cooldown", 120)  # cooldown beats auto at equal specificity
    assert decide(pol, "production", "warning", "restart", NOW, **WHO).cooldown_s == 600
    prod = decide(pol, "production", "critical", "restart", NOW, **WHO)
    assert prod.mode == "propose" and "no rule matches" in prod.reason


def test_a_grant_applies_until_it_expires(tmp_path: Path) -> None:
    block = grant_toml("production", "rollout_undo", "auto", timedelta(hours=2), "alice",
                       reason="freeze week", now=NOW, author=["incidentbook"], target=["shop/checkout"])
    pol = load_policy(policy(tmp_path, block))
    d = decide(pol, "production", "critical", "rollout_undo", NOW + timedelta(hours=1), **WHO)
    assert d.mode == "auto" and d.grant and "alice" in d.reason
    assert decide(pol, "production", "critical", "restart", NOW, **WHO).mode == "propose"  # other action kinds: no
    assert decide(pol, "production", "critical", "rollout_undo", NOW + timedelta(hours=2, seconds=1), **WHO).mode == "propose"


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


def test_autonomy_only_for_the_named_author_and_target(tmp_path: Path) -> None:
    pol = load_policy(policy(tmp_path))
    assert decide(pol, "staging", "warning", "scale", NOW, **WHO).mode == "auto"
    # A model's proposal, another Deployment, or nobody named: a person decides.
    assert decide(pol, "staging", "warning", "scale", NOW, author="claude:claude-sonnet-4-5",
                  target="shop/checkout").mode == "propose"
    assert decide(pol, "staging", "warning", "scale", NOW, author="incidentbook", target="shop/payments").mode == "propose"
    assert decide(pol, "staging", "warning", "scale", NOW).mode == "propose"


def test_default_never_grants_autonomy_and_wildcards_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "policy.toml"
    p.write_text('default = "auto"\n')
    d = decide(load_policy(p), "staging", "warning", "scale", NOW, **WHO)
    assert d.mode == "propose" and "never grants autonomy" in d.reason
    p.write_text('[[rules]]\nmode = "auto"\nauthor = "*"\ntarget = "shop/checkout"\n')
    with pytest.raises(ConfigError, match="'\\*' is not allowed"):
        load_policy(p)
