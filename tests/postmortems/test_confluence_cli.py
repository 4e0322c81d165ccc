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
