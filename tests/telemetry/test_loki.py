"""Loki connector: the real client (`requests`) against a loopback HTTP server speaking Loki's
documented query API (`/loki/api/v1/query_range`, `/ready`). No Loki binary can be installed
here, so this stand-in answers like Loki does: `start` inclusive, `end` exclusive, at most
`limit` entries ordered by `direction`, streams as `{"stream": labels, "values": [[ns, line]]}`,
metric queries as a Prometheus-style `matrix`, and errors as plain text with HTTP 400."""

from __future__ import annotations

import re
import socket

import pandas as pd
import pytest

from incidentbook.config import SourceConfig
from incidentbook.errors import BadInput, SourceError
from incidentbook.telemetry.base import LogsSource
from incidentbook.telemetry.loki import LokiSource, is_metric_query
from tests.telemetry.loopback import LoopbackServer, Reply

T0 = 1_790_000_000 * 10**9
STREAMS = {"api": {"app": "api", "env": "prod"}, "db": {"app": "db", "env": "prod"}}
# 25 entries; two pairs share a timestamp so page boundaries fall inside a tie.
ENTRIES = sorted(
    [(T0 + i * 10**9, "api", f"api line {i}") for i in range(15)]
    + [(T0 + i * 10**9, "db", f"db line {i}") for i in range(0, 20, 2)],
    key=lambda e: e[0])


def fake_loki(req):
    if req.path == "/ready":
        return Reply(200, "ready")
    if req.path != "/loki/api/v1/query_range":
        return Reply(404, "404 page not found")
    q = req.params["query"]
    if q.startswith("count_over_time("):
        assert "step" in req.params
        return Reply(200, {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"app": "api"}, "values": [[1_790_000_060, "6"], [1_790_000_120, "9"]]}],
            "stats": {}}})
    m = re.fullmatch(r'\{app=~?"([^"]*)"\}', q)
    if not m:
        return Reply(400, f'parse error at line 1, col 1: syntax error: unexpected IDENTIFIER in {q}')
    apps = re.compile(m.group(1))
    start, end = int(req.params["start"]), int(req.params["end"])
    limit, direction = int(req.params.get("limit", 100)), req.params.get("direction", "backward")
    hits = [e for e in ENTRIES if start <= e[0] < end and apps.fullmatch(e[1])]
    hits.sort(key=lambda e: e[0], reverse=direction == "backward")
    hits = hits[:limit]
    streams: dict[str, list] = {}
    for ts, app, line in hits:
        streams.setdefault(app, []).append([str(ts), line])
    return Reply(200, {"status": "success", "data": {"resultType": "streams", "result": [
        {"stream": STREAMS[a], "values": v} for a, v in streams.items()], "stats": {}}})


@pytest.fixture()
def loki():
    with LoopbackServer(fake_loki) as srv:
        yield srv


def test_logs_frame_newest_first(loki):
    src = LokiSource(loki.url)
    assert isinstance(src, LogsSource)
    df = src.query_logs('{app="api"}', pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 100 * 10**9, tz="UTC"), limit=5)
    assert list(df.columns) == ["timestamp", "app", "env", "line"]
    assert df["line"].tolist() == [f"api line {i}" for i in (14, 13, 12, 11, 10)]
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert df["timestamp"].iloc[0] == pd.Timestamp(T0 + 14 * 10**9, tz="UTC")


@pytest.mark.parametrize("direction", ["backward", "forward"])
def test_paging_returns_every_entry_once(loki, direction):
    src = LokiSource(loki.url, page_size=3)
    df = src.query_logs('{app=~"api|db"}', T0 / 1e9, (T0 + 100 * 10**9) / 1e9, limit=1000, direction=direction)
    expected = [e[2] for e in sorted(ENTRIES, key=lambda e: e[0], reverse=direction == "backward")]
    assert sorted(df["line"]) == sorted(expected)
    assert len(df) == len(ENTRIES)
    ts = df["timestamp"].tolist()
    assert ts == sorted(ts, reverse=direction == "backward")
    assert len(loki.requests) > 3  # it really paged
    # And a limit that ends mid-way through the pages is honoured exactly.
    df = src.query_logs('{app=~"api|db"}', T0 / 1e9, (T0 + 100 * 10**9) / 1e9, limit=7, direction=direction)
    assert len(df) == 7


def test_metric_query_returns_metrics_frame(loki):
    assert is_metric_query('sum by (app) (count_over_time({app="api"}[1m]))')
    assert not is_metric_query('{app="api"} |= "rate("')
    df = LokiSource(loki.url).query_logs('count_over_time({app="api"}[1m])', T0 / 1e9, T0 / 1e9 + 120)
    assert list(df.columns) == ["timestamp", "app", "value"]
    assert df["value"].tolist() == [6.0, 9.0]


def test_bad_logql_shows_lokis_error(loki):
    with pytest.raises(BadInput, match="parse error at line 1, col 1: syntax error"):
        LokiSource(loki.url).query_logs("app=api", T0 / 1e9, T0 / 1e9 + 60)


def test_unreachable_loki_names_url_and_hint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = LokiSource(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(SourceError, match=rf"127.0.0.1:{port}.*is Loki running\?"):
        src.query_logs('{app="api"}', 0, 60)
    assert not src.status().ok


def test_auth_and_tenant_headers(monkeypatch):
    def handler(req):
        if req.headers.get("authorization") != "Bearer ok":
            return Reply(401, "no org id")
        assert req.headers.get("x-scope-orgid") == "team-a"
        return fake_loki(req)

    with LoopbackServer(handler) as srv:
        cfg = SourceConfig(url=srv.url, headers_env={"Authorization": "LOKI_AUTH_TEST"}, tenant="team-a")
        monkeypatch.setenv("LOKI_AUTH_TEST", "Bearer ok")
        src = LokiSource.from_config(cfg)
        assert src.status().ok
        assert len(src.query_logs('{app="db"}', T0 / 1e9, T0 / 1e9 + 100)) == 10
        monkeypatch.setenv("LOKI_AUTH_TEST", "Bearer expired")
        with pytest.raises(SourceError, match=r"401.*\$LOKI_AUTH_TEST"):
            LokiSource.from_config(cfg).query_logs('{app="db"}', T0 / 1e9, T0 / 1e9 + 100)
