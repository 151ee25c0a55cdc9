"""What `cluster up` tells the local services: the Airflow connection kubexp_kubernetes and Prometheus'
scrape jobs for the API server, the kubelet (and its cAdvisor) and etcd.

Both live in the services' run folder, so the order of `services up` and `cluster up` does not matter:
Airflow reads connections from `airflow/connections.json` (its local file secrets backend, read at each
lookup), and Prometheus' configuration includes `prometheus/cluster.yml` whenever it is (re)written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import requests
import yaml

from kubexp import settings
from kubexp.platform.kubernetes.localcluster.node import API_PORT, ETCD_METRICS_PORT, NODE_IP, LocalCluster

CONN_ID = "kubexp_kubernetes"
SSH_CONN_ID = "kubexp_cluster_ssh"  # the node, for the etcd step


def connections_file(run_dir: Path | None = None) -> Path:
    return (run_dir or settings.run_dir()) / "airflow" / "connections.json"


def cluster_scrape_file(run_dir: Path | None = None) -> Path:
    return (run_dir or settings.run_dir()) / "prometheus" / "cluster.yml"


def _write_json_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=1)
    partial.replace(path)


def _connections(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text() or "{}"))
    except ValueError as exc:
        raise settings.SettingsError(f"{path}: not a JSON object of Airflow connections ({exc}); "
                                     f"fix or remove the file") from None


def scrape_jobs(node: LocalCluster) -> list[dict[str, Any]]:
    """Prometheus scrape configs for the cluster's API server, kubelet, cAdvisor and etcd."""
    tls = {"ca_file": str(node.pki / "ca.crt"), "cert_file": str(node.pki / "admin.crt"),
           "key_file": str(node.pki / "admin.key")}
    node_label = {"node": "kubexp-node"}
    return [
        {"job_name": "kubernetes-apiserver", "scheme": "https", "tls_config": tls,
         "static_configs": [{"targets": [f"127.0.0.1:{API_PORT}"], "labels": node_label}]},
        {"job_name": "kubelet", "scheme": "https", "tls_config": tls,
         "static_configs": [{"targets": [f"{NODE_IP}:10250"], "labels": node_label}]},
        {"job_name": "kubelet-cadvisor", "scheme": "https", "tls_config": tls, "metrics_path": "/metrics/cadvisor",
         "static_configs": [{"targets": [f"{NODE_IP}:10250"], "labels": node_label}]},
        {"job_name": "etcd", "static_configs": [{"targets": [f"127.0.0.1:{ETCD_METRICS_PORT}"],
                                                 "labels": node_label}]},
    ]


def register_cluster(node: LocalCluster, run_dir: Path | None = None) -> list[str]:
    """Write the connection and the scrape jobs; reload a running local Prometheus."""
    path = connections_file(run_dir)
    connections = _connections(path)
    connections[CONN_ID] = {"conn_type": "kubernetes",
                            "extra": {"kube_config_path": str(node.kubeconfig), "namespace": "default"}}
    connections[SSH_CONN_ID] = node.sshd.connection()
    _write_json_private(path, connections)
    scrape = cluster_scrape_file(run_dir)
    scrape.parent.mkdir(parents=True, exist_ok=True)
    scrape.write_text(yaml.safe_dump(scrape_jobs(node)))
    reloaded = _reload_prometheus(run_dir)
    return [f"airflow connections {CONN_ID} -> {node.kubeconfig}, {SSH_CONN_ID} -> 127.0.0.1:{node.sshd.port} ({path})",
            f"prometheus jobs: apiserver, kubelet, cadvisor, etcd ({scrape}; "
            f"{'reloaded' if reloaded else 'read when kubexp services up starts Prometheus'})"]


def unregister_cluster(run_dir: Path | None = None) -> list[str]:
    lines = []
    path = connections_file(run_dir)
    connections = _connections(path)
    removed = [conn_id for conn_id in (CONN_ID, SSH_CONN_ID) if connections.pop(conn_id, None) is not None]
    if removed:
        _write_json_private(path, connections)
        lines.append(f"airflow connections {', '.join(removed)} removed")
    scrape = cluster_scrape_file(run_dir)
    if scrape.exists():
        scrape.unlink()
        _reload_prometheus(run_dir)
        lines.append("prometheus jobs of the cluster removed")
    return lines


def _reload_prometheus(run_dir: Path | None) -> bool:
    """Rewrite the local Prometheus' configuration and ask it to reload, if it runs."""
    from kubexp.local_services import LocalServices, prometheus_process

    services = LocalServices(root=run_dir or settings.run_dir(), ports=settings.Ports.from_env())
    process = prometheus_process(services.root, services.ports.prometheus)  # rewrites prometheus.yml
    if process.running_pid() is None:
        return False
    try:
        return requests.post(f"http://127.0.0.1:{services.ports.prometheus}/-/reload", timeout=10).ok
    except requests.RequestException:
        return False
