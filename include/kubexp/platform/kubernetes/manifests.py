"""Kubernetes and Istio manifests of the application under test, rendered from one scenario.

Pure functions: `render` turns a scenario's parameters plus the suite's `kubernetes`
settings into plain dicts (in apply order), `write_manifests` writes them as YAML files
a user can read and `kubectl apply -f`. The kubernetes platform applies the same dicts.

Settings read from the suite's `kubernetes:` section (all optional):
    namespace           namespace of the app (default "kubexp")
    image               app container image (default "cropapp:0.1.0", built from app/Dockerfile)
    image_pull_policy   default "IfNotPresent"
    node_port           NodePort of the app Service (default 30080; null lets Kubernetes choose)
    app_server          "gunicorn" (default) or "flask" (Flask's threaded server, as the paper's app);
                        the suite's load profile chooses when the section does not
    probe_path          readiness and liveness probe path (default "/healthz"; the paper profile's "/images")
    app_workers         gunicorn workers per pod (default 1)
    app_threads         requests per worker at once (default 4; see app/gunicorn.conf.py)
    istio.gateway_selector   labels of the ingress gateway pods (default {"istio": "ingressgateway"})
    istio.gateway_port       port the ingress gateway listens on (default 80)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

APP_NAME = "cropapp"
APP_PORT = 8000  # the port app/Dockerfile's server binds
ISTIO_API = "networking.istio.io/v1beta1"  # served by Istio 1.5 and every later release
DEFAULTS: dict[str, Any] = {
    "namespace": "kubexp",
    "image": "cropapp:0.1.0",
    "image_pull_policy": "IfNotPresent",
    "node_port": 30080,
    "app_server": "gunicorn",
    "probe_path": "/healthz",
    "app_workers": 1,
    "app_threads": 4,
}
# Kubernetes' own probe defaults, written out so a stored manifest says what ran.
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1,
                  "successThreshold": 1, "failureThreshold": 3}
# The paper's Istio retry policy: up to 3 retries, 2 s each, on any 5xx (section 5.2.1).
ISTIO_RETRIES = {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"}
HPA_CPU_UTILIZATION = 50
REQUIRED_PARAMS = ("pods", "pods_max", "mesh", "memory_limit_mib", "cpu_limit_millicores")


class ManifestError(ValueError):
    """Parameters or settings that cannot be turned into manifests; names the key."""


def render(
    scenario_id: str, params: Mapping[str, Any], settings: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """All objects of one scenario, in apply order (Namespace first). Every dict is fresh."""
    _check(params)
    conf = {**DEFAULTS, **(settings or {})}
    namespace = str(conf["namespace"])
    labels = {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/part-of": "kubexp",
              "kubexp.io/scenario": scenario_id}
    istio = params["mesh"] == "istio"
    objects = [
        namespace_object(namespace, labels, istio),
        deployment(namespace, labels, params, conf),
        service(namespace, labels, conf.get("node_port")),
    ]
    if params["pods_max"] > params["pods"]:
        objects.append(autoscaler(namespace, labels, params["pods"], params["pods_max"]))
    if istio:
        istio_conf = dict(conf.get("istio") or {})
        objects += [gateway(namespace, labels, istio_conf), virtual_service(namespace, labels)]
    return objects


def _check(params: Mapping[str, Any]) -> None:
    missing = [key for key in REQUIRED_PARAMS if key not in params]
    if missing:
        raise ManifestError(
            f"scenario parameters lack {', '.join(missing)}; pass a Scenario's params (defaults applied)")
    for key in ("pods", "pods_max", "memory_limit_mib", "cpu_limit_millicores"):
        if not isinstance(params[key], int) or params[key] < 1:
            raise ManifestError(f"scenario parameter {key}={params[key]!r} must be a positive integer")
    if params["pods_max"] < params["pods"]:
        raise ManifestError(f"pods_max={params['pods_max']} is below pods={params['pods']}")
    if params["mesh"] not in ("native", "istio"):
        raise ManifestError(f"scenario parameter mesh={params['mesh']!r}; allowed: native, istio")


def namespace_object(name: str, labels: dict[str, str], istio: bool) -> dict[str, Any]:
    # Explicitly "disabled" for native: a cluster that had Istio for an earlier scenario
    # must not inject sidecars by some default.
    injection = "enabled" if istio else "disabled"
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {**labels, "istio-injection": injection}}}


def deployment(namespace: str, labels: dict[str, str], params: Mapping[str, Any],
               conf: Mapping[str, Any]) -> dict[str, Any]:
    pod_labels = {**labels, "app": APP_NAME}  # `app` is the label Istio's telemetry keys on
    resources = {"memory": f"{params['memory_limit_mib']}Mi", "cpu": f"{params['cpu_limit_millicores']}m"}
    container = {
        "name": APP_NAME,
        "image": str(conf["image"]),
        "imagePullPolicy": str(conf["image_pull_policy"]),
        "ports": [{"name": "http", "containerPort": APP_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "CROPAPP_SERVER", "value": str(conf["app_server"])},
            {"name": "CROPAPP_WORKERS", "value": str(conf["app_workers"])},
            {"name": "CROPAPP_THREADS", "value": str(conf["app_threads"])},
            # Set here, as a Service named cropapp makes Kubernetes set CROPAPP_PORT=tcp://... otherwise
            {"name": "CROPAPP_HOST", "value": "0.0.0.0"},
            {"name": "CROPAPP_PORT", "value": str(APP_PORT)},
        ],
        # requests = limits: Guaranteed QoS, and the memory limit is what OOM-kills (paper 5.2.1)
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "readinessProbe": health_probe(str(conf["probe_path"])),
        "livenessProbe": health_probe(str(conf["probe_path"])),
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # gunicorn + metrics files
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": APP_NAME, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": params["pods"],
            "selector": {"matchLabels": {"app": APP_NAME}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(APP_PORT),
                                    "prometheus.io/path": "/metrics"},
                },
                "spec": {"containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}]},
            },
        },
    }


def health_probe(path: str = "/healthz") -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, **PROBE_DEFAULTS}


def service(namespace: str, labels: dict[str, str], node_port: int | None) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": APP_PORT, "targetPort": "http", "protocol": "TCP",
                            "appProtocol": "http"}
    if node_port is not None:
        port["nodePort"] = int(node_port)
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": APP_NAME, "namespace": namespace, "labels": dict(labels)},
        "spec": {"type": "NodePort", "selector": {"app": APP_NAME}, "ports": [port]},
    }


def autoscaler(namespace: str, labels: dict[str, str], pods: int, pods_max: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": APP_NAME, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP_NAME},
            "minReplicas": pods,
            "maxReplicas": pods_max,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": HPA_CPU_UTILIZATION}}}],
        },
    }


def gateway(namespace: str, labels: dict[str, str], istio: Mapping[str, Any]) -> dict[str, Any]:
    selector = dict(istio.get("gateway_selector") or {"istio": "ingressgateway"})
    return {
        "apiVersion": ISTIO_API, "kind": "Gateway",
        "metadata": {"name": APP_NAME, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "selector": selector,
            "servers": [{"port": {"number": int(istio.get("gateway_port", 80)), "name": "http", "protocol": "HTTP"},
                         "hosts": ["*"]}],
        },
    }


def virtual_service(namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": ISTIO_API, "kind": "VirtualService",
        "metadata": {"name": APP_NAME, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "hosts": ["*"],
            "gateways": [APP_NAME],
            "http": [{
                "route": [{"destination": {"host": f"{APP_NAME}.{namespace}.svc.cluster.local",
                                           "port": {"number": APP_PORT}}}],
                "retries": dict(ISTIO_RETRIES),
            }],
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """Never writes YAML anchors: the files are for people to read and diff."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def manifest_filename(position: int, obj: Mapping[str, Any]) -> str:
    return f"{position:02d}-{str(obj['kind']).lower()}-{obj['metadata']['name']}.yaml"


def write_manifests(objects: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One YAML file per object, numbered in apply order (`kubectl apply -f out_dir`).

    Manifest files an earlier render left in `out_dir` are removed first (other files stay), so the
    folder applies exactly this scenario."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("[0-9][0-9]-*.yaml"):
        stale.unlink()
    paths = []
    for position, obj in enumerate(objects, start=1):
        path = out_dir / manifest_filename(position, obj)
        path.write_text(yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False))
        paths.append(path)
    return paths
