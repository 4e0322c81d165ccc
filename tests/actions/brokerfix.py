"""A real action broker for tests: the Broker on a real Unix socket (SO_PEERCRED identities), a
real SQLite store for its checkpoint and timeline, and the real `kubernetes` client against the
loopback kube-apiserver stand-in of tests/actions/kubeapi.py (no kube-apiserver binary here).

Second persons are real OS users: the approving client runs as `nobody` (the tests run as root),
so the broker's peer credentials differ. The socket lives in a directory `nobody` may enter.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incidentbook.actions.audit import StoreAnchor, load_audit_key
from incidentbook.actions.broker import Broker, BrokerClient, BrokerServer
from incidentbook.actions.policy import ActionsConfig
from incidentbook.incidents import Store
from tests.actions.kubeapi import KubeAPI

#: A client with nothing but the standard library: what any process on the host could send.
RAW_CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    c = s.recv(65536)
    if not c:
        break
    buf += c
sys.stdout.write(buf.decode())
"""


def policy(kube: KubeAPI, home: Path, **overrides: Any) -> ActionsConfig:
    """Staging owns `shop` (one approver), production owns `payments` (a second person)."""
    staging = {"namespaces": ["shop"], "actions": ["rollout_undo", "scale", "restart"],
               "max_replicas_change": 3, "max_pods_restarted": 10, **overrides}
    production = {"namespaces": ["payments"], "actions": ["scale", "restart"], "max_replicas_change": 2,
                  "second_approver": True}
    return ActionsConfig(environment="staging", kubeconfig=str(kube.kubeconfig(home / "kubeconfig")),
                         environments={"staging": staging, "production": production})


@dataclass
class LiveBroker:
    """A running broker and what a test needs to talk to it."""

    broker: Broker
    server: BrokerServer
    socket: Path
    home: Path
    store: Store
    kube: KubeAPI

    @property
    def client(self) -> BrokerClient:
        return BrokerClient(self.socket)

    def raw(self, msg: dict[str, Any], *, user: str | None = None, argv0_extra: str = "") -> dict[str, Any]:
        """Send `msg` from a separate process (as OS `user` when given); the broker's answer."""
        cmd = [sys.executable if user is None else "/usr/bin/python3",
               "-c", RAW_CLIENT, str(self.socket), json.dumps(msg)]
        if argv0_extra:
            cmd.append(argv0_extra)  # shows up in /proc/PID/cmdline, as a kernel's would
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, user=user,
                             env={"PATH": "/usr/bin:/bin", "USER": "alice", "INCIDENTBOOK_ENVIRONMENT": "staging"})
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def audit_events(self) -> list[tuple[str, str]]:
        from incidentbook.actions.audit import AuditLog

        return [(e["event"], e.get("who") or e.get("user", "")) for e in AuditLog(self.home / "audit.jsonl").entries()]


def nobody_can_run() -> bool:
    """Whether this process may start processes as `nobody` (root, with the user present)."""
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return False
    return os.geteuid() == 0 and os.access("/usr/bin/python3", os.X_OK)


@contextmanager
def live_broker(kube: KubeAPI, *, relay_token: str = "relay-secret", **overrides: Any) -> Iterator[LiveBroker]:
    """A broker serving on a fresh socket, with its own home (audit log, key, store)."""
    home = Path(tempfile.mkdtemp(prefix="ib-broker-"))
    os.chmod(home, 0o711)  # `nobody` may reach the socket, not read the key or the log
    store = Store(f"sqlite:///{home / 'incidentbook.db'}")
    broker = Broker(policy(kube, home, **overrides), home / "audit.jsonl", load_audit_key(home, create=True) or b"",
                    anchor=StoreAnchor(store), relay_token=relay_token,
                    record=lambda inc, kind, summary, actor, data: store.add_event(inc, kind, summary, actor=actor,
                                                                                    data=data))
    server = BrokerServer(broker, home / "broker.sock", shared=True)
    server.serve_in_thread()
    try:
        yield LiveBroker(broker, server, home / "broker.sock", home, store, kube)
    finally:
        server.close()
        store.close()
        shutil.rmtree(home, ignore_errors=True)
