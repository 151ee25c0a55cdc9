"""`kubexp cluster up|down|status|build`: the real single-node Kubernetes on this machine."""

from __future__ import annotations

import json
import sys

import click

from kubexp.cli import main
from kubexp.platform.kubernetes.localcluster import build
from kubexp.platform.kubernetes.localcluster.integration import register_cluster, unregister_cluster
from kubexp.platform.kubernetes.localcluster.node import ClusterError, LocalCluster


@main.group()
def cluster() -> None:
    """A real single-node Kubernetes (API server, etcd, controllers, kubelet, kube-proxy, containerd) on
    127.0.0.1, built from the package registries; its folder is KUBEXP_CLUSTER_DIR (default
    /var/lib/kubexp-cluster)."""


@cluster.command(name="build")
def build_only() -> None:
    """Build (or find cached) the binaries and images without starting anything."""
    try:
        bin_dir = build.build_binaries(click.echo)
        for image in (build.pause_image(bin_dir), build.metrics_server_image(bin_dir),
                      build.app_image(bin_dir, LocalCluster.app_image_name(), click.echo)):
            click.echo(f"image  {image}")
    except build.BuildError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"binaries  {bin_dir}")


@cluster.command()
def up() -> None:
    """Build what is missing, start the cluster, write its kubeconfig, the Airflow connection
    kubexp_kubernetes and the local Prometheus' scrape jobs (idempotent)."""
    node = LocalCluster.from_env()
    try:
        node.up(log=click.echo)
    except (ClusterError, build.BuildError) as exc:
        raise click.ClickException(str(exc)) from None
    for line in register_cluster(node):
        click.echo(line)


@cluster.command()
def down() -> None:
    """Stop the cluster and remove every process, container, mount, interface and iptables chain it made."""
    node = LocalCluster.from_env()
    stopped = node.down(log=click.echo)
    for line in unregister_cluster():
        click.echo(line)
    if not stopped:
        click.echo(f"cluster: nothing was running ({node.root})")


@cluster.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: version, nodes_ready, kubeconfig, ...")
def status(as_json: bool) -> None:
    """Show the cluster's state; exits 0 only while the node is Ready."""
    state = LocalCluster.from_env().status()
    if as_json:
        click.echo(json.dumps(state))
    else:
        click.echo(f"Kubernetes {state['version']}  nodes ready: {state['nodes_ready']}  "
                   f"API server {state['api_server']}")
        click.echo(f"kubeconfig {state['kubeconfig'] or '(none: the cluster is not up)'}")
        for name, pid in state["processes"].items():
            restarts = state["restarts"].get(name)
            click.echo(f"{name:<25} {f'running (pid {pid})' if pid else 'stopped'}"
                       + (f", restarted {restarts}x" if restarts else ""))
    sys.exit(0 if state["nodes_ready"] else 1)
