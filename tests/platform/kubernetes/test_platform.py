"""KubernetesPlatform with the real kubernetes client and KubernetesHook against kmock on 127.0.0.1.

The tests play the controllers (node conditions, Deployment status, namespace finalisation)
and assert what the API server received.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_kube import APPLY, CRDS, DEPLOYMENTS, EVENTS, FakeKubernetes
from fake_openstack import FakeOpenStack
from fake_tools import KUBE_CONN_ID, FakeTool, SanityServer
from kmock import resource

from kubexp.platform import create
from kubexp.platform.base import Endpoint, NodeStatus, PlatformError
from kubexp.platform.kubernetes import KubernetesPlatform
from kubexp.platform.kubernetes.cluster import ISTIO_LABEL
from kubexp.platform.kubernetes.manifests import render
from kubexp.suite import Suite, load_suite, parse_suite, suite_files

NAMESPACE = "kx-app"
FAST = {"poll_interval_s": 0.05, "teardown_s": 10, "rollout_s": 10, "node_ready_s": 10, "server_active_s": 10,
        "http_s": 5, "command_s": 60}


def make_suite(tmp_path: Path, kubernetes: dict[str, Any], matrix: dict[str, list[Any]] | None = None,
               **top: Any) -> Suite:
    data = {"suite": "kx-test", "platform": "kubernetes", "cluster": "kx-lab", "repetitions": 1,
            "defaults": {"pods": 2, "pods_max": 3}, "matrix": matrix or {"mesh": ["native", "istio"]},
            "kubernetes": {"conn_id": KUBE_CONN_ID, "namespace": NAMESPACE, "timeouts": FAST, **kubernetes}, **top}
    path = tmp_path / "kx-test.yaml"
    path.write_text(yaml.safe_dump(data))
    return parse_suite(data, path)


def namespace_deletes(kube: FakeKubernetes) -> list[str]:
    """Paths of the DELETEs of namespaces themselves (not of collections in them)."""
    return [s.path for s in kube.seen("DELETE", "/api/v1/namespaces/") if s.path.count("/") == 4]


def scenario(suite: Suite, mesh: str) -> tuple[str, dict[str, Any]]:
    found = next(s for s in suite.scenarios() if s.params["mesh"] == mesh)
    return found.id, found.params


def test_nodes_are_listed_with_their_ready_condition(kube: FakeKubernetes, tmp_path: Path) -> None:
    kube.add_node("worker-1", ready=True)
    kube.add_node("master-1", ready=True)
    kube.add_node("worker-2", ready=False, reason="NodeStatusUnknown")
    platform = create(make_suite(tmp_path, {"ingress_host": "127.0.0.1"}))

    assert isinstance(platform, KubernetesPlatform)
    statuses = platform.check_nodes()

    assert [s.name for s in statuses] == ["master-1", "worker-1", "worker-2"]
    assert statuses[2] == NodeStatus("worker-2", False, "NodeStatusUnknown: Kubelet stopped posting node status.")
    assert all(s.ready for s in statuses[:2])
    assert [s.path for s in kube.seen("GET", "/api/v1/nodes")] == ["/api/v1/nodes"]


def test_reboot_goes_through_openstack_then_waits_for_kubernetes_ready(
        kube: FakeKubernetes, openstack_cloud: FakeOpenStack, tmp_path: Path) -> None:
    kube.add_node("worker-2", ready=False)
    server = openstack_cloud.add_server("k8s-worker-2", polls_to_active=2)
    openstack_cloud.add_server("k8s-worker-1")
    came_back: list[str] = []

    def kubelet_returns(name: str) -> None:  # the node's kubelet posts Ready once the VM is up again
        came_back.append(name)
        kube.set_node_ready(name.removeprefix("k8s-"), True)

    openstack_cloud.on_active = kubelet_returns
    suite = make_suite(tmp_path, {"openstack_cloud": "kx-test",
                                  "openstack": {"server_name_template": "k8s-{node}"}})

    create(suite).reboot_node("worker-2")

    assert server.actions == ["SOFT"] and server.status == "ACTIVE" and came_back == ["k8s-worker-2"]
    calls = [(r.method, r.path) for r in openstack_cloud.requests]
    assert ("POST", "/identity/v3/auth/tokens") in calls
    reboot_at = calls.index(("POST", f"/compute/v2.1/servers/{server.id}/action"))
    assert openstack_cloud.requests[reboot_at].body == {"reboot": {"type": "SOFT"}}
    gets_after = [c for c in calls[reboot_at + 1:] if c == ("GET", f"/compute/v2.1/servers/{server.id}")]
    assert len(gets_after) >= 3  # fetched again after the call, then polled through REBOOT to ACTIVE
    assert all(r.token for r in openstack_cloud.compute_requests())
    assert create(suite).check_nodes() == [NodeStatus("worker-2", True)]
    assert kube.seen("GET", "/api/v1/nodes/worker-2")


def test_reboot_errors_name_the_node(kube: FakeKubernetes, openstack_cloud: FakeOpenStack, tmp_path: Path) -> None:
    openstack_cloud.add_server("worker-3", polls_to_active=10_000)  # never comes back
    openstack_cloud.add_server("worker-4", final_status="ERROR")
    suite = make_suite(tmp_path, {"openstack_cloud": "kx-test", "timeouts": {**FAST, "server_active_s": 0.5}})
    platform = create(suite)

    with pytest.raises(PlatformError, match=r"node worker-3 \(OpenStack server worker-3\): not ACTIVE 0.5 s after"):
        platform.reboot_node("worker-3")
    with pytest.raises(PlatformError, match=r"node worker-4 .*went to ERROR"):
        platform.reboot_node("worker-4")
    with pytest.raises(PlatformError, match=r"node worker-9: no OpenStack server named or with id 'worker-9'"):
        platform.reboot_node("worker-9")


def test_native_deploy_rollout_sanity_and_teardown(kube: FakeKubernetes, sanity_server: SanityServer,
                                                   tmp_path: Path) -> None:
    kube.emulator.namespace_polls_to_gone = 3
    kube.add_namespace("kx-app-old", {"app.kubernetes.io/part-of": "kubexp"})  # left by an earlier attempt
    kube.put_object(DEPLOYMENTS, "kx-app-old", {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "metadata": {"name": "cropapp", "namespace": "kx-app-old"}})
    kube.add_namespace("someone-else")
    suite = make_suite(tmp_path, {"ingress_host": "127.0.0.1", "node_port": sanity_server.port})
    platform = create(suite)
    scenario_id, params = scenario(suite, "native")

    platform.teardown()

    assert kube.namespace("kx-app-old") is None and kube.namespace("someone-else") is not None
    assert kube.live_objects("kx-app-old") == []
    # the namespace, then at once its pods and the controllers that would replace them (the namespace
    # controller empties it only 5 s later), then wait until the namespace is gone
    old = "namespaces/kx-app-old"
    assert [s.path for s in kube.seen("DELETE")] == [
        f"/api/v1/{old}",
        *(f"/apis/apps/v1/{old}/{plural}" for plural in ("deployments", "statefulsets", "daemonsets", "replicasets")),
        f"/api/v1/{old}/pods"]
    assert len(kube.seen("GET", f"/api/v1/{old}")) >= 3  # waited until really gone

    platform.deploy(scenario_id, params)

    applies = [s for s in kube.seen("PATCH") if s.content_type == APPLY]
    expected = render(scenario_id, params, suite.kubernetes)
    assert [body_kind(s.body) for s in applies] == ["Namespace", "Deployment", "Service", "HorizontalPodAutoscaler"]
    assert [s.body for s in applies] == expected
    assert all(s.query["fieldManager"] == ["kubexp"] and s.query["force"] == ["True"] for s in applies)
    assert applies[1].path == f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/cropapp"
    assert kube.namespace(NAMESPACE)["metadata"]["labels"]["istio-injection"] == "disabled"
    assert kube.object(DEPLOYMENTS, NAMESPACE, "cropapp")["spec"]["replicas"] == 2

    assert platform.rollout_ready(params) is False  # no controller has reported anything yet
    kube.set_deployment_status(NAMESPACE, "cropapp", replicas=2, ready=1)
    assert platform.rollout_ready(params) is False
    assert sanity_server.paths == []
    kube.set_deployment_status(NAMESPACE, "cropapp", replicas=2, ready=2)
    assert platform.rollout_ready(params) is True
    assert sanity_server.paths == ["/healthz"]
    assert platform.endpoint() == Endpoint("127.0.0.1", sanity_server.port, "/")

    platform.teardown()

    assert kube.namespace(NAMESPACE) is None
    assert kube.live_objects(NAMESPACE) == []
    platform.teardown()  # idempotent: nothing left, nothing deleted
    assert namespace_deletes(kube) == ["/api/v1/namespaces/kx-app-old", f"/api/v1/namespaces/{NAMESPACE}"]


def test_cleanup_waits_for_the_pods_and_leaves_the_namespace_to_the_next_teardown(kube: FakeKubernetes,
                                                                                 tmp_path: Path) -> None:
    kube.emulator.namespace_polls_to_gone = 3
    kube.add_namespace(NAMESPACE, {"app.kubernetes.io/part-of": "kubexp"})
    kube.put_object(resource("", "v1", "pods"), NAMESPACE, {"apiVersion": "v1", "kind": "Pod",
                                                            "metadata": {"name": "cropapp-1", "namespace": NAMESPACE}})
    platform = create(make_suite(tmp_path, {}))

    platform.remove_sut()

    assert kube.live_objects(NAMESPACE) == []
    assert kube.seen("GET", f"/api/v1/namespaces/{NAMESPACE}/pods")  # waited until no pod was listed
    assert kube.namespace(NAMESPACE) is not None  # still terminating: not waited for
    platform.teardown()
    assert kube.namespace(NAMESPACE) is None


def test_teardown_waits_for_a_namespace_already_terminating(kube: FakeKubernetes, tmp_path: Path) -> None:
    kube.add_namespace(NAMESPACE, {"app.kubernetes.io/part-of": "kubexp"})
    kube.call(lambda: kube.emulator.namespaces[NAMESPACE]["status"].update(phase="Terminating"))  # a crashed run's

    create(make_suite(tmp_path, {})).teardown()

    assert kube.namespace(NAMESPACE) is None
    assert namespace_deletes(kube) == [f"/api/v1/namespaces/{NAMESPACE}"]  # answered 409, then waited


def test_failing_sanity_request_keeps_the_rollout_waiting(kube: FakeKubernetes, sanity_server: SanityServer,
                                                          tmp_path: Path) -> None:
    suite = make_suite(tmp_path, {"ingress_host": "127.0.0.1", "node_port": sanity_server.port,
                                  "sanity_path": "/not-there"})
    platform = create(suite)
    scenario_id, params = scenario(suite, "native")
    platform.deploy(scenario_id, params)
    kube.set_deployment_status(NAMESPACE, "cropapp", replicas=2, ready=2)

    assert platform.rollout_ready(params) is False
    assert sanity_server.paths == ["/not-there"]


def test_the_sanity_request_is_made_again_after_the_load(kube: FakeKubernetes, sanity_server: SanityServer,
                                                         tmp_path: Path) -> None:
    suite = make_suite(tmp_path, {"ingress_host": "127.0.0.1", "node_port": sanity_server.port})
    platform = create(suite)
    scenario_id, params = scenario(suite, "native")
    platform.deploy(scenario_id, params)

    assert platform.sanity_after_load() == (True, f"http://127.0.0.1:{sanity_server.port}/healthz: HTTP 200")
    broken = create(make_suite(tmp_path, {"ingress_host": "127.0.0.1", "node_port": sanity_server.port,
                                          "sanity_path": "/not-there"}))
    ok, detail = broken.sanity_after_load(tries=2)
    assert (ok, detail) == (False, f"http://127.0.0.1:{sanity_server.port}/not-there: HTTP 404")
    assert sanity_server.paths == ["/healthz", "/not-there", "/not-there"]  # asked again before giving up
    platform.teardown()
    ok, detail = platform.sanity_after_load()
    assert not ok and f"namespace {NAMESPACE} does not exist" in detail


def test_istio_installed_for_istio_and_removed_completely_for_native(
        kube: FakeKubernetes, fake_istioctl: FakeTool, sanity_server: SanityServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KX_FAKE_ISTIO_NODE_PORT", str(sanity_server.port))
    kube.put_object(CRDS, None, {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                                 "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
                                 "spec": {"group": "monitoring.coreos.com"}})
    suite = make_suite(tmp_path, {"ingress_host": "127.0.0.1",
                                  "istio": {"version": "1.22.3", "istioctl": str(fake_istioctl.path)}})
    platform = create(suite)
    istio_id, istio_params = scenario(suite, "istio")

    platform.deploy(istio_id, istio_params)

    calls = fake_istioctl.calls()
    assert [c["argv"] for c in calls] == [
        ["version", "--remote=false", "-o", "json"],
        ["install", "--skip-confirmation", "--set", "profile=default",
         "--set", "values.gateways.istio-ingressgateway.type=NodePort"],
    ]
    assert calls[1]["mode"] == "0o600" and not Path(str(calls[1]["kubeconfig"])).exists()  # private, then removed
    assert kube.seen("POST", "/api/v1/namespaces")  # the tool really reached the cluster with that kubeconfig
    assert kube.namespace(NAMESPACE)["metadata"]["labels"]["istio-injection"] == "enabled"
    kinds = [body_kind(s.body) for s in kube.seen("PATCH") if s.content_type == APPLY]
    assert kinds == ["Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "Gateway", "VirtualService"]
    assert kube.object(resource("networking.istio.io", "v1beta1", "virtualservices"), NAMESPACE, "cropapp")

    kube.set_deployment_status(NAMESPACE, "cropapp", replicas=2, ready=2)
    assert platform.rollout_ready(istio_params) is True
    assert platform.endpoint() == Endpoint("127.0.0.1", sanity_server.port, "/")  # the ingress gateway's NodePort

    platform.deploy(istio_id, istio_params)  # already at 1.22.3: no tool runs again
    assert len(fake_istioctl.calls()) == 2

    platform.teardown()

    assert [c["argv"] for c in fake_istioctl.calls()[2:]] == [["uninstall", "--purge", "--skip-confirmation"]]
    deleted = sorted(s.path.rsplit("/", 1)[1] for s in kube.seen("DELETE", "/apis/apiextensions.k8s.io"))
    assert deleted == ["destinationrules.networking.istio.io", "gateways.networking.istio.io",
                       "virtualservices.networking.istio.io"]
    assert kube.object(CRDS, None, "servicemonitors.monitoring.coreos.com") is not None
    assert kube.namespace("istio-system") is None and kube.namespace(NAMESPACE) is None

    native_id, native_params = scenario(suite, "native")
    platform.deploy(native_id, native_params)  # nothing of Istio left: no tool runs
    assert len(fake_istioctl.calls()) == 3
    assert kube.namespace(NAMESPACE)["metadata"]["labels"]["istio-injection"] == "disabled"


def test_another_release_with_the_pinned_version_as_prefix_is_replaced(
        kube: FakeKubernetes, fake_istioctl: FakeTool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KX_FAKE_ISTIO_NODE_PORT", "31080")
    kube.add_namespace("istio-system", {ISTIO_LABEL: "true"})  # installed by kubexp before
    put_istiod(kube, "1.22.30")
    platform = create(make_suite(tmp_path, {"istio": {"version": "1.22.3", "istioctl": str(fake_istioctl.path)}}))
    assert platform.istio.installed_version() == "1.22.30"

    facts = platform.istio.ensure("istio")

    assert [c["argv"][0] for c in fake_istioctl.calls()] == ["version", "install"]  # 1.22.30 is not 1.22.3
    assert facts == {"mesh": "istio", "istio_version": "1.22.3", "changed": True, "replaced": "1.22.30"}
    assert platform.istio.ensure("istio")["changed"] is False  # now it is the pinned release


def put_istiod(kube: FakeKubernetes, version: str) -> None:
    labels = {"app": "istiod"}
    kube.put_object(DEPLOYMENTS, "istio-system", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "istiod", "namespace": "istio-system",
                                                                    "generation": 1},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "discovery", "image": f"docker.io/istio/pilot:{version}"}]}}},
        "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}})


def test_teardown_deletes_only_what_kubexp_created(kube: FakeKubernetes, fake_istioctl: FakeTool, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A suite naming a namespace kubexp did not create, on a cluster whose Istio someone else installed:
    teardown used to delete that namespace, Istio and every istio.io CRD."""
    kube.add_namespace("team-prod", {"owner": "team"})
    kube.add_namespace("istio-system")
    put_istiod(kube, "1.22.3")
    kube.put_object(CRDS, None, {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                                 "metadata": {"name": "gateways.networking.istio.io"},
                                 "spec": {"group": "networking.istio.io"}})
    suite = make_suite(tmp_path, {"namespace": "team-prod",
                                  "istio": {"version": "1.22.3", "istioctl": str(fake_istioctl.path)}})
    platform = create(suite)

    platform.teardown()

    assert kube.seen("DELETE") == [] and fake_istioctl.calls() == []
    assert kube.namespace("team-prod") is not None and kube.namespace("istio-system") is not None
    assert kube.object(CRDS, None, "gateways.networking.istio.io") is not None
    assert "team-prod was not created by kubexp" in caplog.text
    native_id, native_params = scenario(suite, "native")
    with pytest.raises(PlatformError, match=r"kubernetes.namespace 'team-prod' exists and kubexp did not create it"):
        platform.deploy(native_id, native_params)
    assert [s for s in kube.seen("PATCH") if s.content_type == APPLY] == []  # nothing applied into it

    other = create(make_suite(tmp_path, {"istio": {"version": "1.22.3", "istioctl": str(fake_istioctl.path)}}))
    assert other.istio.ensure("istio")["installed_by_kubexp"] is False  # the pinned release: used as it is
    with pytest.raises(PlatformError, match=r"Istio 1.22.3 in namespace istio-system was not installed by kubexp"):
        other.istio.ensure("native")
    newer = create(make_suite(tmp_path, {"istio": {"version": "1.23.0", "istioctl": str(fake_istioctl.path)}}))
    with pytest.raises(PlatformError, match=r"never replaces or removes it; upgrade it to 1.23.0 yourself"):
        newer.istio.ensure("istio")
    assert kube.seen("DELETE") == [] and fake_istioctl.calls() == []


