"""Every Kubernetes step of the DAG against the real single-node cluster (kubexp cluster up).

test_down.py, collected last in this folder, stops the cluster and checks that nothing is left behind.
"""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import pytest
from click.testing import CliRunner

from kubexp.cli import main
from kubexp.platform.base import Unsupported
from kubexp.platform.kubernetes import events as kube_events
from kubexp.platform.kubernetes.config import parse_settings
from kubexp.platform.kubernetes.localcluster import build
from kubexp.platform.kubernetes.localcluster.node import NODE_IP, LocalCluster
from kubexp.platform.kubernetes.platform import KubernetesPlatform, sanity_request
from kubexp.platform.local.appserver import DEFAULT_CROP_PATH

pytestmark = pytest.mark.kube_real

NAMESPACE = "kubexp-real-test"
# The Airflow connections the session fixture `local_cluster` defines (env form) for this cluster.
KUBE_CONN_ID, SSH_CONN_ID = "kubexp_real_cluster", "kubexp_real_cluster_ssh"


def platform_for(node: LocalCluster, **section: Any) -> KubernetesPlatform:
    settings = parse_settings({"conn_id": KUBE_CONN_ID, "namespace": NAMESPACE,
                               "timeouts": {"rollout_s": 240, "teardown_s": 240, "poll_interval_s": 1},
                               "etcd": {"manage": False}, **section}, path="tests/kube_real")
    return KubernetesPlatform(settings, cluster_name="kube-real", echo=print)


def scenario(**params: Any) -> dict[str, Any]:
    return {"pods": 1, "pods_max": 1, "mesh": "native", "memory_limit_mib": 256, "cpu_limit_millicores": 500,
            **params}


def deploy_and_wait(platform: KubernetesPlatform, params: dict[str, Any], timeout_s: float = 240) -> None:
    platform.teardown()
    platform.deploy("real-test", params)
    deadline = time.monotonic() + timeout_s
    while not platform.rollout_ready(params):
        assert time.monotonic() < deadline, "rollout not ready in time"
        time.sleep(1)


