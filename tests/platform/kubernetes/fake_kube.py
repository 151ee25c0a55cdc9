"""kmock's Kubernetes emulator on 127.0.0.1 in a background thread, with the gaps we need filled.

kmock 0.8 (see shared/notes/components.md) cannot route namespace paths (/api/v1/namespaces,
/api/v1/namespaces/NAME), answers 404 to a server-side apply of a new object, has no
`GET /version/`, and serves lists without `kind`. `ClusterEmulator` fills exactly those:
namespaces are kept here (with a Terminating phase after DELETE, until the test's namespace
controller finishes them), and an apply PATCH of a missing object creates it first; lists get their kind and apiVersion.
Everything else is kmock's own behaviour.

There are no controllers: tests play them with `set_node_ready`, `set_deployment_status`,
`set_node_port`, and `namespace_polls_to_gone` (how many GETs a Terminating namespace survives).
Every request is logged in `seen` (method, path, query, content type, JSON body).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs

import aiohttp.web
import attrs
from kmock import KubernetesEmulator, ResourceInfo, Server, resource

T = TypeVar("T")
APPLY = "application/apply-patch+yaml"

# What the cluster serves (discovery): core and apps kinds the platform uses, plus Istio's CRD group.
RESOURCES = {
    "v1/namespaces": ResourceInfo(kind="Namespace", namespaced=False, verbs={"get", "list", "patch", "delete"}),
    "v1/nodes": ResourceInfo(kind="Node", namespaced=False, verbs={"get", "list", "patch"}),
    "v1/events": ResourceInfo(kind="Event", namespaced=True, verbs={"get", "list"}),
    "v1/pods": ResourceInfo(kind="Pod", namespaced=True, verbs={"get", "list"}),
    "v1/services": ResourceInfo(kind="Service", namespaced=True, verbs={"get", "list", "patch", "create", "delete"}),
    "v1/configmaps": ResourceInfo(kind="ConfigMap", namespaced=True, verbs={"get", "list", "patch", "create"}),
    "v1/serviceaccounts": ResourceInfo(kind="ServiceAccount", namespaced=True, verbs={"get", "list", "patch"}),
    "apps/v1/deployments": ResourceInfo(kind="Deployment", namespaced=True,
                                        verbs={"get", "list", "patch", "create", "delete"}),
    "autoscaling/v2/horizontalpodautoscalers": ResourceInfo(kind="HorizontalPodAutoscaler", namespaced=True,
                                                            verbs={"get", "list", "patch", "create"}),
    "policy/v1/poddisruptionbudgets": ResourceInfo(kind="PodDisruptionBudget", namespaced=True,
                                                   verbs={"get", "list", "patch"}),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"get", "list", "delete"}),
    "networking.istio.io/v1beta1/virtualservices": ResourceInfo(kind="VirtualService", namespaced=True,
                                                           verbs={"get", "list", "patch"}),
    "networking.istio.io/v1beta1/gateways": ResourceInfo(kind="Gateway", namespaced=True,
                                                         verbs={"get", "list", "patch"}),
    "networking.istio.io/v1beta1/destinationrules": ResourceInfo(kind="DestinationRule", namespaced=True,
                                                            verbs={"get", "list", "patch"}),
    "monitoring.coreos.com/v1/servicemonitors": ResourceInfo(kind="ServiceMonitor", namespaced=True,
                                                             verbs={"get", "list", "patch"}),
    "monitoring.coreos.com/v1/podmonitors": ResourceInfo(kind="PodMonitor", namespaced=True,
                                                         verbs={"get", "list", "patch"}),
}
NODES = resource("", "v1", "nodes")
DEPLOYMENTS = resource("apps", "v1", "deployments")
SERVICES = resource("", "v1", "services")
CRDS = resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
EVENTS = resource("", "v1", "events")


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any


@attrs.define(kw_only=True)
class ClusterEmulator(KubernetesEmulator):
    namespaces: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    namespace_polls_to_gone: int = 2
    seen: list[Seen] = attrs.field(factory=list)
    _polls: dict[str, int] = attrs.field(factory=dict)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        raw = await raw_request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.seen.append(Seen(raw_request.method, raw_request.path, parse_qs(raw_request.query_string),
                              raw_request.headers.get("Content-Type", ""), body))
        parts = raw_request.path.strip("/").split("/")
        if raw_request.path.rstrip("/") == "/version":
            return aiohttp.web.json_response({
                "major": "1", "minor": "33", "gitVersion": "v1.33.1-kmock", "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.1",
                "compiler": "gc", "platform": "linux/amd64"})
        collection = _namespaced_collection(parts)
        if raw_request.method == "DELETE" and collection is not None:
            return self._delete_collection(*collection)
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) in (3, 4):
            return self._namespace(raw_request.method, parts[3] if len(parts) == 4 else None, body,
                                   raw_request.headers.get("Content-Type", ""), dict(raw_request.query))
        return await super().__call__(raw_request)

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        # Server-side apply creates what is missing; kmock only patches existing objects.
        if (request.method == "PATCH" and request.headers.get("Content-Type") == APPLY
                and request.resource is not None and request.name is not None):
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                obj = dict(request.data)
                obj["metadata"] = {**obj.get("metadata", {}), "namespace": request.namespace}
                if request.namespace not in self.namespaces and request.namespace is not None:
                    return _status(404, "NotFound", f'namespaces "{request.namespace}" not found')
                self.objects[key] = obj
        return await super()._handle(request)

    async def _serve_list(self, request: Any) -> Any:
        # kmock leaves out the list's kind and apiVersion; clients such as the dynamic one need them.
        listed = await super()._serve_list(request)
        res = request.resource
        info = self.resources[res]
        return {"apiVersion": f"{res.group}/{res.version}".lstrip("/"), "kind": f"{info.kind}List", **listed}

    def _namespace(self, method: str, name: str | None, body: Any, content_type: str,
                   query: dict[str, str]) -> aiohttp.web.StreamResponse:
        if name is None and method == "GET":
            wanted = dict(pair.split("=", 1) for pair in query.get("labelSelector", "").split(",") if "=" in pair)
            items = [ns for ns in self.namespaces.values()
                     if all(ns["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
            return aiohttp.web.json_response({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {},
                                              "items": items})
        if name is None and method == "POST":
            name = body["metadata"]["name"]
            if name in self.namespaces:
                return _status(409, "AlreadyExists", f'namespaces "{name}" already exists')
            self.namespaces[name] = _namespace_object(body)
            return aiohttp.web.json_response(self.namespaces[name], status=201)
        if name is None:
            return _status(405, "MethodNotAllowed", f"{method} on the namespace list")
        current = self.namespaces.get(name)
        if method == "GET":
            if current is None:
                return _status(404, "NotFound", f'namespaces "{name}" not found')
            if current["status"]["phase"] == "Terminating":
                self._polls[name] = self._polls.get(name, 0) + 1
                if self._polls[name] >= self.namespace_polls_to_gone:
                    self.finish_namespace_deletion(name)
            return aiohttp.web.json_response(current)
        if method == "PATCH":
            if current is None:
                if content_type != APPLY:
                    return _status(404, "NotFound", f'namespaces "{name}" not found')
                self.namespaces[name] = current = _namespace_object(body)
                return aiohttp.web.json_response(current, status=201)
            if current["status"]["phase"] == "Terminating":
                return _status(409, "Conflict", f'namespace "{name}" is being terminated')
            labels = {**current["metadata"].get("labels", {}), **body.get("metadata", {}).get("labels", {})}
            current["metadata"]["labels"] = {k: v for k, v in labels.items() if v is not None}
            return aiohttp.web.json_response(current)
        if method == "DELETE":
            if current is None:
                return _status(404, "NotFound", f'namespaces "{name}" not found')
            if current["status"]["phase"] == "Terminating":
                return _status(409, "Conflict", f'Operation cannot be fulfilled on namespaces "{name}": The system '
                                                "is ensuring all content is removed from this namespace.")
            current["status"]["phase"] = "Terminating"
            current["metadata"].setdefault("deletionTimestamp", datetime.now(UTC).isoformat())
            return aiohttp.web.json_response(current)
        return _status(405, "MethodNotAllowed", f"{method} on namespaces/{name}")

    def _delete_collection(self, group: str, version: str, plural: str, namespace: str) -> aiohttp.web.StreamResponse:
        """DELETE of a namespaced collection (deletecollection): every such object of the namespace goes."""
        for (res, ns, _), obj in list(self.objects.items()):
            if (res.group, res.version, res.plural, ns) == (group, version, plural, namespace) and not obj.deleted:
                obj.delete()
        return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"})

    def finish_namespace_deletion(self, name: str) -> None:
        """The namespace controller's work: every object in the namespace goes, then the namespace."""
        for (_, namespace, _), obj in list(self.objects.items()):
            if namespace == name and not obj.deleted:
                obj.delete()
        self.namespaces.pop(name, None)
        self._polls.pop(name, None)


