"""A real Prometheus for tests: backfill data with promtool, serve it on a free loopback port.

    with start_prometheus(tmp_path, metrics_df) as prom:
        requests.get(prom.url + "/api/v1/query", params={"query": "up", "time": t})

Data is backfilled into blocks before Prometheus starts, so it is queryable at once. Generate
test data relative to a fixed, recent time (`FIXED_NOW`): the retention is set to 100 years so
old data is kept, and querying with `time=`/`start=` in the past works. Prometheus's 5-minute
lookback applies to instant selectors as usual. Skips the test (with the reason) when the
binaries are not installed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
# A fixed, recent instant that test data is generated around (unix seconds, on a whole hour).
FIXED_NOW = 1_790_000_000 - (1_790_000_000 % 3600)


def binaries_available() -> str | None:
    """None if prometheus and promtool are usable, else the reason they are not."""
    for name, path in (("prometheus", PROMETHEUS), ("promtool", PROMTOOL)):
        if not (Path(path).exists() or shutil.which(name)):
            return f"{name} is not installed (Debian package `prometheus`; `make system-deps`)"
    return None


def _binary(name: str, default: str) -> str:
    return default if Path(default).exists() else (shutil.which(name) or default)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PromServer:
    """A running Prometheus: `url` to query, `stop()` (or use as a context manager) to end it."""

    url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(repr=False, default=None)

    def get(self, path: str, **params: Any) -> Any:
        """GET an API path and return its `data` object (raises AssertionError on API errors)."""
        r = requests.get(self.url + path, params=params, timeout=30)
        body = r.json()
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus {path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str, time: float) -> dict[str, Any]:
        """The `data` object of /api/v1/query."""
        return self.get("/api/v1/query", query=promql, time=time)

    def query_range(self, promql: str, start: float, end: float, step: float) -> dict[str, Any]:
        """The `data` object of /api/v1/query_range."""
        return self.get("/api/v1/query_range", query=promql, start=start, end=end, step=step)

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL after 10 s)."""
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)

    def __enter__(self) -> PromServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def backfill(tmp_path: Path, data: pd.DataFrame | str, data_dir: Path) -> None:
    """Write OpenMetrics text (or a bundle metrics frame, converted) and backfill it with promtool."""
    from incidentbook.telemetry.openmetrics import to_openmetrics

    text = data if isinstance(data, str) else to_openmetrics(data)
    src = tmp_path / "backfill.om"
    src.write_text(text, encoding="utf-8")
    r = subprocess.run([_binary("promtool", PROMTOOL), "tsdb", "create-blocks-from", "openmetrics",
                        str(src), str(data_dir)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"promtool backfill failed ({r.returncode}): {r.stderr.strip()[-2000:]}")


def start_prometheus(tmp_path: str | Path, data: pd.DataFrame | str | None = None,
                     rule_files: Iterable[str | Path] = (), extra_args: Sequence[str] = (),
                     *, evaluation_interval: str = "15s", ready_timeout: float = 60.0) -> PromServer:
    """Backfill `data` (bundle metrics frame or OpenMetrics text), start Prometheus, wait until ready.

    `rule_files` are copied next to the config and loaded. Skips the test when the binaries are absent.
    """
    reason = binaries_available()
    if reason:
        pytest.skip(reason)
    root = Path(tmp_path) / f"prometheus-{free_port()}"
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    if data is not None:
        backfill(root, data, data_dir)
    rules = []
    for i, rf in enumerate(rule_files):
        dst = root / f"rules-{i}.yml"
        shutil.copyfile(rf, dst)
        rules.append(dst.name)
    config = root / "prometheus.yml"
    config.write_text(
        f"global:\n  evaluation_interval: {evaluation_interval}\n  scrape_interval: 15s\n"
        + ("rule_files:\n" + "".join(f"  - {r}\n" for r in rules) if rules else "")
        + "scrape_configs: []\n", encoding="utf-8")
    port = free_port()
    log_path = root / "prometheus.log"
    log = log_path.open("wb")
    cmd = [_binary("prometheus", PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
           f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y",
           "--log.level=warn", *extra_args]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    log.close()
    server = PromServer(url=f"http://127.0.0.1:{port}", data_dir=data_dir, log_path=log_path, process=proc)
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"Prometheus exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if requests.get(server.url + "/-/ready", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"Prometheus not ready after {ready_timeout}s: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)
