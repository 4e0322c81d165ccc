"""Kubernetes connector (official `kubernetes` client), read-only.

Only `list_*` / `read_*` calls on pods, events, deployments, replicasets and nodes are made,
so the credentials it runs with need nothing more than `get`/`list` RBAC on those resources.
It answers: events in a window, pod restarts and last termination reasons (OOMKilled…), and
rollout history (ReplicaSet revisions) as change events.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from incidentbook.errors import BadInput, SourceError
from incidentbook.telemetry.base import (
    CHANGE_COLUMNS,
    CONTEXT_COLUMNS,
    EVENT_COLUMNS,
    SourceStatus,
    TimeLike,
)
from incidentbook.telemetry.bundle import to_utc

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
POD_COLUMNS = ("namespace", "pod", "container", "node", "phase", "ready", "restarts", "image",
               "last_terminated_reason", "last_terminated_exit_code", "last_terminated_at")


def _import_kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise BadInput("Kubernetes support needs: pip install incidentbook[kubernetes]") from None
    return kubernetes


def _ts(value: Any) -> pd.Timestamp | None:
    return None if value is None else to_utc(value)


class KubernetesSource:
    """A Kubernetes cluster, read through the API server with read-only verbs."""

    kind = "kubernetes"

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, in_cluster: bool = False,
                 namespace: str | None = None, name: str = "kubernetes", timeout_s: float = 30.0) -> None:
        """`namespace` is the default for calls that take one; None means all namespaces."""
        k8s = _import_kubernetes()
        self.name = name
        self.namespace = namespace
        self.timeout_s = float(timeout_s)
        cfg = k8s.client.Configuration()
        try:
            if in_cluster:
                k8s.config.load_incluster_config(client_configuration=cfg)
            else:
                k8s.config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
        except k8s.config.ConfigException as e:
            where = "in-cluster service account" if in_cluster else f"kubeconfig {kubeconfig or '~/.kube/config'}"
            raise BadInput(f"cannot load the {where} ({e}); set [sources.{name}] kubeconfig/context "
                           f"or in_cluster = true") from None
        except OSError as e:
            raise BadInput(f"cannot read kubeconfig {kubeconfig} ({e.strerror}); fix [sources.{name}] kubeconfig") from None
        cfg.retries = 1
        self.host = cfg.host
        self._api_client = k8s.client.ApiClient(cfg)
        self._core = k8s.client.CoreV1Api(self._api_client)
        self._apps = k8s.client.AppsV1Api(self._api_client)
        self._k8s = k8s

    @classmethod
    def from_config(cls, cfg: Any, name: str = "kubernetes") -> KubernetesSource:
        """Build from `[sources.NAME]`: `kubeconfig`, `context`, `in_cluster`, `namespace`."""
        extra = dict(cfg.model_extra or {})
        unknown = set(extra) - {"kubeconfig", "context", "in_cluster", "namespace", "kind"}
        if unknown:
            raise BadInput(f"unknown setting(s) {sorted(unknown)} in [sources.{name}]; known: "
                           "kubeconfig, context, in_cluster, namespace")
        return cls(kubeconfig=extra.get("kubeconfig"), context=extra.get("context"),
                   in_cluster=bool(extra.get("in_cluster", False)), namespace=extra.get("namespace"),
                   name=name, timeout_s=cfg.timeout_s)

    def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        k8s = self._k8s
        try:
            return fn(*args, _request_timeout=self.timeout_s, **kw)
        except k8s.client.exceptions.ApiException as e:
            if e.status in (401, 403):
                raise SourceError(f"the Kubernetes API at {self.host} refused to {what} (HTTP {e.status}); "
                                  f"grant get/list on it to the credentials in the kubeconfig context") from None
            detail = e.reason
            try:
                detail = json.loads(e.body or "{}").get("message", detail)
            except (ValueError, AttributeError):
                pass
            raise SourceError(f"the Kubernetes API at {self.host} failed to {what}: {detail}") from None
        except Exception as e:  # urllib3 raises MaxRetryError, ProtocolError, timeouts…
            if type(e).__module__.startswith(("urllib3", "socket", "ssl")) or isinstance(e, OSError):
                raise SourceError(f"cannot reach the Kubernetes API at {self.host} to {what} ({type(e).__name__}); "
                                  f"check the kubeconfig context or [sources.{self.name}]") from None
            raise

    def _ns(self, namespace: str | None) -> str | None:
        return namespace if namespace is not None else self.namespace

    # -- EventsSource --------------------------------------------------------------------------
    def events(self, start: TimeLike, end: TimeLike, namespace: str | None = None) -> pd.DataFrame:
        """Kubernetes events last seen in `[start, end]`, oldest first."""
        ns = self._ns(namespace)
        if ns:
            items = self._call(f"list events in {ns}", self._core.list_namespaced_event, ns).items
        else:
            items = self._call("list events", self._core.list_event_for_all_namespaces).items
        lo, hi = to_utc(start), to_utc(end)
        rows = []
        for ev in items:
            ts = (_ts(ev.last_timestamp) or _ts(ev.event_time) or _ts(ev.first_timestamp)
                  or _ts(ev.metadata.creation_timestamp))
            if ts is None or not (lo <= ts <= hi):
                continue
            obj = ev.involved_object
            rows.append({"timestamp": ts, "namespace": obj.namespace or ev.metadata.namespace or "",
                         "kind": obj.kind or "", "name": obj.name or "", "type": ev.type or "",
                         "reason": ev.reason or "", "message": (ev.message or "").strip(),
                         "count": int(ev.count or 1)})
        df = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
        df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
        df["count"] = df["count"].astype("int64")
        return df.sort_values("timestamp", kind="stable").reset_index(drop=True)

    # -- pods ----------------------------------------------------------------------------------
    def pods(self, namespace: str | None = None) -> pd.DataFrame:
        """One row per container: restarts, readiness and the last termination (reason e.g. OOMKilled)."""
        ns = self._ns(namespace)
        if ns:
            items = self._call(f"list pods in {ns}", self._core.list_namespaced_pod, ns).items
        else:
            items = self._call("list pods", self._core.list_pod_for_all_namespaces).items
        rows = []
        for pod in items:
            st = pod.status
            for cs in (st.container_statuses if st and st.container_statuses else []):
                term = cs.last_state.terminated if cs.last_state else None
                if term is None and cs.state and cs.state.terminated:
                    term = cs.state.terminated
                rows.append({
                    "namespace": pod.metadata.namespace or "", "pod": pod.metadata.name,
                    "container": cs.name, "node": (pod.spec.node_name if pod.spec else "") or "",
                    "phase": (st.phase if st else "") or "", "ready": bool(cs.ready),
                    "restarts": int(cs.restart_count or 0), "image": cs.image or "",
                    "last_terminated_reason": (term.reason if term else "") or "",
                    "last_terminated_exit_code": int(term.exit_code) if term and term.exit_code is not None else None,
                    "last_terminated_at": _ts(term.finished_at) if term else None,
                })
        df = pd.DataFrame(rows, columns=list(POD_COLUMNS))
        df["restarts"] = df["restarts"].astype("int64")
        df["last_terminated_exit_code"] = df["last_terminated_exit_code"].astype("Int64")
        df["last_terminated_at"] = pd.to_datetime(df["last_terminated_at"], utc=True)
        return df.sort_values(["restarts", "namespace", "pod"], ascending=[False, True, True],
                              kind="stable").reset_index(drop=True)

    def nodes(self) -> pd.DataFrame:
        """Nodes with readiness and any pressure conditions that are true."""
        items = self._call("list nodes", self._core.list_node).items
        rows = []
        for node in items:
            conds = {c.type: c.status for c in (node.status.conditions or [])} if node.status else {}
            rows.append({"node": node.metadata.name, "ready": conds.get("Ready") == "True",
                         "pressure": ",".join(sorted(t for t, s in conds.items() if t != "Ready" and s == "True")),
                         "unschedulable": bool(node.spec.unschedulable) if node.spec else False})
        return pd.DataFrame(rows, columns=["node", "ready", "pressure", "unschedulable"])

    # -- rollouts as changes -------------------------------------------------------------------
    def rollouts(self, namespace: str | None = None) -> pd.DataFrame:
        """Rollout history: one change event per Deployment ReplicaSet revision (changes frame)."""
        ns = self._ns(namespace)
        if ns:
            rsets = self._call(f"list replicasets in {ns}", self._apps.list_namespaced_replica_set, ns).items
        else:
            rsets = self._call("list replicasets", self._apps.list_replica_set_for_all_namespaces).items
        by_deploy: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        for rs in rsets:
            owner = next((o for o in (rs.metadata.owner_references or []) if o.kind == "Deployment"), None)
            ann = rs.metadata.annotations or {}
            if owner is None or REVISION_ANNOTATION not in ann:
                continue
            try:
                rev = int(ann[REVISION_ANNOTATION])
            except ValueError:
                continue
            by_deploy.setdefault((rs.metadata.namespace or "", owner.name), []).append((rev, rs))
        rows = []
        for (rns, deploy), revs in by_deploy.items():
            revs.sort(key=lambda r: r[0])
            prev: dict[str, str] | None = None
            for rev, rs in revs:
                images = {c.name: c.image for c in rs.spec.template.spec.containers} if rs.spec and rs.spec.template else {}
                ann = rs.metadata.annotations or {}
                if prev is None:
                    what = "rollout revision {rev}: " + ", ".join(f"{n}={i}" for n, i in images.items())
                else:
                    changed = [f"{n} {prev.get(n, '(none)')} -> {i}" for n, i in images.items() if prev.get(n) != i]
                    what = "rollout revision {rev}: " + ("; ".join(changed) if changed else "pod template changed (same images)")
                rows.append({
                    "timestamp": _ts(rs.metadata.creation_timestamp), "service": deploy, "kind": "deploy",
                    "description": f"{deploy} " + what.format(rev=rev),
                    "author": ann.get(CHANGE_CAUSE_ANNOTATION, ""),
                    "details": {"namespace": rns, "deployment": deploy, "replicaset": rs.metadata.name,
                                "revision": rev, "images": images, "previous_images": prev or {},
                                "source": "kubernetes"},
                })
                prev = images
        df = pd.DataFrame(rows, columns=list(CHANGE_COLUMNS))
        df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
        return df.sort_values("timestamp", kind="stable").reset_index(drop=True)

    # -- ChangesSource -------------------------------------------------------------------------
    def changes(self, start: TimeLike, end: TimeLike, service: str | None = None) -> pd.DataFrame:
        """Rollouts that started in `[start, end]` (optionally of one Deployment)."""
        df = self.rollouts()
        lo, hi = to_utc(start), to_utc(end)
        keep = (df["timestamp"] >= lo) & (df["timestamp"] <= hi)
        if service:
            keep &= df["service"] == service
        return df[keep].reset_index(drop=True)

    def context(self, start: TimeLike, end: TimeLike) -> pd.DataFrame:
        """The cluster knows no planned events: always empty."""
        return pd.DataFrame(columns=list(CONTEXT_COLUMNS))

    def status(self) -> SourceStatus:
        """Reachable (GET /version)? Never raises."""
        try:
            self._call("read its version", self._k8s.client.VersionApi(self._api_client).get_code)
        except Exception as e:  # status must never raise
            return SourceStatus(self.name, self.kind, False, str(e))
        return SourceStatus(self.name, self.kind, True, f"reachable at {self.host}")
