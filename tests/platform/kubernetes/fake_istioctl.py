"""A stand-in for istioctl (neither istioctl nor helm can be had here), run as a real program.

It logs each call (argv, the KUBECONFIG it was handed and that file's mode) as a JSON line to
$KX_FAKE_TOOL_LOG, and does to the cluster what the real tool's command leaves behind,
through the kubeconfig it got: `install` creates istio-system, istiod (image tag = the
version in $KX_FAKE_ISTIO_VERSION, already rolled out, as istioctl waits for that; an istiod of
another release is replaced) and the istio-ingressgateway NodePort Service (nodePort
$KX_FAKE_ISTIO_NODE_PORT) and Istio's CRDs;
`uninstall --purge` deletes istiod and the gateway. `version` prints the client version.
"""

from __future__ import annotations

import json
import os
import stat
import sys

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

CRDS = ("virtualservices", "gateways", "destinationrules")


def main(argv: list[str]) -> int:
    kubeconfig = os.environ.get("KUBECONFIG", "")
    mode = oct(stat.S_IMODE(os.stat(kubeconfig).st_mode)) if kubeconfig and os.path.exists(kubeconfig) else None
    with open(os.environ["KX_FAKE_TOOL_LOG"], "a") as log:
        log.write(json.dumps({"argv": argv, "kubeconfig": kubeconfig, "mode": mode}) + "\n")
    version = os.environ.get("KX_FAKE_ISTIO_VERSION", "1.22.3")
    if argv[:1] == ["version"]:
        print(json.dumps({"clientVersion": {"version": version, "revision": "fake"}}))
        return 0
    config.load_kube_config()  # from KUBECONFIG, as the real tool does
    core, apps, ext = client.CoreV1Api(), client.AppsV1Api(), client.ApiextensionsV1Api()
    if argv[:1] == ["install"]:
        try:
            core.create_namespace({"metadata": {"name": "istio-system"}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        try:  # an install over another release replaces it, as istioctl does
            apps.delete_namespaced_deployment("istiod", "istio-system")
        except ApiException as exc:
            if exc.status != 404:
                raise
        labels = {"app": "istiod"}
        apps.create_namespaced_deployment("istio-system", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "istiod", "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "discovery", "image": f"docker.io/istio/pilot:{version}"}]}}},
            "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}})
        core.create_namespaced_service("istio-system", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-ingressgateway"},
            "spec": {"type": "NodePort", "selector": {"istio": "ingressgateway"}, "ports": [
                {"name": "status-port", "port": 15021, "nodePort": 31021},
                {"name": "http2", "port": 80, "nodePort": int(os.environ["KX_FAKE_ISTIO_NODE_PORT"])}]}})
        for plural in CRDS:
            ext.create_custom_resource_definition({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.networking.istio.io"},
                "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                         "names": {"plural": plural, "kind": plural.title()}, "versions": []}})
        return 0
    if argv[:1] == ["uninstall"]:
        for delete in (lambda: apps.delete_namespaced_deployment("istiod", "istio-system"),
                       lambda: core.delete_namespaced_service("istio-ingressgateway", "istio-system")):
            try:
                delete()
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return 0
    print(f"fake istioctl: unsupported command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