def test_istioctl_of_another_version_is_refused(kube: FakeKubernetes, fake_istioctl: FakeTool, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KX_FAKE_ISTIO_VERSION", "1.21.0")
    suite = make_suite(tmp_path, {"istio": {"version": "1.22.3", "istioctl": str(fake_istioctl.path)}})
    istio_id, params = scenario(suite, "istio")
    with pytest.raises(PlatformError, match=r"istioctl is version 1.21.0, but kubernetes.istio.version pins 1.22.3"):
        create(suite).deploy(istio_id, params)
    assert [c["argv"][0] for c in fake_istioctl.calls()] == ["version"]


def test_events_come_from_the_app_and_istio_namespaces(kube: FakeKubernetes, tmp_path: Path) -> None:
    t0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)

    def event(namespace: str, name: str, reason: str, obj: str, seconds: int) -> dict[str, Any]:
        at = (t0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {"kind": "Pod", "name": obj, "namespace": namespace}, "reason": reason,
                "message": f"{reason} of {obj}", "type": "Warning", "firstTimestamp": at, "lastTimestamp": at,
                "count": 1, "source": {"component": "kubelet"}}

    kube.put_object(EVENTS, NAMESPACE, event(NAMESPACE, "e1", "Unhealthy", "cropapp-a", 7))
    kube.put_object(EVENTS, "istio-system", event("istio-system", "e2", "BackOff", "istio-ingressgateway-x", 9))
    kube.put_object(EVENTS, "elsewhere", event("elsewhere", "e3", "BackOff", "other", 8))
    platform = create(make_suite(tmp_path, {"istio": {"version": "1.22.3"}}))

    found = platform.events(t0, t0 + timedelta(seconds=60), t0)

    assert [(e.t, e.kind, e.source) for e in found] == [(7, "Unhealthy", "kubernetes"), (9, "BackOff", "kubernetes")]
    assert "cropapp-a" in found[0].obj and "istio-ingressgateway-x" in found[1].obj
    listed = {s.path for s in kube.seen("GET") if s.path.endswith("/events")}
    assert listed == {f"/api/v1/namespaces/{ns}/events" for ns in (NAMESPACE, "istio-system", "kube-system")}


