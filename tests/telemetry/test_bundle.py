"""Bundle files: round trip, and the errors a user sees for missing or damaged bundles."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from incidentbook.errors import BundleError
from incidentbook.telemetry.bundle import SCHEMA_VERSION, open_bundle, write_bundle
from incidentbook.telemetry.sources import Telemetry

T0 = pd.Timestamp("2026-11-23T10:00:00Z")


@pytest.fixture()
def bundle(tmp_path):
    metrics = pd.DataFrame({"timestamp": [T0, T0 + pd.Timedelta(seconds=15)], "metric": ["up", "up"],
                            "labels": ['{"job":"api"}'] * 2, "value": [1.0, 0.0]})
    logs = [{"timestamp": T0, "labels": {"job": "api"}, "line": "started"}]
    return write_bundle(tmp_path / "b", {"window": {"start": T0, "end": T0 + pd.Timedelta(minutes=5)},
                                         "services": ["api"]}, metrics, logs=logs)


def test_round_trip(bundle):
    b = open_bundle(bundle)
    assert b.manifest["schema_version"] == SCHEMA_VERSION
    assert b.window == (T0, T0 + pd.Timedelta(minutes=5))
    assert b.metrics["value"].tolist() == [1.0, 0.0]
    assert str(b.metrics["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert b.logs[0]["line"] == "started" and b.events == []


def test_not_a_directory(tmp_path):
    with pytest.raises(BundleError, match="not a bundle directory"):
        open_bundle(tmp_path / "nope")


def test_missing_manifest(bundle):
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"manifest.json is missing; this is not a bundle"):
        open_bundle(bundle)
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Telemetry.from_bundle(bundle)


def test_corrupt_manifest(bundle):
    (bundle / "manifest.json").write_text('{"schema_version": 1, "window": ')
    with pytest.raises(BundleError, match="manifest.json is not valid JSON.*re-export") as e:
        open_bundle(bundle)
    assert e.value.exit_code == 2


def test_manifest_without_version_or_window(bundle):
    (bundle / "manifest.json").write_text(json.dumps({"window": {"start": "x", "end": "y"}}))
    with pytest.raises(BundleError, match="no integer schema_version"):
        open_bundle(bundle)
    (bundle / "manifest.json").write_text(json.dumps({"schema_version": 1}))
    with pytest.raises(BundleError, match="has no window"):
        open_bundle(bundle)
    (bundle / "manifest.json").write_text(json.dumps({"schema_version": 1, "window": {"start": "soon"}}))
    with pytest.raises(BundleError, match="unreadable window"):
        open_bundle(bundle)
    (bundle / "manifest.json").write_text("[]")
    with pytest.raises(BundleError, match="not a JSON object"):
        open_bundle(bundle)


def test_newer_schema_version(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    m["schema_version"] = SCHEMA_VERSION + 1
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=rf"schema version {SCHEMA_VERSION + 1}, newer .* upgrade incidentbook"):
        open_bundle(bundle)


def test_corrupt_and_missing_parquet(bundle):
    (bundle / "metrics.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(BundleError, match="metrics.parquet is not a readable parquet file"):
        _ = open_bundle(bundle).metrics
    (bundle / "metrics.parquet").unlink()
    with pytest.raises(BundleError, match="metrics.parquet is missing; re-export"):
        _ = open_bundle(bundle).metrics


def test_parquet_with_wrong_columns(bundle):
    pd.DataFrame({"timestamp": [T0], "value": [1.0]}).to_parquet(bundle / "metrics.parquet")
    with pytest.raises(BundleError, match=r"lacks columns \['metric', 'labels'\]"):
        _ = open_bundle(bundle).metrics


def test_bad_jsonl_line_names_file_and_line(bundle):
    with (bundle / "logs.jsonl").open("a") as f:
        f.write("\n{broken\n")
    with pytest.raises(BundleError, match=r"logs.jsonl:3: not valid JSON"):
        _ = open_bundle(bundle).logs
    with pytest.raises(BundleError, match=r"logs.jsonl:3"):
        Telemetry.from_bundle(bundle)


def test_write_needs_a_window_and_respects_budget(tmp_path):
    empty = pd.DataFrame(columns=["timestamp", "metric", "labels", "value"])
    with pytest.raises(BundleError, match="needs window.start and window.end"):
        write_bundle(tmp_path / "x", {"services": []}, empty)
    with pytest.raises(BundleError, match="over the budget of 10"):
        write_bundle(tmp_path / "y", {"window": {"start": T0, "end": T0}}, empty, max_bytes=10)
    with pytest.raises(BundleError, match="lacks columns"):
        write_bundle(tmp_path / "z", {"window": {"start": T0, "end": T0}}, pd.DataFrame({"value": [1.0]}))
