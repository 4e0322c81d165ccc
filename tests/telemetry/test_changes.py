"""Change feeds (`changes.jsonl`) and the planned-events calendar (`context.jsonl`)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from incidentbook.errors import BadInput
from incidentbook.telemetry.base import CHANGE_COLUMNS, CONTEXT_COLUMNS, ChangesSource
from incidentbook.telemetry.changes import ChangesFeed, ContextCalendar


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_changes_feed_filters_window_and_service(tmp_path):
    feed = ChangesFeed(_write(tmp_path / "changes.jsonl", [
        {"timestamp": "2026-11-23T10:05:00Z", "service": "checkout", "kind": "deploy",
         "description": "checkout v2.4.1", "author": "ci", "details": {"commit": "abc"}},
        "",
        {"timestamp": "2026-11-23T09:00:00Z", "service": "search", "kind": "flag",
         "description": "enable new-ranker"},
        {"timestamp": "2026-11-23T10:01:00Z", "service": "checkout", "kind": "config",
         "description": "pool size 20 -> 5"},
    ]))
    assert isinstance(feed, ChangesSource)
    df = feed.changes("2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z")
    assert list(df.columns) == list(CHANGE_COLUMNS)
    assert df["description"].tolist() == ["pool size 20 -> 5", "checkout v2.4.1"]  # oldest first
    assert df.iloc[1]["details"] == {"commit": "abc"} and df.iloc[0]["author"] == ""
    assert feed.changes("2026-11-23T08:00:00Z", "2026-11-23T11:00:00Z", service="search")["kind"].tolist() == ["flag"]
    assert feed.context("2026-11-23T08:00:00Z", "2026-11-23T11:00:00Z").empty
    # Appended lines are seen on the next call (CI writes while the incident is open).
    with (tmp_path / "changes.jsonl").open("a") as f:
        f.write(json.dumps({"timestamp": "2026-11-23T10:30:00Z", "service": "checkout", "kind": "deploy",
                            "description": "rollback to v2.4.0"}) + "\n")
    assert len(feed.changes("2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z")) == 3


@pytest.mark.parametrize("line, message", [
    ("{not json", r"changes.jsonl:2: not valid JSON"),
    ('["a list"]', r"changes.jsonl:2: expected a JSON object"),
    ('{"service": "x", "description": "d"}', r"changes.jsonl:2: missing 'timestamp'"),
    ('{"timestamp": "yesterday-ish", "description": "d"}', r"changes.jsonl:2: timestamp 'yesterday-ish' is not a time"),
    ('{"timestamp": "2026-11-23T10:00:00Z"}', r"changes.jsonl:2: missing 'description'"),
])
def test_bad_change_lines_name_file_and_line(tmp_path, line, message):
    good = json.dumps({"timestamp": "2026-11-23T10:00:00Z", "description": "ok"})
    feed = ChangesFeed(_write(tmp_path / "changes.jsonl", [good, line]))
    with pytest.raises(BadInput, match=message):
        feed.changes("2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z")


def test_missing_feed_is_empty(tmp_path):
    assert ChangesFeed(tmp_path / "nope.jsonl").changes(0, 2e9).empty


def test_context_calendar_overlaps(tmp_path):
    cal = ContextCalendar(_write(tmp_path / "context.jsonl", [
        {"start": "2026-11-23T09:00:00Z", "end": "2026-11-23T12:00:00Z", "kind": "launch",
         "title": "Black Friday campaign", "services": ["checkout", "search"]},
        {"start": "2026-11-24T02:00:00Z", "end": "2026-11-24T03:00:00Z", "kind": "maintenance",
         "title": "DB failover drill", "services": "db"},
    ]))
    df = cal.context("2026-11-23T10:00:00Z", "2026-11-23T10:30:00Z")
    assert list(df.columns) == list(CONTEXT_COLUMNS)
    assert df["title"].tolist() == ["Black Friday campaign"]
    assert df.iloc[0]["services"] == ["checkout", "search"]
    assert df.iloc[0]["start"] == pd.Timestamp("2026-11-23T09:00:00Z")
    both = cal.context("2026-11-23T11:00:00Z", "2026-11-24T02:30:00Z")
    assert both["services"].tolist() == [["checkout", "search"], ["db"]]
    assert cal.changes(0, 2e9).empty


def test_bad_context_lines(tmp_path):
    cal = ContextCalendar(_write(tmp_path / "context.jsonl", [
        {"start": "2026-11-23T12:00:00Z", "end": "2026-11-23T09:00:00Z", "title": "backwards"}]))
    with pytest.raises(BadInput, match=r"context.jsonl:1: end .* is before start"):
        cal.context(0, 2e9)
    cal = ContextCalendar(_write(tmp_path / "context2.jsonl", [{"start": "2026-11-23T12:00:00Z"}]))
    with pytest.raises(BadInput, match=r"context2.jsonl:1: missing 'title'"):
        cal.context(0, 2e9)
