"""`postmortem publish` argument errors: one line, exit 2, before anything is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidentbook.cli import main


@pytest.mark.parametrize("argv, message", [
    (["postmortem", "publish", "INC-1"], "usage: incidentbook postmortem publish ID --to confluence"),
    (["postmortem", "publish", "INC-1", "--to", "confluence"], "needs [confluence] url and space"),
    (["postmortem", "INC-1", "stray"], "unexpected argument 'stray'"),
])
def test_publish_usage_errors(argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from incidentbook.workspace import init_workspace

    init_workspace(tmp_path)
    (tmp_path / "library" / "2026" / "INC-1-x").mkdir(parents=True)
    (tmp_path / "library" / "2026" / "INC-1-x" / "meta.json").write_text('{"id": "INC-1", "title": "x"}')
    monkeypatch.setenv("INCIDENTBOOK_HOME", str(tmp_path))
    assert main(["--config", str(tmp_path / "incidentbook.toml"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_mcp_refuses_a_tiny_result_cap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from incidentbook.workspace import init_workspace

    init_workspace(tmp_path)
    assert main(["--config", str(tmp_path / "incidentbook.toml"), "mcp", "--max-result-chars", "10"]) == 2
    assert "--max-result-chars 10" in capsys.readouterr().err


def test_unreachable_confluence_is_a_history_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from incidentbook.config import load_config
    from incidentbook.postmortems.history import history_for
    from incidentbook.workspace import init_workspace
    from tests.support.promserver import free_port

    init_workspace(tmp_path)
    cfg_path = tmp_path / "incidentbook.toml"
    cfg_path.write_text(cfg_path.read_text() + f'\n[confluence]\nurl = "http://127.0.0.1:{free_port()}"\n'
                        'space = "OPS"\ntimeout_s = 5\n')
    monkeypatch.setenv("CONFLUENCE_USER", "u")
    monkeypatch.setenv("CONFLUENCE_TOKEN", "t")
    history = history_for(load_config(path=cfg_path))
    assert history is not None and history.search("catalog timeout") == []
    assert len(history.unavailable) == 1
    assert history.unavailable[0].startswith("history source unavailable: Confluence space OPS (cannot reach Confluence")
    monkeypatch.delenv("CONFLUENCE_TOKEN")
    history = history_for(load_config(path=cfg_path))
    assert history.search("catalog") == [] and "CONFLUENCE_TOKEN" in history.unavailable[0]
