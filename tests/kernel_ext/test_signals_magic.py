"""%signals in a real IPython shell, on the incident's replayed bundle."""

from __future__ import annotations

from typing import Any


def test_signals_magic_shows_the_dialect_of_each_signal(bound: Any) -> None:
    df = bound.run_line_magic("signals", "-s checkout")
    assert list(df["service"]) == ["checkout"]
    row = df.iloc[0]
    assert row["errors"].startswith("prometheus: http_requests_total")
    assert row["disk"] == "missing"


def test_signals_magic_rejects_an_unknown_option(bound: Any, capsys: Any) -> None:
    bound.run_cell("%signals --nope")
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err or "--nope" in err