def test_fingerprint_names_the_cluster(kube: FakeKubernetes, tmp_path: Path) -> None:
    kube.add_node("worker-1", ready=True)
    facts = create(make_suite(tmp_path, {"istio": {"version": "1.22.3"}})).fingerprint()
    assert facts["server_version"] == "v1.33.1-kmock" and facts["cluster"] == "kx-lab"
    assert facts["nodes"][0]["name"] == "worker-1" and facts["nodes"][0]["kubelet"] == "v1.33.1"
    assert facts["istio"] == {"installer": "istioctl", "pinned_version": "1.22.3", "installed_version": None}


def test_unreachable_cluster_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "gone",
                  "clusters": [{"name": "gone", "cluster": {"server": "http://127.0.0.1:1"}}],
                  "users": [{"name": "u", "user": {"token": "t0ken"}}],
                  "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}]}
    monkeypatch.setenv(f"AIRFLOW_CONN_{KUBE_CONN_ID.upper()}",
                       json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig}}))
    with pytest.raises(PlatformError, match=rf"Kubernetes \({KUBE_CONN_ID}\): list nodes failed"):
        create(make_suite(tmp_path, {})).check_nodes()


def test_settings_errors_name_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"kx-test.yaml: kubernetes.istio.installer: 'kubectl'"):
        create(make_suite(tmp_path, {"istio": {"installer": "kubectl"}}))
    with pytest.raises(ValueError, match=r"kx-test.yaml: kubernetes.etcd.profile.stop: must be a non-empty list"):
        create(make_suite(tmp_path, {"etcd": {"profile": {"stop": "systemctl stop etcd"}}}))
    platform = create(make_suite(tmp_path, {}, load={"servers": ["10.0.0.7:1099", "10.0.0.8:1099"],
                                                     "ssh_conn_ids": ["a"]}))
    with pytest.raises(PlatformError, match=r"kx-test.yaml: load.ssh_conn_ids: 1 connection ids for 2 servers"):
        platform.restart_load_servers()


def test_every_shipped_suite_gives_a_platform() -> None:
    for path in suite_files():
        suite = load_suite(path)
        if suite.platform == "kubernetes":
            assert isinstance(create(suite), KubernetesPlatform), path


def body_kind(body: Any) -> str:
    return str(body["kind"])
