"""Kubernetes connector: the official `kubernetes` client against a loopback HTTP server that
speaks the kube-apiserver JSON API for the list endpoints the connector uses. No kube-apiserver
binary can be installed here, so this stand-in serves recorded-style objects. It fails the test
on any request that is not a GET: the connector must never write to a cluster."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from incidentbook.errors import BadInput, SourceError
from incidentbook.telemetry.base import CHANGE_COLUMNS, EVENT_COLUMNS, ChangesSource, EventsSource
from incidentbook.telemetry.kubernetes import KubernetesSource
from tests.telemetry.loopback import LoopbackServer, Reply

pytest.importorskip("kubernetes", reason="the kubernetes client is in the [kubernetes] extra")

T = "2026-11-23T10:{:02d}:00Z"


def _event(name, ns, kind, obj, reason, typ, minute, msg, count=1):
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": T.format(minute)},
            "involvedObject": {"kind": kind, "name": obj, "namespace": ns},
            "reason": reason, "type": typ, "message": msg, "count": count,
            "firstTimestamp": T.format(minute), "lastTimestamp": T.format(minute)}


EVENTS = [
    _event("e1", "shop", "Pod", "checkout-7d9-abc", "OOMKilling", "Warning", 5, "Memory cgroup out of memory", 3),
    _event("e2", "shop", "Deployment", "checkout", "ScalingReplicaSet", "Normal", 2, "Scaled up replica set checkout-7d9 to 3"),
    _event("e3", "shop", "Pod", "search-1", "BackOff", "Warning", 40, "Back-off restarting failed container"),
    _event("e4", "infra", "Node", "node-a", "NodeNotReady", "Warning", 6, "Node node-a status is now: NodeNotReady"),
]


def _pod(name, ns, restarts, reason=None, exit_code=None):
    last = {"terminated": {"reason": reason, "exitCode": exit_code, "finishedAt": T.format(5),
                           "startedAt": T.format(1)}} if reason else {}
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "shop/app:1"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": restarts == 0, "restartCount": restarts, "image": "shop/app:1",
                 "imageID": "", "lastState": last, "state": {"running": {"startedAt": T.format(6)}}}]}}


PODS = [_pod("search-1", "shop", 0), _pod("checkout-7d9-abc", "shop", 4, "OOMKilled", 137)]


def _rs(name, deploy, rev, image, minute, cause=None):
    ann = {"deployment.kubernetes.io/revision": str(rev)}
    if cause:
        ann["kubernetes.io/change-cause"] = cause
    return {"metadata": {"name": name, "namespace": "shop", "creationTimestamp": T.format(minute), "annotations": ann,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy,
                                              "uid": "u", "controller": True}]},
            "spec": {"selector": {"matchLabels": {"app": deploy}},
                     "template": {"metadata": {"labels": {"app": deploy}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


REPLICASETS = [
    _rs("checkout-5c4", "checkout", 1, "shop/checkout:2.4.0", 0),
    _rs("checkout-7d9", "checkout", 2, "shop/checkout:2.4.1", 3, cause="ci: deploy 2.4.1"),
    _rs("search-aa1", "search", 5, "shop/search:9", 1),
]
NODES = [{"metadata": {"name": "node-a"}, "spec": {},
          "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "True"}]}}]


def _list(kind, api, items, ns=None):
    if ns is not None:
        items = [i for i in items if i["metadata"].get("namespace") == ns]
    return Reply(200, {"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": "1"}, "items": items})


class FakeApiServer:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def __call__(self, req):
        if req.method != "GET":
            self.writes.append(f"{req.method} {req.path}")
            return Reply(405, {"kind": "Status", "status": "Failure", "message": "read-only test server"})
        if req.headers.get("authorization") != "Bearer test-token":
            return Reply(401, {"kind": "Status", "status": "Failure", "message": "Unauthorized", "code": 401})
        p = req.path.strip("/").split("/")
        if p == ["version"]:
            return Reply(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "gitCommit": "abc",
                              "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                              "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64"})
        ns = p[3] if len(p) > 3 and p[2] == "namespaces" else None
        ns = p[4] if p[:2] == ["apis", "apps"] and len(p) > 4 and p[3] == "namespaces" else ns
        res = p[-1]
        if res == "events":
            return _list("EventList", "v1", EVENTS, ns)
        if res == "pods":
            return _list("PodList", "v1", PODS, ns)
        if res == "replicasets":
            return _list("ReplicaSetList", "apps/v1", REPLICASETS, ns)
        if res == "nodes":
            return _list("NodeList", "v1", NODES)
        if res == "secrets" and ns == "forbidden":
            return Reply(403, {"kind": "Status", "message": "forbidden"})
        return Reply(404, {"kind": "Status", "status": "Failure", "message": f"no route {req.path}", "code": 404})


@pytest.fixture()
def cluster(tmp_path):
    api = FakeApiServer()
    with LoopbackServer(api) as srv:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {{server: "{srv.url}"}}
users:
- name: sre
  user: {{token: test-token}}
contexts:
- name: test
  context: {{cluster: test, user: sre, namespace: shop}}
current-context: test
""")
        yield srv, api, kubeconfig
    assert api.writes == [], f"the connector sent write requests: {api.writes}"


