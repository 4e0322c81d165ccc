"""A loopback server speaking the slice of the kube-apiserver API the action executors use.

No kube-apiserver binary can be installed here, so the real `kubernetes` client talks to this
over HTTP: GET/PATCH `deployments/{name}`, GET/PATCH `deployments/{name}/scale`, and list
`replicasets` by label selector. PATCH honours `dryRun=All` (answers, persists nothing), strategic
merge patches (objects merged, as for the fields the executors touch) and JSON patches.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_DEP = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)(/scale)?$")
_RS = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/replicasets$")


def _merge(dst: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        elif v is None:
            dst.pop(k, None)
        else:
            dst[k] = copy.deepcopy(v)


def _json_patch(obj: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        parts = [p for p in op["path"].split("/") if p]
        target = obj
        for p in parts[:-1]:
            target = target[p]
        if op["op"] in ("replace", "add"):
            target[parts[-1]] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            target.pop(parts[-1], None)
        else:
            raise ValueError(f"unsupported op {op['op']}")


def deployment(ns: str, name: str, replicas: int, revision: int, image: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "generation": 1,
                         "annotations": {"deployment.kubernetes.io/revision": str(revision)}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image}]}}}}


def replicaset(ns: str, name: str, revision: int, image: str, hash_: str) -> dict[str, Any]:
    return {"metadata": {"name": f"{name}-{hash_}", "namespace": ns, "labels": {"app": name, "pod-template-hash": hash_},
                         "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                         "ownerReferences": [{"kind": "Deployment", "name": name, "uid": f"uid-{name}"}]},
            "spec": {"template": {"metadata": {"labels": {"app": name, "pod-template-hash": hash_}},
                                  "spec": {"containers": [{"name": name, "image": image}]}}}}


@dataclass
class KubeAPI:
    """Deployments and ReplicaSets in memory; `writes` lists every persisted PATCH."""

    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    replicasets: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    writes: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    def add(self, ns: str, name: str, replicas: int = 3) -> None:
        """A Deployment at revision 2 (image v2.4.0) with a revision-1 ReplicaSet (v2.3.1)."""
        self.deployments[(ns, name)] = deployment(ns, name, replicas, 2, f"shop/{name}:v2.4.0")
        self.replicasets += [replicaset(ns, name, 1, f"shop/{name}:v2.3.1", "aaa111"),
                             replicaset(ns, name, 2, f"shop/{name}:v2.4.0", "bbb222")]

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig pointing the client at this server."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "loopback",
            "clusters": [{"name": "loopback", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [{"name": "loopback", "context": {"cluster": "loopback", "user": "tester"}}],
        }))
        return path

    def _handle(self, method: str, path: str, params: dict[str, str], body: Any) -> tuple[int, Any]:
        m = _DEP.match(path)
        if m:
            ns, name, scale = m.group(1), m.group(2), bool(m.group(3))
            dep = self.deployments.get((ns, name))
            if dep is None:
                return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404,
                             "message": f'deployments.apps "{name}" not found'}
            target = copy.deepcopy(dep)
            if method == "PATCH":
                if scale:
                    target["spec"]["replicas"] = body["spec"]["replicas"]
                elif isinstance(body, list):
                    _json_patch(target, body)
                else:
                    _merge(target, body)
                if params.get("dryRun") != "All":
                    target["metadata"]["generation"] += 1
                    self.deployments[(ns, name)] = target
                    self.writes.append((path, json.dumps(body, sort_keys=True)))
            if scale:
                return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                             "metadata": {"name": name, "namespace": ns},
                             "spec": {"replicas": target["spec"]["replicas"]}, "status": {"replicas": target["spec"]["replicas"]}}
            return 200, target
        m = _RS.match(path)
        if m and method == "GET":
            want = dict(kv.split("=", 1) for kv in params.get("labelSelector", "").split(",") if kv)
            items = [rs for rs in self.replicasets if rs["metadata"]["namespace"] == m.group(1)
                     and all(rs["metadata"]["labels"].get(k) == v for k, v in want.items())]
            return 200, {"kind": "ReplicaSetList", "apiVersion": "apps/v1", "metadata": {}, "items": items}
        return 404, {"kind": "Status", "code": 404, "message": f"no route {method} {path}"}

    def __enter__(self) -> KubeAPI:
        api = self

        class H(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                api.requests.append((self.command, parts.path, params))
                status, reply = api._handle(self.command, parts.path, params, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
