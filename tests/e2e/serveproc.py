"""Run `incidentbook serve` as a real child process on a free loopback port (and kill it -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.promserver import free_port

TOKEN = "storm-test-token-0123456789"


@dataclass
class ServeProcess:
    """A running `incidentbook serve`; `url` is its base URL."""

    home: Path
    port: int
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60.0) -> ServeProcess:
        log = (self.home / "serve.log").open("ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.home)
        log.close()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.log()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve not ready after {ready_timeout}s: {self.log()[-3000:]}")

    def log(self) -> str:
        p = self.home / "serve.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def kill9(self) -> None:
        """SIGKILL the server (and its kernels' process group is left to die with their parent)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def make_serve(home: Path, toml: str = "", bundle: Path | None = None, token: str | None = TOKEN,
               port: int | None = None) -> ServeProcess:
    """A ServeProcess for workspace `home` with `toml` as its incidentbook.toml (not started)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "incidentbook.toml").write_text(toml, encoding="utf-8")
    port = port or free_port()
    exe = Path(sys.executable).parent / "incidentbook"
    args = [str(exe), "--config", str(home / "incidentbook.toml"), "serve", "--port", str(port), "--no-lab"]
    if token is None:
        args.append("--no-auth")
    if bundle is not None:
        args += ["--bundle", str(bundle)]
    env = {**os.environ, "INCIDENTBOOK_HOME": str(home)}
    if token:
        env["INCIDENTBOOK_TOKEN"] = token
    return ServeProcess(home, port, args, env)
