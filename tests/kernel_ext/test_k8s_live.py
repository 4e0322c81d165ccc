"""`%k8s pods|rollouts` ask a live cluster when one is configured.

No kube-apiserver binary can be installed here, so the real `kubernetes` client talks to a
loopback server that speaks the kube-apiserver's HTTP API (tests/telemetry/test_kubernetes.py).
"""

from __future__ import annotations

from typing import Any

from incidentbook.kernel_ext import get_session
from incidentbook.telemetry.kubernetes import KubernetesSource
from incidentbook.telemetry.sources import Telemetry
from tests.telemetry.test_kubernetes import cluster  # noqa: F401  (the loopback cluster fixture)


def test_k8s_pods_and_rollouts_come_from_the_live_cluster(bound: Any, cluster: Any) -> None:  # noqa: F811
    _, api, kubeconfig = cluster
    session = get_session(bound)
    bound.user_ns["bundle"] = ""  # live sources, not a replayed bundle
    session.bound()  # bind first: binding resets the telemetry
    session._telemetry = Telemetry({"kubernetes": KubernetesSource(kubeconfig=str(kubeconfig), context="test")})
    session._telemetry_key = session.bundle_path()
    r = bound.run_cell("pods = %k8s pods")
    assert r.success, r.error_in_exec
    pods = bound.user_ns["pods"]
    oom = pods[pods["pod"] == "checkout-7d9-abc"].iloc[0]
    assert (oom["restarts"], oom["last_terminated_reason"]) == (4, "OOMKilled")
    assert bound.run_cell("ro = %k8s rollouts").success
    assert len(bound.user_ns["ro"]) and set(bound.user_ns["ro"]["kind"]) <= {"deploy", "rollback", "config", "flag", "scale"}
    assert api.writes == []
