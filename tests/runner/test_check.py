"""`runbooks check`: each problem is reported with a message that says what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidentbook.runner import check_runbook, load_runbooks, read_runbook

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runbooks"


def problems_of(name: str) -> list[tuple[str, str]]:
    return [(p.code, p.message) for p in check_runbook(read_runbook(FIXTURES / f"{name}.ipynb"))]


def test_shipped_runbooks_have_no_problems() -> None:
    books = load_runbooks(workspace_dir=Path("/nonexistent"))
    assert "generic" in [b.name for b in books]
    for book in books:
        assert check_runbook(book) == [], book.name


def test_missing_parameters_cell() -> None:
    [(code, message)] = problems_of("no_parameters")
    assert code == "no-parameters-cell"
    assert "no code cell tagged 'parameters'" in message


def test_bad_regex_names_the_label_and_pattern() -> None:
    [(code, message)] = problems_of("bad_regex")
    assert code == "bad-regex"
    assert "match_re['alertname'] = 'High(Error'" in message
    assert "not a valid regex" in message


def test_unknown_metadata_key_is_named() -> None:
    [(code, message)] = problems_of("unknown_key")
    assert code == "bad-metadata"
    assert "unknown key 'matches'" in message
    assert "match_re" in message  # lists the keys that are allowed


def test_wrong_metadata_type_is_reported(tmp_path: Path) -> None:
    src = (FIXTURES / "raises.ipynb").read_text()
    bad = tmp_path / "prio.ipynb"
    bad.write_text(src.replace('"title": "Raises"', '"title": "Raises", "priority": "high"'))
    [(code, message)] = [(p.code, p.message) for p in check_runbook(read_runbook(bad))]
    assert code == "bad-metadata"
    assert "priority" in message


def test_missing_kernel_names_the_kernel() -> None:
    [(code, message)] = problems_of("missing_kernel")
    assert code == "missing-kernel"
    assert "'no-such-kernel-xyz'" in message and "not installed" in message


def test_unreadable_json_is_one_problem_with_the_fix() -> None:
    [(code, message)] = problems_of("not_json")
    assert code == "unreadable"
    assert "not valid notebook JSON" in message and "re-save" in message


def test_schema_invalid_notebook(tmp_path: Path) -> None:
    src = (FIXTURES / "raises.ipynb").read_text()
    bad = tmp_path / "weird.ipynb"
    bad.write_text(src.replace('"cell_type": "markdown"', '"cell_type": "picture"', 1))
    codes = [p.code for p in check_runbook(read_runbook(bad))]
    assert codes == ["invalid-notebook"]


@pytest.mark.parametrize("name", ["syntax_error", "raises", "timeout", "kills_kernel"])
def test_runtime_failures_are_not_static_problems(name: str) -> None:
    # These are valid runbooks that fail when run; `check` must not cry wolf about them.
    assert problems_of(name) == []
