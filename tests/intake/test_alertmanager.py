"""Alertmanager webhook v4 parsing: good payloads parse, every bad one names its field and fix."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from incidentbook.errors import BadInput, InvalidPayload
from incidentbook.intake import MAX_PAYLOAD_BYTES, parse_alertmanager

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_firing_payload_parses_every_field() -> None:
    p = parse_alertmanager(load("checkout_firing.json"))
    assert p.version == "4"
    assert p.status == "firing"
    assert p.group_key == '{}/{severity="critical"}:{alertname="HighErrorRate", service="checkout"}'
    assert p.receiver == "incidentbook"
    assert p.truncated_alerts == 0
    assert p.group_labels == {"alertname": "HighErrorRate", "service": "checkout"}
    assert p.common_labels["namespace"] == "shop"
    assert p.common_annotations["runbook_url"].startswith("https://")
    assert p.external_url == "http://alertmanager.example.com:9093"
    (a,) = p.alerts
    assert a.alertname == "HighErrorRate"
    assert a.labels["pod"] == "checkout-7d9f8b6c5-x2kqp"
    assert a.annotations["summary"].startswith("checkout 5xx")
    assert a.starts_at == datetime(2026, 3, 14, 9, 12, 30, tzinfo=timezone.utc)
    assert a.ends_at is None  # Go's zero time means "still firing"
    assert a.generator_url.startswith("http://prometheus.example.com:9090/graph")
    assert a.fingerprint == a.key == "5f3c8e1a9b2d4c70"


def test_raw_text_is_kept_verbatim() -> None:
    raw = load("checkout_firing.json")
    assert parse_alertmanager(raw).raw == raw.decode()
    assert parse_alertmanager(raw.decode()).raw == raw.decode()


def test_resolved_payload_has_end_times() -> None:
    p = parse_alertmanager(load("checkout_resolved.json"))
    assert p.status == "resolved"
    assert [a.status for a in p.alerts] == ["resolved", "resolved"]
    assert all(a.ends_at is not None and a.ends_at > a.starts_at for a in p.alerts)  # type: ignore[operator]


def test_alert_without_fingerprint_gets_a_stable_label_hash() -> None:
    doc = json.loads(load("checkout_firing.json"))
    del doc["alerts"][0]["fingerprint"]
    k1 = parse_alertmanager(json.dumps(doc)).alerts[0].key
    doc["alerts"][0]["labels"] = dict(reversed(list(doc["alerts"][0]["labels"].items())))
    assert parse_alertmanager(json.dumps(doc)).alerts[0].key == k1
    doc["alerts"][0]["labels"]["pod"] = "other"
    assert parse_alertmanager(json.dumps(doc)).alerts[0].key != k1


def test_unknown_keys_are_ignored() -> None:
    doc = json.loads(load("checkout_firing.json"))
    doc["orgId"] = 1
    doc["alerts"][0]["silenceURL"] = "http://x"
    assert parse_alertmanager(json.dumps(doc)).alerts[0].alertname == "HighErrorRate"


@pytest.mark.parametrize(
    ("fixture", "must_mention"),
    [
        ("bad_invalid_json.json", ["not valid JSON", "line 5 column"]),
        ("bad_missing_alerts.json", ["`alerts`", "missing"]),
        ("bad_version_3.json", ["`version`", "'3'", '"4"']),
        ("bad_empty_alerts.json", ["`alerts`", "empty"]),
        ("bad_no_alertname.json", ["alerts[0].labels", "alertname"]),
    ],
)
def test_bad_fixtures_name_the_field(fixture: str, must_mention: list[str]) -> None:
    with pytest.raises(InvalidPayload) as info:
        parse_alertmanager(load(fixture))
    msg = str(info.value)
    assert "\n" not in msg
    for text in must_mention:
        assert text in msg
    assert info.value.exit_code == 2
    assert isinstance(info.value, BadInput)


def test_payload_over_the_limit_is_refused_before_parsing() -> None:
    # Not even JSON: the size check must come first, so this never reaches the parser.
    raw = b"x" * (MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(InvalidPayload, match=r"over the 5 MB limit.*max_alerts"):
        parse_alertmanager(raw)
    with pytest.raises(InvalidPayload, match="over the 5 MB limit"):
        parse_alertmanager("é" * (MAX_PAYLOAD_BYTES // 2 + 1))  # 2 bytes each in UTF-8


def test_payload_just_under_the_limit_parses() -> None:
    doc = json.loads(load("checkout_firing.json"))
    doc["commonAnnotations"]["description"] = ""
    pad = MAX_PAYLOAD_BYTES - len(json.dumps(doc).encode()) - 10
    doc["commonAnnotations"]["description"] = "a" * pad
    raw = json.dumps(doc).encode()
    assert len(raw) <= MAX_PAYLOAD_BYTES
    payload = parse_alertmanager(raw)
    assert payload.alerts[0].alertname == "HighErrorRate"
    # An over-long annotation is kept, cut to the store's limit and saying so.
    assert payload.common_annotations["description"].endswith("more characters cut by incidentbook]")
    assert len(payload.common_annotations["description"]) < 70_000


@pytest.mark.parametrize(
    ("mutate", "must_mention"),
    [
        (lambda d: d.pop("version"), "`version` is missing"),
        (lambda d: d.update(version="5"), "unsupported `version` '5'"),
        (lambda d: d.pop("groupKey"), "`groupKey` is missing"),
        (lambda d: d.update(alerts={"a": 1}), "`alerts` must be a list"),
        (lambda d: d["alerts"][0].update(status="fire"), "`alerts[0].status` is 'fire'"),
        (lambda d: d["alerts"][0].pop("labels"), "`alerts[0].labels` is missing"),
        (lambda d: d["alerts"][0]["labels"].update(code=500), "`alerts[0].labels.code`"),
        (lambda d: d["alerts"][0].update(startsAt="yesterday"), "`alerts[0].startsAt`"),
    ],
)
def test_schema_errors_name_the_field(mutate, must_mention: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(load("checkout_firing.json"))
    mutate(doc)
    with pytest.raises(InvalidPayload) as info:
        parse_alertmanager(json.dumps(doc))
    assert must_mention in str(info.value)


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(InvalidPayload, match="JSON list, not an object"):
        parse_alertmanager("[]")


def test_non_utf8_bytes_are_reported() -> None:
    with pytest.raises(InvalidPayload, match="not UTF-8"):
        parse_alertmanager(b'{"version": "4", "x": "\xff"}')
