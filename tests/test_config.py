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


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[sources.loki]\nurl = "http://loki:3100"\npassword = "hunter2-in-file"\n', "password_env"),
        ('[sources.prometheus]\nurl = "http://prom:9090"\ntoken = "hunter2-in-file"\n', "token_env"),
        ('[sources.mine]\nkind = "plugin"\napi_key = "hunter2-in-file"\n', "api_key_env"),
        ('[server]\nlab_url = "https://hub.example/?token=hunter2-in-file"\n', "lab_url_env"),
        ('[sources.prometheus]\nurl = "https://admin:hunter2-in-file@prom:9090"\n', "headers_env"),
        ('[agent]\nbase_url = "https://gw.example/AKIAIOSFODNN7EXAMPLE"\n', "base_url_env"),
        ('[confluence]\nauth = "hunter2-in-file"\n', "auth_env"),
    ],
    ids=["password", "token", "plugin-api-key", "token-in-url", "url-password", "key-shape", "auth-value"],
)
def test_a_secret_written_in_the_file_is_refused(tmp_path: Path, text: str, key: str) -> None:
    """A literal secret is refused at load, naming where it is and where it should go."""
    (tmp_path / "incidentbook.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(start=tmp_path)
    msg = str(e.value)
    assert "environment variable" in msg and key in msg and "\n" not in msg
    assert "hunter2" not in msg and "AKIAIOSFODNN7EXAMPLE" not in msg  # the error does not repeat it


def test_an_auth_method_is_not_a_secret(tmp_path: Path) -> None:
    """`auth = "bearer"` names how to authenticate; only the token itself must stay out."""
    (tmp_path / "incidentbook.toml").write_text('[confluence]\nauth = "bearer"\n')
    assert load_config(start=tmp_path).confluence.auth == "bearer"


def test_env_references_are_accepted_and_their_values_become_known(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from incidentbook.redact import Redactor

    monkeypatch.setenv("PROM_HEADER_VALUE", "opaque-value-0042")
    (tmp_path / "incidentbook.toml").write_text(
        '[sources.prometheus]\nurl = "http://prom:9090"\nheaders_env = { Authorization = "PROM_HEADER_VALUE" }\n')
    load_config(start=tmp_path)
    # the variable's name says nothing secret, but the config names it: its value is redacted
    assert Redactor().redact("sent opaque-value-0042 upstream") == "sent [SECRET-1] upstream"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[sources.loki]\nurl = "http://loki:3100"\ntenent = "a"\n', "'sources.loki.tenent'; did you mean 'tenant'?"),
        ('[sources.prom]\nkind = "prometheus"\nretires = 3\n', "did you mean 'retries'?"),
        ('[sources.kubernetes]\nnamespaces = "shop"\n', "did you mean 'namespace'?"),
        ('[sources.loki]\npage_size = "big"\n', "sources.loki.page_size"),
        ('[runner]\ncell_timout_s = 3\n', "did you mean 'cell_timeout_s'?"),
    ],
    ids=["loki-typo", "kind-picks-model", "kubernetes-typo", "wrong-type", "section-typo"],
)
def test_source_tables_are_checked_per_connector(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "incidentbook.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(start=tmp_path)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_registered_connector_keeps_its_own_keys(tmp_path: Path) -> None:
    (tmp_path / "incidentbook.toml").write_text('[sources.mine]\nkind = "plugin"\nshards = 4\nurl = "http://x"\n')
    assert load_config(start=tmp_path).sources["mine"].model_extra == {"kind": "plugin", "shards": 4}
