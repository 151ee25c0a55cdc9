"""The local platform's parts that need no running service: settings, HAProxy config, etcd metrics,
back-off, journal windows, and the refusals and faults that must come before anything starts."""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubexp.platform import create
from kubexp.platform.base import PlatformError, Unsupported
from kubexp.platform.local import LocalPlatform, LocalSettings, cgroups, journal, targets, testbed
from kubexp.platform.local.etcd import Histogram, filesystem_type, parse_histogram
from kubexp.platform.local.haproxy import HAProxyConfig, parse_stats_csv
from kubexp.platform.local.supervisor import backoff_delay
from kubexp.settings import SUITES_DIR
from kubexp.suite import load_suite


def test_settings_name_the_bad_key() -> None:
    with pytest.raises(PlatformError, match=r"suite.yaml: unknown key\(s\) health_check_intervall"):
        LocalSettings.from_mapping({"health_check_intervall": 5}, "suite.yaml")
    with pytest.raises(PlatformError, match="health_check_interval_s must be > 0"):
        LocalSettings.from_mapping({"health_check_interval_s": 0})
    with pytest.raises(PlatformError, match="app_workers must be a whole number"):
        LocalSettings.from_mapping({"app_workers": 1.5})
    assert LocalSettings.from_mapping({"health_check_interval_s": 3}).health_check_interval_s == 3.0


def test_created_from_a_suite(kubexp_home: Path) -> None:
    suite = load_suite(SUITES_DIR / "demo.yaml")
    platform = create(suite)
    assert isinstance(platform, LocalPlatform)
    assert platform.state_dir == kubexp_home / "local-platform"
    assert platform.settings.health_check_interval_s == 10.0


def test_haproxy_native_has_no_retries_and_istio_retries() -> None:
    base = dict(frontend_port=1000, stats_port=1001, servers=[("replica-0", 2000), ("replica-1", 2001)],
                health_check_interval_s=10)
    native = HAProxyConfig(**base, mesh="native").render()
    istio = HAProxyConfig(**base, mesh="istio").render()
    assert "retries 0" in native and "retry-on" not in native
    assert "default-server inter 10000ms fall 1 rise 1" in native
    assert "option httpchk GET /healthz" in native and "balance roundrobin" in native
    assert "server replica-1 127.0.0.1:2001 check" in native
    assert "use-service prometheus-exporter" in native
    assert "retries 3" in istio and "timeout server 2000ms" in istio
    assert "retry-on conn-failure empty-response response-timeout 500 501 502 503 504" in istio


def test_stats_csv_parsed_per_server() -> None:
    text = ("# pxname,svname,status,check_status,check_code,last_chk\n"
            "app,FRONTEND,OPEN,,,\n"
            "replicas,replica-0,UP,L7OK,200,OK\n"
            "replicas,replica-1,DOWN,* L4CON,,Connection refused\n"
            "replicas,BACKEND,UP,,,\n")
    states = {s.name: s for s in parse_stats_csv(text)}
    assert set(states) == {"replica-0", "replica-1"}
    assert states["replica-0"].checked_up and not states["replica-1"].checked_up
    assert states["replica-1"].check_status == "L4CON"


ETCD_METRICS = """\
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 90
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.002"} 95
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.004"} 99
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.008"} 100
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 100
etcd_disk_wal_fsync_duration_seconds_sum 0.05
etcd_disk_wal_fsync_duration_seconds_count 100
"""


def test_wal_fsync_mean_from_sum_and_p99_interpolated() -> None:
    hist = parse_histogram(ETCD_METRICS, "etcd_disk_wal_fsync_duration_seconds")
    assert hist.mean() == pytest.approx(0.0005)
    assert hist.quantile(0.99) == pytest.approx(0.004)  # rank 99 is the top of the 4 ms bucket
    assert hist.quantile(0.5) == pytest.approx(0.001 * 50 / 90)
    earlier = Histogram([(0.001, 40), (0.002, 40), (0.004, 40), (0.008, 40), (math.inf, 40)], 0.01, 40)
    burst = hist.minus(earlier)
    assert burst.count == 60 and burst.mean() == pytest.approx(0.04 / 60)
    assert Histogram([], 0, 0).quantile(0.99) is None and Histogram([], 0, 0).mean() is None


