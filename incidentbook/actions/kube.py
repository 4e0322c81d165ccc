"""Executors: the write actions, through the official `kubernetes` client.

Each action first reads what it will change, then asks the API server for a server-side dry run
(`dryRun=All`) of the exact patch, so the preview is what the cluster would do, and only then
sends the real patch. Responses are read as plain JSON so any client version works.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from incidentbook.errors import IncidentbookError, NotFound, SourceError

RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


@dataclass
class Plan:
    """What an action would change: the patch to send and a human summary of before/after."""

    kind: str
    namespace: str
    name: str
    patch: Any
    summary: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    pods_affected: int = 0
    replicas_change: int = 0


def api_client(kubeconfig: str = "", context: str = "", in_cluster: bool = False) -> Any:
    """A `kubernetes.client.ApiClient` from a kubeconfig (default location) or the pod's account."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise IncidentbookError("write actions need the Kubernetes client: pip install incidentbook[kubernetes]") from None
    try:
        if in_cluster:
            config.load_incluster_config()
            return client.ApiClient()
        path = str(Path(kubeconfig).expanduser()) if kubeconfig else None
        return config.new_client_from_config(config_file=path, context=context or None)
    except Exception as e:  # the loaders raise ConfigException, FileNotFoundError, TypeError…
        where = kubeconfig or "~/.kube/config"
        raise SourceError(f"cannot load Kubernetes credentials from {where} ({e}); set [actions] kubeconfig or in_cluster") from None


class KubeExecutor:
    """Runs rollout undo, scale and restart against Deployments."""

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.apps = client.AppsV1Api(api)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = fn(*args, _preload_content=False, **kwargs)
        except ApiException as e:
            try:
                msg = json.loads(e.body or "{}").get("message") or e.reason
            except (ValueError, AttributeError):
                msg = e.reason
            if e.status == 404:
                raise NotFound(f"{what}: not found ({msg}); check the name and namespace") from None
            raise SourceError(f"{what}: Kubernetes API answered {e.status} ({msg})") from None
        except Exception as e:  # urllib3 connection errors
            raise SourceError(f"{what}: Kubernetes API unreachable ({type(e).__name__}); check [actions] kubeconfig") from None
        return json.loads(resp.data or b"{}")

    # -- planning (reads only) ---------------------------------------------------------------
    def plan_scale(self, name: str, namespace: str, replicas: int) -> Plan:
        """Read the Deployment's scale and describe setting it to `replicas`."""
        cur = self._call(f"deployment {namespace}/{name}", self.apps.read_namespaced_deployment_scale, name, namespace)
        now = int(cur.get("spec", {}).get("replicas", 0) or 0)
        return Plan("scale", namespace, name, {"spec": {"replicas": replicas}},
                    f"scale deployment {namespace}/{name}: replicas {now} -> {replicas}",
                    before={"replicas": now}, after={"replicas": replicas},
                    pods_affected=abs(replicas - now), replicas_change=replicas - now)

    def plan_restart(self, name: str, namespace: str) -> Plan:
        """Describe a rolling restart (the pod template annotation `kubectl rollout restart` sets)."""
        dep = self._call(f"deployment {namespace}/{name}", self.apps.read_namespaced_deployment, name, namespace)
        replicas = int(dep.get("spec", {}).get("replicas", 0) or 0)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}
        return Plan("restart", namespace, name, patch,
                    f"rolling restart of deployment {namespace}/{name}: {replicas} pods replaced",
                    before={"replicas": replicas}, after={RESTART_ANNOTATION: stamp}, pods_affected=replicas)

    def plan_rollout_undo(self, name: str, namespace: str, to_revision: int | None = None) -> Plan:
        """Describe rolling the Deployment back to its previous (or the given) revision."""
        dep = self._call(f"deployment {namespace}/{name}", self.apps.read_namespaced_deployment, name, namespace)
        current = int(dep.get("metadata", {}).get("annotations", {}).get(REVISION_ANNOTATION, 0) or 0)
        selector = dep.get("spec", {}).get("selector", {}).get("matchLabels", {})
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        rs_list = self._call(f"replicasets of {namespace}/{name}", self.apps.list_namespaced_replica_set,
                             namespace, label_selector=label_selector)
        uid = dep.get("metadata", {}).get("uid")
        revisions: dict[int, dict[str, Any]] = {}
        for rs in rs_list.get("items", []):
            owners = rs.get("metadata", {}).get("ownerReferences", [])
            if uid and owners and not any(o.get("uid") == uid for o in owners):
                continue
            rev = int(rs.get("metadata", {}).get("annotations", {}).get(REVISION_ANNOTATION, 0) or 0)
            revisions[rev] = rs
        if to_revision is None:
            older = sorted(r for r in revisions if r < current)
            if not older:
                raise NotFound(f"deployment {namespace}/{name} has no revision before {current} to roll back to")
            to_revision = older[-1]
        if to_revision not in revisions:
            raise NotFound(f"deployment {namespace}/{name} has no revision {to_revision}; known: {sorted(revisions)}")
        template = json.loads(json.dumps(revisions[to_revision].get("spec", {}).get("template", {})))
        template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
        images = lambda t: [c.get("image") for c in t.get("spec", {}).get("containers", [])]  # noqa: E731
        patch = [{"op": "replace", "path": "/spec/template", "value": template}]
        replicas = int(dep.get("spec", {}).get("replicas", 0) or 0)
        return Plan("rollout_undo", namespace, name, patch,
                    f"roll back deployment {namespace}/{name} from revision {current} to {to_revision}: "
                    f"images {images(dep.get('spec', {}).get('template', {}))} -> {images(template)}",
                    before={"revision": current, "images": images(dep.get("spec", {}).get("template", {}))},
                    after={"revision": to_revision, "images": images(template)}, pods_affected=replicas)

    # -- applying -----------------------------------------------------------------------------
    def apply(self, plan: Plan, dry_run: bool = False) -> dict[str, Any]:
        """Send the plan's patch (`dry_run`: server-side dry run, nothing persisted)."""
        extra = {"dry_run": "All"} if dry_run else {}
        what = f"{plan.kind} {plan.namespace}/{plan.name}"
        if plan.kind == "scale":
            return self._call(what, self.apps.patch_namespaced_deployment_scale, plan.name, plan.namespace, plan.patch, **extra)
        return self._call(what, self.apps.patch_namespaced_deployment, plan.name, plan.namespace, plan.patch, **extra)