def load(url: str, threads: int, seconds: float) -> Counter[str]:
    """Closed-loop GETs from `threads` threads for `seconds`; counts answers by status (or error kind)."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    end = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < end:
            try:
                with opener.open(url, timeout=10) as answer:
                    answer.read()
                    outcome = str(answer.status)
            except urllib.error.HTTPError as exc:
                outcome = str(exc.code)
            except OSError:
                outcome = "connection error"
            with lock:
                outcomes[outcome] += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return outcomes


def wait_answering(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not (answer := sanity_request(url, 10))[0]:
        assert time.monotonic() < deadline, answer
        time.sleep(0.5)


def kubectl(node: LocalCluster, *args: str) -> Any:
    done = subprocess.run([str(node.root / "bin" / "kubectl"), "--kubeconfig", str(node.kubeconfig), *args,
                           "-o", "json"], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_status_reports_a_ready_node_of_the_pinned_version(local_cluster: LocalCluster) -> None:
    result = CliRunner().invoke(main, ["cluster", "status", "--json"])
    assert result.exit_code == 0, result.output
    state = json.loads(result.output)
    assert state["nodes_ready"] == 1
    assert state["version"] == build.KUBERNETES_VERSION
    assert stat.S_IMODE(local_cluster.kubeconfig.stat().st_mode) == 0o600
    # The version stamped into the binaries is what the API server reports and what client tools read.
    platform = platform_for(local_cluster)
    assert platform.cluster.server_version().startswith(build.KUBERNETES_VERSION)
    nodes = platform.check_nodes()
    assert [(n.name, n.ready) for n in nodes] == [("kubexp-node", True)]
    for key in (local_cluster.pki / "ca.key", local_cluster.pki / "etcd" / "server.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_killed_controller_manager_comes_back_as_on_a_real_node(local_cluster: LocalCluster) -> None:
    supervisor = next(p for p in local_cluster.recorded() if p.name == "kube-controller-manager").running_pid()
    assert supervisor is not None
    before = CliRunner().invoke(main, ["cluster", "status", "--json"])
    restarts = json.loads(before.output)["restarts"]["kube-controller-manager"]
    [component] = psutil.Process(supervisor).children()
    component.kill()
    deadline = time.monotonic() + 60
    while True:
        state = json.loads(CliRunner().invoke(main, ["cluster", "status", "--json"]).output)
        children = psutil.Process(supervisor).children()
        if state["restarts"]["kube-controller-manager"] == restarts + 1 and children and children[0] != component:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    # it serves again: a new Deployment's ReplicaSet is created only by a running controller-manager
    platform = platform_for(local_cluster)
    deploy_and_wait(platform, scenario())
    platform.teardown()


def test_nothing_listens_beyond_loopback_and_the_node_address(local_cluster: LocalCluster) -> None:
    recorded = [psutil.Process(pid) for pid in {proc.running_pid() for proc in local_cluster.recorded()} - {None}]
    assert len(recorded) == len(local_cluster.recorded())
    pids = {proc.pid for top in recorded for proc in (top, *top.children(recursive=True))}
    family: set[str] = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            family.add(conn.laddr.ip)
    assert family and family <= {"127.0.0.1", NODE_IP}, family


def test_deploy_rollout_sanity_request_through_the_node_port_and_teardown(local_cluster: LocalCluster) -> None:
    platform = platform_for(local_cluster)
    params = scenario(pods=2, pods_max=2)
    deploy_and_wait(platform, params)
    endpoint = platform.endpoint()
    assert endpoint.host == NODE_IP
    ok, detail = sanity_request(f"http://{endpoint.host}:{endpoint.port}/healthz", 10)
    assert ok, detail
    # kube-proxy also answers the NodePort on loopback, where the load generator of kube-local aims
    # (its rules for a new endpoint follow within a sync period).
    wait_answering(f"http://127.0.0.1:{endpoint.port}{DEFAULT_CROP_PATH}")
    # Server-side apply again is a no-op on the same manifests (the fields are owned by kubexp).
    before = kubectl(local_cluster, "-n", NAMESPACE, "get", "deployment")["items"][0]
    platform.deploy("real-test", params)
    deployment = kubectl(local_cluster, "-n", NAMESPACE, "get", "deployment", "--show-managed-fields")["items"][0]
    managers = {(entry["manager"], entry["operation"]) for entry in deployment["metadata"]["managedFields"]}
    assert ("kubexp", "Apply") in managers
    assert deployment["metadata"]["generation"] == before["metadata"]["generation"]
    assert deployment["status"]["readyReplicas"] == 2
    platform.remove_sut()  # what cleanup runs: no pod left, the namespace's own deletion not waited for
    assert kubectl(local_cluster, "-n", NAMESPACE, "get", "pods")["items"] == []
    platform.teardown()
    assert platform.cluster.namespace(NAMESPACE) is None


def test_teardown_leaves_a_namespace_kubexp_did_not_create(local_cluster: LocalCluster) -> None:
    """A suite naming an existing namespace (here one made with kubectl): teardown used to delete it."""
    foreign = "kubexp-real-foreign"
    kubectl(local_cluster, "create", "namespace", foreign)
    try:
        platform = platform_for(local_cluster, namespace=foreign)
        platform.teardown()
        assert platform.cluster.namespace(foreign) is not None
        with pytest.raises(Unsupported, match=f"kubernetes.namespace '{foreign}' exists and kubexp did not create"):
            platform.deploy("real-test", scenario())
        assert kubectl(local_cluster, "-n", foreign, "get", "deployments")["items"] == []
    finally:
        subprocess.run([str(local_cluster.root / "bin" / "kubectl"), "--kubeconfig", str(local_cluster.kubeconfig),
                        "delete", "namespace", foreign, "--wait=false"], capture_output=True, timeout=60, check=True)


def test_a_64_mib_replica_is_oom_killed_under_load_and_seen_in_the_events(local_cluster: LocalCluster) -> None:
    # Flask's threaded server, as the paper's app: one process, so an OOM kill ends the container
    # (under gunicorn the kernel may kill a worker, which the master replaces without a restart).
    platform = platform_for(local_cluster, app_server="flask")
    params = scenario(memory_limit_mib=64)
    deploy_and_wait(platform, params)
    port = platform.endpoint().port
    wait_answering(f"http://127.0.0.1:{port}{DEFAULT_CROP_PATH}")
    # The image starts the server the manifests name (it used to start gunicorn whatever they said).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/healthz") as answer:
        assert answer.headers["Server"].startswith("Werkzeug/"), answer.headers["Server"]
    # Crops of the whole 2000x1500 image: each holds tens of MiB at once, so 8 at a time pass 64 MiB at
    # once (smaller crops can leave the process stalled in reclaim at the limit without a kill).
    start = datetime.now(UTC)
    outcomes = load(f"http://127.0.0.1:{port}/landscape.png?left=0&top=0&right=2000&bottom=1500", threads=8,
                    seconds=40)
    end = datetime.now(UTC) + timedelta(seconds=5)
    time.sleep(5)
    pods = kubectl(local_cluster, "-n", NAMESPACE, "get", "pods")["items"]
    statuses = [s for pod in pods for s in pod["status"].get("containerStatuses", [])]
    restarts = sum(s["restartCount"] for s in statuses)
    reasons = {s.get("lastState", {}).get("terminated", {}).get("reason") for s in statuses}
    assert restarts >= 1 and "OOMKilled" in reasons, (outcomes, [(s["restartCount"], s["state"], s.get("lastState"))
                                                                 for s in statuses])
    events = kube_events.collect(KUBE_CONN_ID, [NAMESPACE], start - timedelta(seconds=5), end, start)
    kinds = Counter(event.kind for event in events)
    assert kinds["OOMKilled"] >= 1, kinds
    assert sum(outcomes.values()) > 0, outcomes
    platform.teardown()


def test_the_hpa_scales_out_under_load_with_metrics_server(local_cluster: LocalCluster) -> None:
    platform = platform_for(local_cluster)
    params = scenario(pods=1, pods_max=3, cpu_limit_millicores=200)
    deploy_and_wait(platform, params)
    endpoint = platform.endpoint()
    url = f"http://127.0.0.1:{endpoint.port}{DEFAULT_CROP_PATH}"
    desired, deadline = 1, time.monotonic() + 150
    while desired <= 1 and time.monotonic() < deadline:
        load(url, threads=4, seconds=10)
        hpa = kubectl(local_cluster, "-n", NAMESPACE, "get", "hpa")["items"][0]
        desired = hpa["status"].get("desiredReplicas", 1)
    assert desired > 1, hpa["status"]
    raw = subprocess.run([str(local_cluster.root / "bin" / "kubectl"), "--kubeconfig", str(local_cluster.kubeconfig),
                          "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(raw.stdout)["items"], "metrics-server reports no pod metrics"
    platform.teardown()


def test_etcd_moves_between_ram_disk_and_disk_over_ssh_with_the_api_server_healthy(
        local_cluster: LocalCluster) -> None:
    platform = platform_for(local_cluster, etcd={
        "members": [{**member, "ssh_conn_id": SSH_CONN_ID} for member in local_cluster.etcd_members()],
        "profile": local_cluster.etcd_profile(),
    })
    marker = f"kubexp-etcd-move-{int(time.time())}"
    subprocess.run([str(local_cluster.root / "bin" / "kubectl"), "--kubeconfig", str(local_cluster.kubeconfig),
                    "-n", "default", "create", "configmap", marker], check=True, capture_output=True)
    for storage, filesystem, delay_ms in (("ramdisk", "tmpfs", 0), ("disk", None, 0), ("disk", None, 5)):
        facts = platform.configure_etcd({"etcd_storage": storage, "etcd_fsync_delay_ms": delay_ms})
        member = facts["members"][0]
        assert member["storage"] == storage and member["moved"] == (delay_ms == 0), member
        assert (member["filesystem"] == "tmpfs") == (filesystem == "tmpfs"), member
        # etcd's own WAL fsync histogram over the probe writes: the injected delay shows in its mean; a RAM
        # disk's is about 0.
        assert member["fsync_over"] == "probe writes" and member["restarted"] is True, member
        if delay_ms:
            assert member["wal_fsync_mean_ms"] >= delay_ms, member
        elif storage == "ramdisk":
            assert member["wal_fsync_mean_ms"] < 1, member
        assert member["version"] == build.ETCD_VERSION.lstrip("v")
        deadline = time.monotonic() + 60
        while not local_cluster.api_healthy():
            assert time.monotonic() < deadline, "API server not ready after the etcd move"
            time.sleep(1)
        # The data moved with etcd: an object written before both moves is still there.
        kubectl(local_cluster, "-n", "default", "get", "configmap", marker)
    platform.configure_etcd({"etcd_storage": "disk", "etcd_fsync_delay_ms": 0})
    subprocess.run([str(local_cluster.root / "bin" / "kubectl"), "--kubeconfig", str(local_cluster.kubeconfig),
                    "-n", "default", "delete", "configmap", marker], check=True, capture_output=True)

