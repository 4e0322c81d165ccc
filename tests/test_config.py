"""incidentbook.toml discovery, defaults, environment overrides and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidentbook.config import load_config, secret_from_env
from incidentbook.errors import ConfigError, NotConfigured


def test_defaults_work_with_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INCIDENTBOOK_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    cfg = load_config(start=tmp_path)
    assert cfg.config_path is None
    assert cfg.home == tmp_path / "h" / ".incidentbook"
    assert cfg.db_url == f"sqlite:///{cfg.home / 'incidentbook.db'}"
    assert cfg.agent.investigator == "rules" and cfg.runner.cell_timeout_s == 120


def test_found_in_a_parent_and_home_is_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INCIDENTBOOK_HOME", raising=False)
    (tmp_path / "incidentbook.toml").write_text('[runner]\ncell_timeout_s = 30\n[library]\npath = "pm"\n')
    deep = tmp_path / "incidents" / "INC-1"
    deep.mkdir(parents=True)
    cfg = load_config(start=deep)
    assert cfg.config_path == tmp_path / "incidentbook.toml"
    assert cfg.home == tmp_path.resolve() and cfg.runner.cell_timeout_s == 30
    assert cfg.library_path == tmp_path / "pm"


def test_incidentbook_home_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "incidentbook.toml").write_text("")
    monkeypatch.setenv("INCIDENTBOOK_HOME", str(tmp_path / "state"))
    assert load_config(start=tmp_path).home == (tmp_path / "state").resolve()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[runner]\ncell_timout_s = 3\n", "unknown setting 'runner.cell_timout_s'"),
        ("[runner]\ncell_timeout_s = \"soon\"\n", "runner.cell_timeout_s"),
        ("[runner\n", "not valid TOML"),
        ("[actions.environments.prod]\nactions = [\"delete\"]\n", "delete"),
        ("[actions]\nenviroment = \"prod\"\n", "actions.enviroment"),
    ],
    ids=["typo", "wrong-type", "bad-toml", "unknown-action", "actions-typo"],
)
def test_bad_config_is_one_line_naming_the_setting(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "incidentbook.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(start=tmp_path)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert str(tmp_path / "incidentbook.toml") in str(e.value)


def test_secrets_only_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROM_AUTH", raising=False)
    with pytest.raises(NotConfigured, match="PROM_AUTH"):
        secret_from_env("PROM_AUTH", "the Prometheus source")
    monkeypatch.setenv("PROM_AUTH", "Bearer x")
    assert secret_from_env("PROM_AUTH", "the Prometheus source") == "Bearer x"
    (tmp_path / "incidentbook.toml").write_text('[store]\nurl_env = "IB_DB"\n')
    monkeypatch.delenv("IB_DB", raising=False)
    with pytest.raises(ConfigError, match="IB_DB"):
        _ = load_config(start=tmp_path).db_url