def test_events_in_window(cluster):
    srv, api, kubeconfig = cluster
    src = KubernetesSource(kubeconfig=str(kubeconfig), context="test")
    assert isinstance(src, EventsSource) and isinstance(src, ChangesSource)
    df = src.events("2026-11-23T10:00:00Z", "2026-11-23T10:30:00Z")
    assert list(df.columns) == list(EVENT_COLUMNS)
    assert df["reason"].tolist() == ["ScalingReplicaSet", "OOMKilling", "NodeNotReady"]  # oldest first, 10:40 excluded
    oom = df[df["reason"] == "OOMKilling"].iloc[0]
    assert (oom["kind"], oom["name"], oom["count"]) == ("Pod", "checkout-7d9-abc", 3)
    shop = src.events("2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z", namespace="shop")
    assert set(shop["namespace"]) == {"shop"} and len(shop) == 3
    assert all(r.path.startswith("/api/v1/namespaces/shop/events") for r in srv.requests[-1:])


def test_pods_show_restarts_and_oomkilled(cluster):
    _, _, kubeconfig = cluster
    df = KubernetesSource(kubeconfig=str(kubeconfig), namespace="shop").pods()
    top = df.iloc[0]
    assert (top["pod"], top["restarts"], top["last_terminated_reason"], top["last_terminated_exit_code"]) == \
        ("checkout-7d9-abc", 4, "OOMKilled", 137)
    assert top["last_terminated_at"] == pd.Timestamp("2026-11-23T10:05:00Z")
    assert df.iloc[1]["restarts"] == 0 and df.iloc[1]["last_terminated_reason"] == ""


def test_rollouts_become_change_events(cluster):
    _, _, kubeconfig = cluster
    src = KubernetesSource(kubeconfig=str(kubeconfig), namespace="shop")
    df = src.rollouts()
    assert list(df.columns) == list(CHANGE_COLUMNS)
    assert df["service"].tolist() == ["checkout", "search", "checkout"]
    deploy = df.iloc[2]
    assert "shop/checkout:2.4.0 -> shop/checkout:2.4.1" in deploy["description"]
    assert deploy["author"] == "ci: deploy 2.4.1"
    assert deploy["details"]["revision"] == 2 and deploy["kind"] == "deploy"
    window = src.changes("2026-11-23T10:02:00Z", "2026-11-23T10:10:00Z", service="checkout")
    assert window["details"].map(lambda d: d["replicaset"]).tolist() == ["checkout-7d9"]
    nodes = src.nodes()
    assert nodes.iloc[0]["ready"] == False and nodes.iloc[0]["pressure"] == "MemoryPressure"  # noqa: E712
    assert src.status().ok


def test_unauthorised_and_unreachable_cluster(tmp_path, cluster):
    srv, _, kubeconfig = cluster
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(kubeconfig.read_text().replace("test-token", "revoked"))
    with pytest.raises(SourceError, match="refused to list events.*401"):
        KubernetesSource(kubeconfig=str(bad)).events("2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z")
    gone = tmp_path / "gone-kubeconfig"
    gone.write_text(kubeconfig.read_text().replace(srv.url, "http://127.0.0.1:9"))
    src = KubernetesSource(kubeconfig=str(gone), timeout_s=2)
    with pytest.raises(SourceError, match="cannot reach the Kubernetes API at http://127.0.0.1:9"):
        src.pods()
    assert not src.status().ok
    with pytest.raises(BadInput, match="kubeconfig"):
        KubernetesSource(kubeconfig=str(tmp_path / "missing"))


def test_source_module_uses_only_read_verbs():
    """Every API call in the connector is a list_/read_/get_ call."""
    import incidentbook.telemetry.kubernetes as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    api_calls = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                 and isinstance(n.value, ast.Attribute) and n.value.attr in ("_core", "_apps")}
    assert api_calls, "expected calls on the CoreV1Api/AppsV1Api clients"
    assert all(name.startswith(("list_", "read_")) for name in api_calls), api_calls
    writes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
              and n.attr.startswith(("create_", "delete_", "patch_", "replace_", "connect_"))}
    assert writes == set()
