"""A Kubernetes cluster reached through the cncf-kubernetes provider's KubernetesHook (kubexp.connections).

Nodes and their Ready condition, server-side apply of rendered manifests, the rollout poke,
namespace teardown that waits until the namespace is really gone, NodePort lookup and CRD
removal. Every API failure becomes a PlatformError naming the object and what to check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, TypeVar

from kubexp.platform.base import NodeStatus, PlatformError
from kubexp.platform.kubernetes.waiting import wait_until

if TYPE_CHECKING:
    from kubernetes.client import AppsV1Api, CoreV1Api
    from kubernetes.dynamic import DynamicClient

    from kubexp.connections import KubernetesHook

log = logging.getLogger(__name__)
T = TypeVar("T")
MANAGED_LABEL = "app.kubernetes.io/part-of"  # set on every object kubexp.platform.kubernetes.manifests renders
MANAGED_VALUE = "kubexp"
ISTIO_LABEL = "kubexp.io/installed-istio"  # on the Istio namespace when kubexp installed Istio there


@dataclass(frozen=True)
class RolloutState:
    ready: bool
    detail: str


class Cluster:
    def __init__(self, conn_id: str, *, field_manager: str = "kubexp", poll_interval_s: float = 5.0) -> None:
        self.conn_id = conn_id
        self.field_manager = field_manager
        self.poll_interval_s = poll_interval_s

    @cached_property
    def hook(self) -> KubernetesHook:
        from kubexp import connections

        return connections.kubernetes_hook(self.conn_id)

    @cached_property
    def core(self) -> CoreV1Api:
        return self._client(lambda hook: hook.core_v1_client)

    @cached_property
    def apps(self) -> AppsV1Api:
        return self._client(lambda hook: hook.apps_v1_client)

    @cached_property
    def dynamic(self) -> DynamicClient:
        from kubernetes.dynamic import DynamicClient

        return self._client(lambda hook: DynamicClient(hook.api_client))

    def _client(self, make: Callable[[KubernetesHook], T]) -> T:
        try:
            return make(self.hook)
        except Exception as exc:  # connection lookup, kubeconfig parsing, discovery
            raise PlatformError(
                f"Kubernetes connection {self.conn_id!r}: cannot build a client ({exc}); create the Airflow "
                f"connection with a kubeconfig (docs/cluster-setup.md, 'Airflow connections')"
            ) from exc

    def api(self, what: str, fn: Callable[..., Any], *args: Any, tolerate: tuple[int, ...] = (),
            **kwargs: Any) -> Any:
        """fn(*args, **kwargs) with API and transport errors as PlatformError naming `what`;
        an HTTP status in `tolerate` (e.g. 404) answers None."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import DynamicApiError
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except (ApiException, DynamicApiError) as exc:
            status = getattr(exc, "status", "?")
            if status in tolerate:
                return None
            reason = getattr(exc, "reason", "") or ""
            raise PlatformError(f"Kubernetes ({self.conn_id}): {what} failed: HTTP {status} {reason}".rstrip()) \
                from exc
        except HTTPError as exc:
            raise PlatformError(f"Kubernetes ({self.conn_id}): {what} failed: API server unreachable ({exc})") \
                from exc

    # -- facts --

    def server_version(self) -> str:
        from kubernetes.client import VersionApi

        info = self.api("read the server version", VersionApi(self.hook.api_client).get_code)
        return str(info.git_version)

    def nodes(self) -> list[NodeStatus]:
        items = self.api("list nodes", self.core.list_node).items
        return sorted((_node_status(node) for node in items), key=lambda status: status.name)

    def node_facts(self) -> list[dict[str, Any]]:
        facts = []
        for node in self.api("list nodes", self.core.list_node).items:
            info = node.status.node_info if node.status else None
            addresses = {a.type: a.address for a in (node.status.addresses or [])} if node.status else {}
            facts.append({"name": node.metadata.name, "kubelet": getattr(info, "kubelet_version", None),
                          "os_image": getattr(info, "os_image", None), "kernel": getattr(info, "kernel_version", None),
                          "runtime": getattr(info, "container_runtime_version", None), "addresses": addresses})
        return sorted(facts, key=lambda fact: str(fact["name"]))

    def node_ready(self, name: str) -> bool:
        node = self.api(f"read node {name}", self.core.read_node, name, tolerate=(404,))
        if node is None:
            raise PlatformError(f"node {name}: not registered in Kubernetes (is the kubelet up, the name right?)")
        return _node_status(node).ready

    def wait_node_ready(self, name: str, timeout_s: float) -> None:
        wait_until(lambda: self.node_ready(name), timeout_s=timeout_s, interval_s=self.poll_interval_s,
                   what=f"node {name}: Kubernetes Ready condition")

    def first_node_address(self) -> str:
        """ExternalIP of the first Ready node (by name), else its InternalIP (where NodePorts answer)."""
        items = self.api("list nodes", self.core.list_node).items
        for node in sorted(items, key=lambda node: node.metadata.name):
            addresses = {a.type: a.address for a in (node.status.addresses or [])} if node.status else {}
            address = addresses.get("ExternalIP") or addresses.get("InternalIP")
            if _node_status(node).ready and address:
                return str(address)
        raise PlatformError("no Ready node with an address; set kubernetes.ingress_host in the suite")

    # -- apply and rollout --

    def apply(self, objects: Iterable[Mapping[str, Any]]) -> list[str]:
        """Server-side apply each object in order (force: kubexp owns these fields). Returns Kind/name."""
        applied = []
        for obj in objects:
            kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name")
            label = f"{kind}/{name}"
            resource = self.api(f"discover {obj.get('apiVersion')} {kind} (is its CRD installed?)",
                                  self.dynamic.resources.get, api_version=obj["apiVersion"], kind=kind)
            namespace = (obj.get("metadata") or {}).get("namespace") if resource.namespaced else None
            self.api(f"apply {label}" + (f" in namespace {namespace}" if namespace else ""),
                       self.dynamic.server_side_apply, resource, body=dict(obj), name=name, namespace=namespace,
                       field_manager=self.field_manager, force_conflicts=True)
            applied.append(label)
        return applied

    def rollout(self, namespace: str, deployment: str, replicas: int) -> RolloutState:
        """Ready once the Deployment has >= `replicas` ready and updated replicas of its latest generation."""
        dep = self.api(f"read deployment {namespace}/{deployment}", self.apps.read_namespaced_deployment,
                       deployment, namespace, tolerate=(404,))
        if dep is None:
            return RolloutState(False, f"deployment {namespace}/{deployment} does not exist (yet)")
        status = dep.status
        ready = (status.ready_replicas or 0) if status else 0
        updated = (status.updated_replicas or 0) if status else 0
        generation, observed = dep.metadata.generation, status.observed_generation if status else None
        if generation is not None and observed is not None and observed < generation:
            return RolloutState(False, f"deployment {namespace}/{deployment}: generation {generation} "
                                       f"not yet observed (at {observed})")
        detail = f"deployment {namespace}/{deployment}: {ready} ready, {updated} updated, {replicas} required"
        return RolloutState(ready >= replicas and updated >= replicas, detail)

    def node_port(self, namespace: str, service: str, port: int | str | None = None) -> int:
        """The NodePort of a Service port (by number or name; the first port when None)."""
        svc = self.api(f"read service {namespace}/{service}", self.core.read_namespaced_service, service, namespace)
        for entry in svc.spec.ports or []:
            if port is None or entry.port == port or entry.name == port:
                if not entry.node_port:
                    raise PlatformError(f"service {namespace}/{service}: port {entry.name or entry.port} has no "
                                        f"nodePort; it must be of type NodePort")
                return int(entry.node_port)
        raise PlatformError(f"service {namespace}/{service}: no port {port!r}")

    # -- namespaces and teardown --

    def namespace(self, name: str) -> dict[str, Any] | None:
        ns = self.api(f"read namespace {name}", self.core.read_namespace, name, tolerate=(404,))
        if ns is None:
            return None
        return {"labels": dict(ns.metadata.labels or {}), "phase": ns.status.phase if ns.status else None}

    def label_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        self.api(f"label namespace {name}", self.core.patch_namespace, name, {"metadata": {"labels": dict(labels)}})

    @staticmethod
    def is_managed(namespace: Mapping[str, Any]) -> bool:
        """Whether kubexp created this namespace (`namespace(name)`'s answer)."""
        return bool(namespace["labels"].get(MANAGED_LABEL) == MANAGED_VALUE)

    def managed_namespaces(self) -> list[str]:
        """Namespaces kubexp created for any earlier attempt (by their part-of label)."""
        listed = self.api("list kubexp namespaces", self.core.list_namespace,
                            label_selector=f"{MANAGED_LABEL}={MANAGED_VALUE}")
        return sorted(ns.metadata.name for ns in listed.items)

    def delete_namespaces(self, names: Iterable[str], timeout_s: float, until_pods_gone: bool = False) -> list[str]:
        """Delete the namespaces (foreground), then their workloads and pods, and wait until none of the
        namespaces exists any more (with `until_pods_gone`, until none of them has a pod left: the namespace
        itself may still be terminating).

        kube-controller-manager's namespace controller first empties a namespace 5 s after its deletion and,
        finding pods still terminating then, looks again only about 5 s later; deleting the pods at once lets
        them end within those first 5 s (cleanup 12.5 -> about 6 s on the local cluster). A terminating
        namespace accepts no new pods, so no controller replaces them meanwhile."""
        from kubernetes.client import V1DeleteOptions

        names = sorted(set(names))
        for name in names:
            # 404: gone already; 409: already terminating, which is what we want
            self.api(f"delete namespace {name}", self.core.delete_namespace, name,
                     body=V1DeleteOptions(propagation_policy="Foreground"), tolerate=(404, 409))
        started = time.monotonic()
        for name in names:
            for what, delete in (("deployments", self.apps.delete_collection_namespaced_deployment),
                                 ("stateful sets", self.apps.delete_collection_namespaced_stateful_set),
                                 ("daemon sets", self.apps.delete_collection_namespaced_daemon_set),
                                 ("replica sets", self.apps.delete_collection_namespaced_replica_set),
                                 ("pods", self.core.delete_collection_namespaced_pod)):
                self.api(f"delete the {what} of namespace {name}", delete, name, tolerate=(404,))
        for name in names:
            if until_pods_gone:
                wait_until(partial(self._no_pods, name), timeout_s=timeout_s, interval_s=self.poll_interval_s,
                           what=f"namespace {name}: its pods' termination (check `kubectl get pods -n {name}`)")
            else:
                wait_until(partial(self._namespace_gone, name), timeout_s=timeout_s, interval_s=self.poll_interval_s,
                           what=f"namespace {name}: deletion (check `kubectl get ns {name} -o yaml` for stuck "
                                f"finalizers)")
        log.info("teardown: %s of namespace(s) %s gone after %.1f s", "the pods" if until_pods_gone else "all",
                 ", ".join(names), time.monotonic() - started)
        return names

    def _namespace_gone(self, name: str) -> bool:
        return self.namespace(name) is None

    def _no_pods(self, name: str) -> bool:
        pods = self.api(f"list the pods of namespace {name}", self.core.list_namespaced_pod, name, tolerate=(404,))
        return pods is None or not pods.items

    def delete_crds(self, group_suffix: str) -> list[str]:
        """Delete every CustomResourceDefinition whose group ends with `group_suffix` (e.g. 'istio.io')."""
        crds = self.api("discover CustomResourceDefinitions", self.dynamic.resources.get,
                          api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
        names = sorted(item["metadata"]["name"]
                       for item in self.api("list CRDs", crds.get).to_dict().get("items", [])
                       if str(item.get("spec", {}).get("group", "")).endswith(group_suffix))
        for name in names:
            self.api(f"delete CRD {name}", crds.delete, name=name)
        return names


def _node_status(node: Any) -> NodeStatus:
    name = node.metadata.name
    conditions = (node.status.conditions if node.status else None) or []
    ready = next((c for c in conditions if c.type == "Ready"), None)
    if ready is None:
        return NodeStatus(name=name, ready=False, reason="no Ready condition reported")
    if ready.status == "True":
        return NodeStatus(name=name, ready=True)
    return NodeStatus(name=name, ready=False, reason=f"{ready.reason or 'NotReady'}: {ready.message or ''}".strip(" :"))
