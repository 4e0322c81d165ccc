"""`bundle import --format long`: long-form metrics (timestamp, service, metric, statistic, value)
plus a topology file become a bundle that replays through ReplaySource; the window keeps the
baseline before the onset; bad input gets one line naming the row, the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from incidentbook.cli import main
from incidentbook.errors import BadInput
from incidentbook.evals.truth import onset_of
from incidentbook.telemetry.bundle import open_bundle, to_utc
from incidentbook.telemetry.importers import (
    derive_window,
    import_long_form,
    read_long_form,
    read_topology,
)
from incidentbook.telemetry.replay import ReplaySource

T0 = 1767225600  # 2026-01-01T00:00:00Z


def _frame(n: int = 120, services=("front", "cart", "db"), step: int = 60) -> pd.DataFrame:
    rows = []
    for i in range(n):
        for k, svc in enumerate(services):
            rows.append((T0 + step * i, svc, "latency", "p99", 0.1 * (k + 1) + 0.001 * i))
            rows.append((T0 + step * i, svc, "requests", "Sum", float(100 + i)))
    return pd.DataFrame(rows, columns=["timestamp", "service", "metric", "statistic", "value"])


def _write(tmp: Path, df: pd.DataFrame, name: str = "m.csv") -> Path:
    p = tmp / name
    if name.endswith(".parquet"):
        df.to_parquet(p, index=False)
    else:
        df.to_csv(p, index=False)
    return p


def _topo(tmp: Path, text: str, name: str = "topo.json") -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("fmt", ["m.csv", "m.parquet"])
def test_round_trip_values_replay_as_series(tmp_path: Path, fmt: str) -> None:
    df = _frame()
    src_file = _write(tmp_path, df, fmt)
    onset = T0 + 60 * 80
    out = import_long_form(src_file, tmp_path / "case", _topo(tmp_path, '{"front": ["cart"], "cart": ["db"]}'), onset=onset)
    b = open_bundle(out)
    assert b.services == ["cart", "db", "front"]
    assert b.topology == {"front": ["cart"], "cart": ["db"], "db": []}
    assert b.manifest["ground_truth"] is None
    src = ReplaySource(out)
    got = src.query_range('latency{service="cart",statistic="p99"}', T0 + 600, T0 + 3000, step=60)
    want = df[(df.service == "cart") & (df.metric == "latency")].set_index("timestamp")["value"]
    for ts, v in zip(got.timestamp, got.value):
        assert v == pytest.approx(want[int(ts.timestamp())])
    sums = src.query_range('requests{statistic="Sum"}', T0 + 600, T0 + 600, step=60)
    assert len(sums) == 3


def test_topology_in_every_documented_shape(tmp_path: Path) -> None:
    want = {"a": ["b", "c"], "b": [], "c": []}
    assert read_topology(_topo(tmp_path, '{"a": ["b", "c"]}')) == want
    assert read_topology(_topo(tmp_path, '[["a", "b"], ["a", "c"]]')) == want
    assert read_topology(_topo(tmp_path, "edges:\n  - {source: a, target: b}\n  - {source: a, target: c}\n", "t.yaml")) == want


def test_window_is_cut_so_the_baseline_ends_before_an_early_onset(tmp_path: Path) -> None:
    onset = T0 + 60 * 20  # 20 minutes into 2 hours: half the window would be mostly incident
    out = import_long_form(_write(tmp_path, _frame()), tmp_path / "early", None, onset=onset)
    start, end = open_bundle(out).window
    mid = start + (end - start) / 2
    assert mid <= to_utc(onset)
    assert "cut" in open_bundle(out).manifest["window_from"]


def test_onset_comes_from_the_truth_record_of_the_case(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    truth.write_text(json.dumps({"case": "other", "root_cause_service": "x"}) + "\n"
                     + json.dumps({"case": "mine", "root_cause_service": "db", "fault_kind": "latency",
                                   "onset": T0 + 60 * 30}) + "\n", encoding="utf-8")
    out = import_long_form(_write(tmp_path, _frame()), tmp_path / "mine", None, onset=onset_of(truth, "mine"))
    start, end = open_bundle(out).window
    assert start + (end - start) / 2 <= to_utc(T0 + 60 * 30)


def test_without_alerts_onset_or_truth_the_import_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path, _frame())
    code = main(["bundle", "import", str(src), "--format", "long", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert "baseline" in err[-1] and "--onset" in err[-1]
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_alerts_are_kept_and_place_the_window(tmp_path: Path) -> None:
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    payload = {"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "HighLatency", "service": "db"},
                                                             "annotations": {}, "startsAt": "2026-01-01T01:20:00Z"}]}
    (alerts / "0001.json").write_text(json.dumps(payload), encoding="utf-8")
    out = import_long_form(_write(tmp_path, _frame()), tmp_path / "withalerts", None, alerts_dir=alerts)
    assert (out / "alerts" / "0001.json").is_file()
    assert open_bundle(out).manifest["window_from"] == "alerts/"


def test_cli_import_json_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path, _frame())
    code = main(["bundle", "import", str(src), "--format", "long", "--topology", str(_topo(tmp_path, '{"front": ["cart"]}')),
                 "--onset", "2026-01-01T01:20:00Z", "--out", str(tmp_path / "c"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["services"] == ["cart", "db", "front"] and doc["topology"]["front"] == ["cart"]


@pytest.mark.parametrize("mutate, expect", [
    (lambda df: df.drop(columns=["metric"]), "lacks the column 'metric'"),
    (lambda df: df.rename(columns={"value": "val"}), "lacks the column 'value'"),
    (lambda df: df.assign(timestamp=df.timestamp.astype(object).where(df.index != 5, None)), "row 7: timestamp is empty"),
    (lambda df: df.assign(timestamp=df.timestamp.astype(str).where(df.index != 3, "yesterday-ish")), "row 5: cannot read timestamp"),
    (lambda df: pd.concat([df.iloc[:10], df.iloc[[0]], df.iloc[10:]], ignore_index=True), "time goes backwards"),
    (lambda df: pd.concat([df.iloc[:1], df.iloc[[0]], df.iloc[1:]], ignore_index=True), "time repeats"),
    (lambda df: df.assign(value=df.value.astype(object).where(df.index != 2, "12,5")), "row 4: value '12,5' is not a number"),
    (lambda df: df.assign(service=df.service.where(df.index != 4, "ca\x00rt")), "control character"),
    (lambda df: df.assign(service=df.service.where(df.index != 4, "cart\x1b[31m")), "control character"),
    (lambda df: df.assign(**{"bad col!": "x"}), "not a valid label name"),
    (lambda df: df.iloc[0:0], "no rows"),
])
def test_hostile_long_form_gets_one_line_naming_the_field(tmp_path: Path, mutate, expect: str) -> None:
    src = _write(tmp_path, mutate(_frame(20)))
    with pytest.raises(BadInput, match=None) as e:
        read_long_form(src)
    msg = str(e.value)
    assert expect in msg and "\n" not in msg


def test_odd_unicode_service_names_survive_the_round_trip(tmp_path: Path) -> None:
    names = ("café-サービス", "zahlungs‐dienst", "🚀-launcher")
    df = _frame(40, services=names)
    out = import_long_form(_write(tmp_path, df), tmp_path / "uni", None, onset=T0 + 60 * 25)
    assert set(open_bundle(out).services) == set(names)
    got = ReplaySource(out).query_range('requests{service="café-サービス"}', T0 + 300, T0 + 600, step=60)
    assert len(got) == 6


def test_lone_surrogate_in_a_topology_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    p.write_text('{"a": ["\\ud800"]}', encoding="utf-8")  # valid JSON escape for a lone surrogate
    with pytest.raises(BadInput, match="lone surrogate"):
        read_topology(p)


def test_bad_topology_shapes(tmp_path: Path) -> None:
    for text, expect in (('{"a": "b"}', "must map to a list"), ("[1, 2]", "pair"), ('"x"', "expected a mapping"),
                         ("{not json", "not valid JSON")):
        with pytest.raises(BadInput, match=expect):
            read_topology(_topo(tmp_path, text))


def test_derive_window_refuses_onsets_with_no_baseline() -> None:
    s, e = to_utc(T0), to_utc(T0 + 7200)
    with pytest.raises(BadInput, match="minutes of baseline"):
        derive_window(s, e, to_utc(T0 + 60), None)
    with pytest.raises(BadInput, match="outside the data"):
        derive_window(s, e, to_utc(T0 + 9000), None)
    assert derive_window(s, e, to_utc(T0 + 5000), None) == (s, e, "onset")
    assert np.isclose((derive_window(s, e, to_utc(T0 + 1200), None)[1] - s).total_seconds(), 2400)
