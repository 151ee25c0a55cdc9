"""The `kubernetes` platform: a real cluster through a kubeconfig, OpenStack for reboots, SSH for etcd.

Each DAG task builds this object afresh from the suite, so nothing is kept between calls:
whatever a later step needs (the mesh in use, the NodePort) is read back from the cluster.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from kubexp.platform.base import Endpoint, NodeStatus, Platform, PlatformError, Unsupported, etcd_fsync_delay_ms
from kubexp.platform.kubernetes.cluster import MANAGED_LABEL, MANAGED_VALUE, Cluster
from kubexp.platform.kubernetes.config import DEFAULT_CONN_ID, KubernetesSettings, SettingsError, settings_from_suite
from kubexp.platform.kubernetes.etcd_ssh import EtcdReconfigurer
from kubexp.platform.kubernetes.istio import Istio
from kubexp.platform.kubernetes.loadhosts import load_hosts, restart_load_servers
from kubexp.platform.kubernetes.openstack import OpenStackRebooter
from kubexp.platform.kubernetes.queries import KUBERNETES_QUERIES, RATE_WINDOW
from kubexp.records import PlatformEvent

if TYPE_CHECKING:
    from kubexp.collect import Collector
    from kubexp.suite import Suite

log = logging.getLogger(__name__)


class KubernetesPlatform(Platform):
    name = "kubernetes"
    default_queries = KUBERNETES_QUERIES
    rate_window = RATE_WINDOW
    required_queries = ("replicas_available",)  # kube-state-metrics

    def __init__(self, settings: KubernetesSettings, cluster_name: str = "kubernetes", *,
                 echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.cluster_name = cluster_name
        self.echo = echo

    @classmethod
    def from_suite(cls, suite: Suite) -> KubernetesPlatform:
        settings = settings_from_suite(suite)
        for scenario in suite.scenarios():
            delay = etcd_fsync_delay_ms(scenario.params)
            if delay > 0 and not (settings.etcd_manage and settings.etcd_profile.set_fsync_delay):
                raise SettingsError(
                    f"{suite.path}: scenario {scenario.index} ({scenario.id}) sets etcd_fsync_delay_ms={delay:g}, "
                    f"which needs kubernetes.etcd.profile.set_fsync_delay (a command that makes etcd delay its "
                    f"fsyncs, as the local cluster's etcd-service has); on a cluster with a slow disk use "
                    f"etcd_storage: disk on that disk and etcd_fsync_delay_ms: 0")
        return cls(settings, cluster_name=suite.cluster)

    @classmethod
    def planned_endpoint(cls, suite: Suite) -> Endpoint:
        """kubernetes.ingress_host (else 127.0.0.1) and the app's NodePort (kubernetes.node_port, else the
        manifests' default)."""
        from kubexp.platform.kubernetes.manifests import DEFAULTS

        port = suite.kubernetes.get("node_port") or DEFAULTS["node_port"]
        return Endpoint(str(suite.kubernetes.get("ingress_host") or "127.0.0.1"), int(port))

    @classmethod
    def lease_key(cls, suite: Suite) -> str:
        """The connection, not its namespace: teardown removes every kubexp namespace and Istio of its cluster."""
        return f"kubernetes:{suite.kubernetes.get('conn_id') or DEFAULT_CONN_ID}"

    @cached_property
    def cluster(self) -> Cluster:
        return Cluster(self.settings.conn_id, field_manager=self.settings.field_manager,
                       poll_interval_s=self.settings.timeouts.poll_interval_s)

    @cached_property
    def istio(self) -> Istio:
        t = self.settings.timeouts
        return Istio(self.settings.istio, self.cluster, timeout_s=t.rollout_s, command_timeout_s=t.command_s)

    # -- nodes --

    def check_nodes(self) -> list[NodeStatus]:
        return self.cluster.nodes()

    def reboot_node(self, node: str) -> None:
        warning = self.reboot_warning(node)
        if warning:
            log.warning("%s", warning)
        t = self.settings.timeouts
        rebooter = OpenStackRebooter(self.settings.openstack, active_timeout_s=t.server_active_s,
                                     interval_s=t.poll_interval_s)
        facts = rebooter.reboot(node)
        log.info("node %s: OpenStack server %s is %s again (%s); waiting for Kubernetes Ready",
                 node, facts["server"], facts["status"], facts["action"])
        self.cluster.wait_node_ready(node, timeout_s=t.node_ready_s)

    def node_ready(self, node: str) -> bool:
        """One poke for a sensor waiting on a node after its reboot."""
        return self.cluster.node_ready(node)

    # -- teardown, etcd, deploy --

    def teardown(self) -> None:
        """Delete every namespace kubexp created (labelled part-of=kubexp: this attempt's and those an earlier
        one left), wait until gone; remove Istio too if kubexp installed it, unless
        kubernetes.istio.remove_on_teardown is false. Nothing else is deleted, whatever the suite names."""
        self._delete(until_pods_gone=False)

    def remove_sut(self) -> None:
        """As teardown, but waits only until no pod is left in those namespaces: kube-controller-manager
        finishes a namespace's deletion 5 s or more after it began, and the next teardown waits for that."""
        self._delete(until_pods_gone=True)

    def _delete(self, until_pods_gone: bool) -> None:
        own = self.cluster.namespace(self.settings.namespace)
        if own is not None and not Cluster.is_managed(own):
            log.warning("teardown: namespace %s was not created by kubexp (no label %s=%s): left alone",
                        self.settings.namespace, MANAGED_LABEL, MANAGED_VALUE)
        self.cluster.delete_namespaces(self.cluster.managed_namespaces(), timeout_s=self.settings.timeouts.teardown_s,
                                       until_pods_gone=until_pods_gone)
        if self.settings.istio.remove_on_teardown:
            self.istio.remove()

    def reboot_warning(self, node: str) -> str | None:
        """Said (logged, and recorded by the reboot step) before a node running an etcd member on the RAM disk
        is rebooted."""
        reconfigurer = self._etcd()
        return reconfigurer.ramdisk_warning(node) if reconfigurer else None

    def start_stopped_etcd(self) -> list[str]:
        reconfigurer = self._etcd()
        return reconfigurer.start_stopped() if reconfigurer else []

    def _etcd(self) -> EtcdReconfigurer | None:
        if not (self.settings.etcd_manage and self.settings.etcd_members):
            return None
        return EtcdReconfigurer(self.settings.etcd_members, self.settings.etcd_profile,
                                dry_run=self.settings.etcd_dry_run, echo=self.echo,
                                command_timeout_s=self.settings.timeouts.command_s,
                                restart=self.settings.etcd_restart)

    def configure_etcd(self, params: Mapping[str, Any], tag: str = "manual") -> dict[str, Any]:
        storage = str(params.get("etcd_storage", "ramdisk"))
        fsync_delay_ms = etcd_fsync_delay_ms(params)
        if not self.settings.etcd_manage:
            return {"storage": "unchanged", "requested": storage, "managed": False}
        # With kubernetes.etcd.dry_run the commands are printed, none runs; "dry_run": true in the result
        # makes the experiment's etcd step stop the run (kubexp.experiment.configure_etcd).
        if not self.settings.etcd_members:
            raise PlatformError("kubernetes.etcd.members is empty: list the etcd members (name, ssh_conn_id) to move "
                                "etcd's data, or set kubernetes.etcd.manage: false (etcd_storage is then not applied)")
        reconfigurer = self._etcd()
        assert reconfigurer is not None
        return {**reconfigurer.switch(storage, fsync_delay_ms, tag), "managed": True}

    def deploy(self, scenario_id: str, params: Mapping[str, Any]) -> None:
        from kubexp.platform.kubernetes.manifests import ManifestError, render

        existing = self.cluster.namespace(self.settings.namespace)
        if existing is not None and not Cluster.is_managed(existing):
            raise Unsupported(
                f"{self.settings.path}: kubernetes.namespace {self.settings.namespace!r} exists and kubexp did not "
                f"create it (no label {MANAGED_LABEL}={MANAGED_VALUE}): kubexp deploys only into a namespace of its "
                f"own, which teardown deletes; name a namespace that does not exist in kubernetes.namespace")
        mesh = self.istio.ensure(str(params.get("mesh", "native")))
        log.info("mesh: %s", mesh)
        try:
            objects = render(scenario_id, params, self.settings.raw)
        except ManifestError as exc:
            raise PlatformError(f"scenario {scenario_id}: cannot render the manifests ({exc})") from exc
        applied = self.cluster.apply(objects)
        log.info("applied %s", ", ".join(applied))

    def rollout_ready(self, params: Mapping[str, Any]) -> bool:
        from kubexp.platform.kubernetes.manifests import APP_NAME

        state = self.cluster.rollout(self.settings.namespace, APP_NAME, int(params["pods"]))
        if not state.ready:
            log.info("rollout: %s", state.detail)
            return False
        endpoint = self.endpoint()
        probe = Endpoint(endpoint.host, endpoint.port, self.settings.sanity_path, endpoint.scheme)
        ok, detail = sanity_request(probe.url, self.settings.timeouts.http_s)
        log.info("rollout: %s; sanity request %s: %s", state.detail, probe.url, detail)
        return ok

    def sanity_after_load(self, tries: int = 3) -> tuple[bool, str]:
        """The rollout's sanity request after the load (up to `tries`, 1 s apart): did the SUT come through it?"""
        try:
            endpoint = self.endpoint()
        except PlatformError as exc:
            return False, str(exc)
        url = Endpoint(endpoint.host, endpoint.port, self.settings.sanity_path, endpoint.scheme).url
        for attempt in range(tries):
            ok, detail = sanity_request(url, self.settings.timeouts.http_s)
            if ok:
                break
            if attempt < tries - 1:
                time.sleep(1)
        log.info("sanity request after the load %s: %s", url, detail)
        return ok, f"{url}: {detail}"

    def endpoint(self) -> Endpoint:
        from kubexp.platform.kubernetes.manifests import APP_NAME

        host = self.settings.ingress_host or self.cluster.first_node_address()
        namespace = self.cluster.namespace(self.settings.namespace)
        if namespace is None:
            raise PlatformError(f"namespace {self.settings.namespace} does not exist: deploy the scenario first")
        if namespace["labels"].get("istio-injection") == "enabled":
            istio = self.settings.istio
            port = self.cluster.node_port(istio.namespace, istio.ingress_service, istio.ingress_port)
        else:
            port = self.cluster.node_port(self.settings.namespace, APP_NAME, "http")
        return Endpoint(host=str(host), port=port)

    def events(self, start: datetime, end: datetime, t0: datetime) -> list[PlatformEvent]:
        """Events of the app's namespace (and Istio's) in [start, end], t relative to t0 (the load start)."""
        from kubexp.platform.kubernetes import events

        namespaces = [self.settings.namespace]
        if self.settings.istio.version:
            namespaces.append(self.settings.istio.namespace)
        return list(events.collect(self.settings.conn_id, namespaces, start, end, t0))

    def collectors(self, suite: Suite) -> list[Collector]:
        """The namespaces' Events, and etcd's log over SSH from the suite's sources (kubexp.platform.kubernetes.
        etcd_log)."""
        from kubexp.collect import Events
        from kubexp.platform.kubernetes import etcd_log

        return [Events("Kubernetes events", self.events), etcd_log.RemoteEtcdLog(etcd_log.sources_from_suite(suite))]

    def restart_load_servers(self) -> list[str]:
        """Restart the remote JMeter servers (load.servers + load.ssh_conn_ids); their 'host:port' list."""
        t = self.settings.timeouts
        try:
            hosts = load_hosts(self.settings.load, where=f"{self.settings.path}: load")
        except ValueError as exc:
            raise PlatformError(str(exc)) from exc
        return restart_load_servers(hosts, self.settings.load_host_settings,
                                    timeout_s=t.load_server_s, interval_s=min(t.poll_interval_s, 1.0), echo=self.echo)

    def fingerprint(self) -> dict[str, Any]:
        s = self.settings
        return {
            "platform": self.name, "cluster": self.cluster_name, "conn_id": s.conn_id, "namespace": s.namespace,
            "server_version": self.cluster.server_version(), "nodes": self.cluster.node_facts(),
            "istio": {"installer": s.istio.installer, "pinned_version": s.istio.version,
                      "installed_version": self.istio.installed_version()},
            "etcd": {"managed": s.etcd_manage, "members": [m.name for m in s.etcd_members], "restart": s.etcd_restart,
                     "stop": list(s.etcd_profile.stop), "start": list(s.etcd_profile.start)},
            "openstack": {"cloud": s.openstack.cloud, "conn_id": s.openstack.conn_id},
            "load_servers": s.load.given.get("servers"),
            "modelled": "real Kubernetes cluster (nothing emulated by kubexp)",
        }


def sanity_request(url: str, timeout_s: float) -> tuple[bool, str]:
    """GET `url` directly (no HTTP proxy: the load does not use one either); (True, detail) on HTTP 200."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return response.status == 200, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"no answer ({exc})"