def test_kubelet_backoff_doubles_and_caps() -> None:
    assert [backoff_delay(n, 10, 300) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]


def test_events_window_floors_t_relative_to_t0(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    t0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    for offset, kind in ((-0.5, "Started"), (1.9, "OOMKilled"), (12.0, "Restarted"), (99.0, "Exited")):
        journal.append(path, "local-supervisor", kind, "replica-0", at=t0 + timedelta(seconds=offset))
    with open(path, "a") as out:
        out.write('{"at": "2026-01-01T12:00:0')  # a line still being written is skipped
    events = journal.window(journal.read(path), t0 - timedelta(seconds=1), t0 + timedelta(seconds=60), t0)
    assert [(e.t, e.kind) for e in events] == [(-1, "Started"), (1, "OOMKilled"), (12, "Restarted")]
    with pytest.raises(ValueError, match="t0=.* has no timezone"):
        journal.window([], t0, t0, t0.replace(tzinfo=None))


def test_autoscaling_scenario_refused_naming_scenario_and_parameter(kubexp_home: Path) -> None:
    platform = LocalPlatform({})
    with pytest.raises(PlatformError, match=r"scenario 0123abcd: pods_max=4 > pods=2 needs autoscaling"):
        platform.deploy("0123abcd", {"pods": 2, "pods_max": 4})
    assert not (platform.state_dir / "deployment.json").exists()


def test_reboot_refused_with_reason(kubexp_home: Path) -> None:
    with pytest.raises(PlatformError, match="node vm1: the local platform is this machine itself"):
        LocalPlatform({}).reboot_node("vm1")


def test_missing_haproxy_and_etcd_named(kubexp_home: Path, tmp_path: Path) -> None:
    platform = LocalPlatform({"haproxy_binary": "no-such-haproxy", "etcd_binary": str(tmp_path / "etcd")})
    [node] = platform.check_nodes()
    assert not node.ready and "no-such-haproxy" in node.reason and "etcd" in node.reason
    with pytest.raises(PlatformError, match="haproxy .*'no-such-haproxy'.*install Debian package haproxy"):
        platform.deploy("s1", {"pods": 1})
    with pytest.raises(PlatformError, match=f"etcd binary {tmp_path / 'etcd'} not found"):
        platform.configure_etcd({"etcd_storage": "ramdisk"})


def test_node_ready_here_with_known_limit_support(kubexp_home: Path) -> None:
    [node] = LocalPlatform({}).check_nodes()
    assert node.ready, node.reason
    assert "memory" in node.reason


def test_disk_storage_on_tmpfs_refused(kubexp_home: Path) -> None:
    assert filesystem_type(Path("/dev/shm")) == "tmpfs"
    platform = LocalPlatform({"etcd_disk_dir": "/dev/shm"})
    with pytest.raises(PlatformError, match="etcd_storage=disk but /dev/shm is on tmpfs; set local.etcd_disk_dir"):
        platform.configure_etcd({"etcd_storage": "disk"})


def test_taken_frontend_port_named_and_nothing_started(kubexp_home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        platform = LocalPlatform({"frontend_port": port})
        with pytest.raises(PlatformError, match=f"frontend port {port} \\(local.frontend_port\\).*already in use"):
            platform.deploy("s1", {"pods": 1})
    assert platform._supervisor().running_pid() is None
    platform.teardown()
    assert not platform.state_dir.exists()


def test_scrape_targets_listed_before_anything_starts(kubexp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prometheus needs seconds to pick up a new target (the rollout waits for its first scrape): deploy lists
    the replicas and HAProxy before it starts them."""
    platform = LocalPlatform({"allow_unenforced_limits": True})
    listed: list[str] = []

    def images_then_stop() -> None:
        listed.extend(targets.addresses(platform.targets_file))
        raise PlatformError("stop before starting anything")

    monkeypatch.setattr(testbed, "_prepare_images", images_then_stop)
    with pytest.raises(PlatformError, match="stop before starting"):
        platform.deploy("s1", {"pods": 2})
    deployment = platform._deployment()
    assert sorted(listed) == sorted(f"127.0.0.1:{port}" for port in
                                    [deployment.stats_port, *(spec.port for spec in deployment.replicas)])
    assert platform._supervisor().running_pid() is None
    platform.teardown()
    assert not platform.targets_file.exists()


def fake_cgroup2(root: Path, base: str = "kubexp", procs: str = "", controllers: str = "cpu memory pids") -> Path:
    """A cgroup2 hierarchy as folders and files (this machine is cgroup v1): the mount and a cgroup `base` with
    the files the kernel gives every cgroup."""
    mount = root / "cgroup"
    folder = mount / base
    folder.mkdir(parents=True)
    for path, text in ((mount, "cpu io memory pids"), (folder, controllers)):
        (path / "cgroup.controllers").write_text(f"{text}\n")
        (path / "cgroup.subtree_control").write_text("")
        (path / "cgroup.procs").write_text("")
    (folder / "cgroup.procs").write_text(procs)
    return mount


def test_v2_group_files_written(tmp_path: Path) -> None:
    """cgroup v2 is not writable on the CI machines (v1 is): check the files and values written on a folder tree."""
    mount = fake_cgroup2(tmp_path)
    base = mount / "kubexp"
    support = cgroups.CgroupSupport("v2", base, base, "test", mount)
    group = cgroups.create_replica_group(support, "kubexp-local-x", "replica-0", 64 * 2**20, 500)
    folder = base / "kubexp-local-x" / "replica-0"
    assert group.memory_dir == group.cpu_dir == folder
    assert not (base / "kubexp-local-x" / "cgroup.procs").exists()  # processes go to the leaves only
    assert (base / "cgroup.subtree_control").read_text() == "+memory +cpu\n"
    assert (base / "kubexp-local-x" / "cgroup.subtree_control").read_text() == "+memory +cpu\n"
    assert (folder / "memory.max").read_text() == f"{64 * 2**20}\n"
    assert (folder / "memory.oom.group").read_text() == "1\n"
    assert (folder / "cpu.max").read_text() == "50000 100000\n"
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n")
    assert group.oom_kills() == 2


def test_cgroup_v2_limits_that_cannot_be_delegated_refuse_the_scenario(
        tmp_path: Path, make_platform: Callable[..., LocalPlatform], monkeypatch: pytest.MonkeyPatch) -> None:
    """kubexp's own cgroup holds processes (kubexp itself): the kernel refuses to enable controllers there
    (EBUSY), so replicas ran without limits ("says so once"). Now the scenario is refused, naming the cgroup."""
    mount = fake_cgroup2(tmp_path, "user.slice/session-1.scope", procs="4242\n")
    base = mount / "user.slice" / "session-1.scope"
    monkeypatch.setattr(cgroups, "_mounts", lambda: [("cgroup2", mount, {"rw"})])
    monkeypatch.setattr(cgroups, "_own_paths", lambda: {"": "/user.slice/session-1.scope"})

    support = cgroups.detect()

    assert support.version == "none" and not support.memory
    assert f"cgroup {base} holds processes" in support.note
    assert f"mkdir {mount}/kubexp; echo '+memory +cpu' > {mount}/cgroup.subtree_control" in support.note
    with pytest.raises(cgroups.CgroupError, match="holds processes"):  # also when asked directly
        cgroups.create_replica_group(cgroups.CgroupSupport("v2", base, base, "", mount), "g", "replica-0", 2**26, 0)
    assert (base / "cgroup.subtree_control").read_text() == "" and not (base / "g").exists()  # nothing written
    platform = make_platform()
    with pytest.raises(Unsupported, match=rf"scenario s1: memory_limit_mib=64, cpu_limit_millicores=500 cannot be "
                                          rf"enforced on this machine: .*cgroup {base} holds processes"):
        platform.deploy("s1", {"pods": 1, "memory_limit_mib": 64, "cpu_limit_millicores": 500})
    assert platform._supervisor().running_pid() is None  # no replica started

    # An empty cgroup given as local.cgroup_parent (kubexp's is not): the controllers are enabled from there.
    (mount / "kubexp").mkdir()
    for name, text in (("cgroup.controllers", "cpu memory\n"), ("cgroup.subtree_control", ""), ("cgroup.procs", "")):
        (mount / "kubexp" / name).write_text(text)
    delegated = cgroups.detect("/kubexp")
    assert (delegated.version, delegated.memory_base, delegated.cpu_base) == ("v2", mount / "kubexp", mount / "kubexp")
    (mount / "kubexp" / "cgroup.controllers").write_text("memory\n")  # cpu not delegated to it
    without_cpu = cgroups.detect("/kubexp")
    assert without_cpu.memory and not without_cpu.cpu
    assert f"{mount}/kubexp/cgroup.controllers lacks cpu" in without_cpu.note
    assert f"add +cpu to {mount}/cgroup.subtree_control" in without_cpu.note
    assert "no cgroup v1 memory controller" in cgroups.detect("/missing").note
    assert f"cgroup {mount}/missing does not exist" in cgroups.detect("/missing").note


def test_v1_group_files_written(tmp_path: Path) -> None:
    memory, cpu = tmp_path / "memory", tmp_path / "cpu"
    support = cgroups.CgroupSupport("v1", memory, cpu, "test")
    group = cgroups.create_replica_group(support, "g", "replica-1", 64 * 2**20, 200)
    assert (memory / "g" / "replica-1" / "memory.limit_in_bytes").read_text() == f"{64 * 2**20}\n"
    assert (cpu / "g" / "replica-1" / "cpu.cfs_quota_us").read_text() == "20000\n"
    (memory / "g" / "replica-1" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    assert group.oom_kills() == 5


def test_collectors_gather_the_journal_the_etcd_log_and_the_sut_logs_in_one_envelope(
        kubexp_home: Path, tmp_path: Path) -> None:
    from kubexp.collect import collect_all
    from kubexp.records import Window

    suite = load_suite(SUITES_DIR / "demo.yaml")
    platform = create(suite)
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    platform.state_dir.mkdir(parents=True)
    journal.append(platform.state_dir / "events.jsonl", "local-supervisor", "Restarted", "replica-1",
                   at=t0 - timedelta(seconds=30))  # before the deploy: not this experiment's
    journal.append(platform.state_dir / "events.jsonl", "local-supervisor", "OOMKilled", "replica-1",
                   at=t0 + timedelta(seconds=2.5))
    platform.etcd_log_path.parent.mkdir(parents=True, exist_ok=True)
    platform.etcd_log_path.write_text('{"level":"warn","ts":"2026-01-01T12:00:01.2Z","msg":"slow fdatasync"}\n')
    (platform.state_dir / "logs" / "replica-1.log").write_text("started\n")
    window = Window(t0=t0, start=t0 - timedelta(seconds=10), end=t0 + timedelta(seconds=20), dest_dir=tmp_path)

    collected = collect_all(platform.collectors(suite), window)

    assert [(e.t, e.source, e.kind) for e in collected.events or []] == [
        (2, "local-supervisor", "OOMKilled"), (1, "etcd-log", "EtcdSlowFsync")]
    assert sorted((a.kind, Path(a.path).name) for a in collected.artifacts or []) == [
        ("etcd-log", "etcd.log.gz"), ("log", "replica-1.log.gz")]
    assert collected.load is None and collected.series is None and collected.facts == {}