# Collections that teardown deletes before their namespace (`Cluster.delete_namespaces`).
DELETABLE_COLLECTIONS = {("apps", "v1", plural) for plural in ("deployments", "statefulsets", "daemonsets",
                                                               "replicasets")} | {("", "v1", "pods")}


def _namespaced_collection(parts: list[str]) -> tuple[str, str, str, str] | None:
    """(group, version, plural, namespace) of a path to a namespaced collection that DELETE may empty."""
    if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"]:
        found = ("", "v1", parts[4], parts[3])
    elif len(parts) == 6 and parts[0] == "apis" and parts[3] == "namespaces":
        found = (parts[1], parts[2], parts[5], parts[4])
    else:
        return None
    return found if found[:3] in DELETABLE_COLLECTIONS else None


def _namespace_object(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata", {})
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": meta["name"], "labels": dict(meta.get("labels") or {}),
                         "creationTimestamp": datetime.now(UTC).isoformat()},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def _status(code: int, reason: str, message: str) -> aiohttp.web.StreamResponse:
    return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                                      "reason": reason, "message": message, "code": code}, status=code)


class FakeKubernetes:
    """Starts the emulator in its own event loop thread; `call` runs a function inside that loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.emulator = ClusterEmulator()
        self.server = Server(self.emulator)

    def __enter__(self) -> FakeKubernetes:
        self.thread.start()
        self._await(self.emulator.__aenter__())
        self._await(self.server.__aenter__())
        for key, info in RESOURCES.items():
            self.emulator.resources[key] = info
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._await(self.server.__aexit__(None, None, None))
        self._await(self.emulator.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def _await(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()
        return self._await(run())  # type: ignore[no-any-return]

    @property
    def url(self) -> str:
        return str(self.server.url).rstrip("/")

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kubexp", "user": {"token": "kx-test-bearer"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kubexp", "namespace": namespace}}],
        }

    def connection_json(self, namespace: str = "default") -> str:
        return json.dumps({"conn_type": "kubernetes",
                           "extra": {"kube_config": self.kubeconfig(namespace), "namespace": namespace}})

    # -- looking at what the server received and holds --

    def seen(self, method: str | None = None, path_prefix: str = "") -> list[Seen]:
        return self.call(lambda: [s for s in self.emulator.seen
                                  if (method is None or s.method == method) and s.path.startswith(path_prefix)])

    def object(self, res: resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        def get() -> dict[str, Any] | None:
            key = (res, namespace, name)
            if key not in self.emulator.objects or self.emulator.objects[key].deleted:
                return None
            return dict(self.emulator.objects[key].raw)
        return self.call(get)

    def live_objects(self, namespace: str | None = None) -> list[tuple[str, str | None, str]]:
        return self.call(lambda: [(f"{r.group}/{r.version}/{r.plural}".lstrip("/"), ns, name)
                                  for (r, ns, name), obj in self.emulator.objects.items()
                                  if not obj.deleted and (namespace is None or ns == namespace)])

    def namespace(self, name: str) -> dict[str, Any] | None:
        return self.call(lambda: self.emulator.namespaces.get(name))

    # -- playing the controllers --

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.call(lambda: self.emulator.namespaces.__setitem__(
            name, _namespace_object({"metadata": {"name": name, "labels": labels or {}}})))

    def put_object(self, res: resource, namespace: str | None, obj: dict[str, Any]) -> None:
        self.call(lambda: self.emulator.objects.__setitem__((res, namespace, obj["metadata"]["name"]), obj))

    def patch_object(self, res: resource, namespace: str | None, name: str, patch: dict[str, Any]) -> None:
        self.call(lambda: self.emulator.objects[(res, namespace, name)].patch(patch))

    def add_node(self, name: str, ready: bool, reason: str = "", address: str = "127.0.0.1") -> None:
        self.put_object(NODES, None, {
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": _node_conditions(ready, reason),
                       "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
                       "nodeInfo": {"kubeletVersion": "v1.33.1", "kubeProxyVersion": "v1.33.1",
                                    "osImage": "Ubuntu 24.04 LTS", "kernelVersion": "6.8.0-60-generic",
                                    "containerRuntimeVersion": "containerd://2.0.5", "architecture": "amd64",
                                    "operatingSystem": "linux", "bootID": "b-" + name, "machineID": "m-" + name,
                                    "systemUUID": "u-" + name}},
        })

    def set_node_ready(self, name: str, ready: bool, reason: str = "") -> None:
        self.patch_object(NODES, None, name, {"status": {"conditions": _node_conditions(ready, reason)}})

    def set_deployment_status(self, namespace: str, name: str, *, replicas: int, ready: int) -> None:
        self.patch_object(DEPLOYMENTS, namespace, name, {"status": {
            "replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas, "availableReplicas": ready}})

    def set_node_port(self, namespace: str, name: str, node_port: int) -> None:
        def assign() -> None:
            obj = self.emulator.objects[(SERVICES, namespace, name)]
            ports = [dict(port) for port in obj.raw["spec"]["ports"]]
            for port in ports:
                port["nodePort"] = node_port
            obj.patch({"spec": {"ports": ports}})
        self.call(assign)


def _node_conditions(ready: bool, reason: str) -> list[dict[str, str]]:
    return [
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
        {"type": "Ready", "status": "True" if ready else "Unknown",
         "reason": "KubeletReady" if ready else (reason or "NodeStatusUnknown"),
         "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status."},
    ]
