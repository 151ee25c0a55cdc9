"""etcd moved between a RAM disk (a real tmpfs mount) and a disk folder over real SSH, found healthy each time."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_node import EtcdNode

from kubexp.platform import Platform, create
from kubexp.platform.base import PlatformError
from kubexp.platform.kubernetes.config import SettingsError
from kubexp.platform.kubernetes.etcd_ssh import (
    EtcdMember,
    EtcdProfile,
    EtcdReconfigurer,
    data_dir_from_env,
    fsync_means,
    process_start,
)
from kubexp.suite import parse_suite


def member(node: EtcdNode, ssh_conn: str, name: str = "etcd1") -> EtcdMember:
    return EtcdMember(name=name, ssh_conn_id=ssh_conn, endpoint=node.client_url)


def filesystem_of(path: Path | str) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.slow
def test_etcd_moves_to_ramdisk_and_back_keeping_its_data(etcd_node: EtcdNode, ssh_conn: str) -> None:
    reconfigurer = EtcdReconfigurer([member(etcd_node, ssh_conn)], etcd_node.profile())
    first_pid = etcd_node.running_pid()

    to_ram = reconfigurer.switch("ramdisk")

    facts = to_ram["members"][0]
    assert facts["moved"] is True
    assert facts["previous_data_dir"] == str(etcd_node.disk_path)
    assert facts["data_dir"] == str(etcd_node.ramdisk_path)
    assert facts["filesystem"] == "tmpfs" == filesystem_of(etcd_node.ramdisk_path)  # a real tmpfs mount
    assert etcd_node.data_dir_in_env() == str(etcd_node.ramdisk_path)
    assert (etcd_node.ramdisk_path / "member" / "wal").is_dir()
    assert etcd_node.running_pid() not in (None, first_pid)  # restarted
    assert etcd_node.etcdctl("endpoint", "health").returncode == 0
    assert etcd_node.etcdctl("get", "kubexp-test/marker", "--print-value-only").stdout.strip() == "survives-moves"
    assert Path(facts["snapshot"]).stat().st_size > 0  # taken before the move, from the disk copy
    assert facts["version"].startswith("3.5")
    assert facts["wal_fsync_count"] >= 3 and facts["wal_fsync_mean_ms"] is not None
    # the probe writes, counted by the restarted etcd itself: the profile's 3 puts, then one delete
    counters = subprocess.run(["curl", "-sSf", f"{etcd_node.client_url}/metrics"], capture_output=True, text=True,
                              check=True).stdout
    assert re.search(r"^etcd_mvcc_put_total 3$", counters, re.M)
    assert re.search(r"^etcd_mvcc_delete_total 1$", counters, re.M)
    assert etcd_node.etcdctl("get", "kubexp/fingerprint").stdout == ""
    assert "other" not in etcd_node.env_file.read_text()  # env file rewritten, nothing else lost
    assert "ETCD_NAME=etcd1" in etcd_node.env_file.read_text()

    to_disk = reconfigurer.switch("disk")

    facts = to_disk["members"][0]
    assert (facts["previous_data_dir"], facts["data_dir"]) == (str(etcd_node.ramdisk_path), str(etcd_node.disk_path))
    assert facts["filesystem"] != "tmpfs" and facts["filesystem"] == filesystem_of(etcd_node.disk_path)
    assert etcd_node.data_dir_in_env() == str(etcd_node.disk_path)
    assert etcd_node.etcdctl("endpoint", "health").returncode == 0
    assert etcd_node.etcdctl("get", "kubexp-test/marker", "--print-value-only").stdout.strip() == "survives-moves"

    again = reconfigurer.switch("disk")  # already there: restarted in place, no copy
    assert again["members"][0]["moved"] is False
    assert etcd_node.etcdctl("get", "kubexp-test/marker", "--print-value-only").stdout.strip() == "survives-moves"


@pytest.mark.slow
def test_failed_snapshot_stops_before_touching_etcd(etcd_node: EtcdNode, ssh_conn: str) -> None:
    profile = etcd_node.profile(etcdctl=(str(Path(etcd_node.profile().etcdctl[0])), "--endpoints=http://127.0.0.1:1",
                                         "--dial-timeout=1s", "--command-timeout=2s"))
    pid = etcd_node.running_pid()
    with pytest.raises(PlatformError, match=r"etcd member etcd1: etcd snapshot .* refusing to stop etcd"):
        EtcdReconfigurer([member(etcd_node, ssh_conn)], profile).switch("ramdisk")
    assert etcd_node.running_pid() == pid
    assert etcd_node.data_dir_in_env() == str(etcd_node.disk_path)


@pytest.mark.slow
def test_injection_through_paths_and_member_names_is_inert(etcd_node: EtcdNode, ssh_conn: str, trap: Path) -> None:
    evil_dir = f"{etcd_node.root}/ram;touch {trap}/p1;$(touch {trap}/p2)`touch {trap}/p3` && echo >{trap}/p4 |x"
    evil_member = "etcd1;touch p5;$(touch p6)`touch p7`"
    profile = etcd_node.profile(ramdisk_path=evil_dir)
    etcd_node.ramdisk_path = Path(evil_dir)  # so the fixture unmounts it

    facts = EtcdReconfigurer([member(etcd_node, ssh_conn, evil_member)], profile).switch("ramdisk")["members"][0]

    assert list(trap.iterdir()) == []
    home = Path("~root").expanduser()
    assert not any((home / name).exists() for name in ("p5", "p6", "p7"))
    assert Path(evil_dir, "member").is_dir() and filesystem_of(evil_dir) == "tmpfs"
    assert etcd_node.data_dir_in_env() == evil_dir
    assert Path(facts["snapshot"]).parent.name == evil_member and Path(facts["snapshot"]).exists()
    assert etcd_node.etcdctl("get", "kubexp-test/marker", "--print-value-only").stdout.strip() == "survives-moves"


def test_dry_run_prints_every_command_and_runs_none(capsys: pytest.CaptureFixture[str]) -> None:
    profile = EtcdProfile(sudo=True)
    EtcdReconfigurer([EtcdMember("master-1", "no_such_connection")], profile, dry_run=True).switch("ramdisk")
    lines = capsys.readouterr().out.splitlines()
    argvs = [shlex.split(line.split(": ", 1)[1]) for line in lines]
    assert all(line.startswith("[dry-run] etcd member master-1: sudo -n -- ") for line in lines)
    assert [argv[3:] for argv in argvs[:2]] == [
        ["cat", "--", "/etc/etcd.env"],
        ["mkdir", "-p", "-m", "0700", "--", "/var/backups/kubexp-etcd", "/var/backups/kubexp-etcd/master-1"],
    ]
    assert argvs[2][3:-1] == [
        "etcdctl", "--endpoints=https://127.0.0.1:2379", "--cacert=/etc/ssl/etcd/ssl/ca.pem",
        "--cert=/etc/ssl/etcd/ssl/admin-master-1.pem", "--key=/etc/ssl/etcd/ssl/admin-master-1-key.pem",
        "snapshot", "save"]
    assert re.fullmatch(r"/var/backups/kubexp-etcd/master-1/\d{8}T\d{6}\.\d{6}Z-manual\.db", argvs[2][-1])
    assert argvs[3][-3:] == ["kubexp-prune-snapshots", "/var/backups/kubexp-etcd/master-1", "5"]
    verbs = [argv[3:5] for argv in argvs]
    assert ["systemctl", "stop"] in verbs and ["systemctl", "start"] in verbs
    assert verbs.index(["systemctl", "stop"]) < verbs.index(["systemctl", "start"])
    copy = next(argv for argv in argvs if "kubexp-copy-etcd-data" in argv)
    assert copy[-2:] == ["/var/lib/etcd", "/var/lib/etcd-ramdisk"]
    assert any(argv[-3:] == ["kubexp-set-data-dir", "/etc/etcd.env", "/var/lib/etcd-ramdisk"] for argv in argvs)


def test_profile_overrides_are_checked() -> None:
    assert EtcdProfile.from_mapping({"stop": ["svc", "etcd", "stop"], "sudo": True}).stop == ("svc", "etcd", "stop")
    with pytest.raises(ValueError, match=r"kubernetes.etcd.profile.stop: must be a non-empty list"):
        EtcdProfile.from_mapping({"stop": "systemctl stop etcd"})
    with pytest.raises(ValueError, match=r"kubernetes.etcd.profile.restart: unknown key"):
        EtcdProfile.from_mapping({"restart": ["x"]})
    with pytest.raises(ValueError, match=r"ramdisk_path: .* must be an absolute path"):
        EtcdProfile.from_mapping({"ramdisk_path": "/var/lib/etcd\nETCD_FOO=1"})
    with pytest.raises(ValueError, match=r"disk_path and ramdisk_path .* must differ"):
        EtcdProfile.from_mapping({"ramdisk_path": "/var/lib/etcd/"})


def test_env_file_and_metrics_parsing() -> None:
    assert data_dir_from_env("ETCD_NAME=a\nETCD_DATA_DIR=/var/lib/etcd\n") == "/var/lib/etcd"
    assert data_dir_from_env('export ETCD_DATA_DIR="/x y"\n') == "/x y"
    assert data_dir_from_env("ETCD_NAME=a\n") is None
    text = ("# HELP x\netcd_disk_wal_fsync_duration_seconds_sum 0.5\netcd_disk_wal_fsync_duration_seconds_count 100\n"
            'etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 90\n')
    assert fsync_means(text) == {"wal_fsync_count": 100, "wal_fsync_mean_ms": 5.0,
                                 "backend_commit_count": None, "backend_commit_mean_ms": None}
    earlier = "etcd_disk_wal_fsync_duration_seconds_sum 0.4\netcd_disk_wal_fsync_duration_seconds_count 90\n"
    assert fsync_means(text, earlier)["wal_fsync_count"] == 10
    assert fsync_means(text, earlier)["wal_fsync_mean_ms"] == 10.0
    assert process_start("process_start_time_seconds 1.79622171972e+09\n" + text) == 1796221719.72
    assert process_start(text) is None


@pytest.mark.slow
def test_platform_puts_etcd_where_the_scenario_says(etcd_node: EtcdNode, ssh_conn: str, tmp_path: Path) -> None:
    profile = {key: list(value) if isinstance(value, tuple) else value
               for key, value in dataclasses.asdict(etcd_node.profile()).items()}
    etcd = {"members": [{"name": "etcd1", "ssh_conn_id": ssh_conn, "endpoint": etcd_node.client_url}],
            "profile": profile}
    data = {"suite": "kx-etcd", "platform": "kubernetes", "repetitions": 1, "matrix": {"etcd_storage": ["ramdisk"]},
            "kubernetes": {"etcd": etcd}}
    platform = create(parse_suite(yaml.safe_load(yaml.safe_dump(data)), tmp_path / "kx-etcd.yaml"))

    fingerprint = platform.configure_etcd({"etcd_storage": "ramdisk", "etcd_fsync_delay_ms": 0})

    assert fingerprint["managed"] is True and fingerprint["storage"] == "ramdisk"
    assert fingerprint["members"][0]["filesystem"] == "tmpfs" == filesystem_of(etcd_node.ramdisk_path)
    with pytest.raises(PlatformError, match=r"etcd_fsync_delay_ms=5 needs kubernetes.etcd.profile.set_fsync_delay"):
        platform.configure_etcd({"etcd_storage": "disk", "etcd_fsync_delay_ms": 5})
    assert etcd_node.data_dir_in_env() == str(etcd_node.ramdisk_path)  # refused before any command

    # A profile that can delay fsyncs gets the scenario's delay while etcd is stopped, before it starts again.
    profile["set_fsync_delay"] = ["sh", "-c", 'echo "KUBEXP_FSYNC_DELAY_MS=$1" >> "$2"', "kx", "{fsync_delay_ms}",
                                  "{env_file}"]
    data["matrix"] = {"etcd_storage": ["disk"], "etcd_fsync_delay_ms": [7.5]}
    delayed = create(parse_suite(yaml.safe_load(yaml.safe_dump(data)), tmp_path / "kx-etcd.yaml"))
    fingerprint = delayed.configure_etcd({"etcd_storage": "disk", "etcd_fsync_delay_ms": 7.5})
    assert fingerprint["fsync_delay_ms"] == 7.5 and fingerprint["members"][0]["storage"] == "disk"
    assert etcd_node.env_file.read_text().splitlines()[-1] == "KUBEXP_FSYNC_DELAY_MS=7.5"


@pytest.mark.slow
def test_on_change_restarts_etcd_only_when_storage_delay_or_process_changed(
        etcd_node: EtcdNode, ssh_conn: str, tmp_path: Path) -> None:
    profile = {key: list(value) if isinstance(value, tuple) else value
               for key, value in dataclasses.asdict(etcd_node.profile()).items()}
    profile["set_fsync_delay"] = ["sh", "-c", 'echo "KUBEXP_FSYNC_DELAY_MS=$1" >> "$2"', "kx", "{fsync_delay_ms}",
                                  "{env_file}"]
    etcd = {"members": [{"name": "etcd1", "ssh_conn_id": ssh_conn, "endpoint": etcd_node.client_url}],
            "profile": profile, "restart": "on-change"}
    data = {"suite": "kx-etcd", "platform": "kubernetes", "repetitions": 1,
            "matrix": {"etcd_storage": ["ramdisk", "disk"], "etcd_fsync_delay_ms": [0, 5]},
            "kubernetes": {"etcd": etcd}}
    platform = create(parse_suite(yaml.safe_load(yaml.safe_dump(data)), tmp_path / "kx-etcd.yaml"))

    def step(storage: str, delay: float = 0) -> dict[str, Any]:
        pid = etcd_node.running_pid()
        facts = platform.configure_etcd({"etcd_storage": storage, "etcd_fsync_delay_ms": delay})["members"][0]
        assert facts["restarted"] is (etcd_node.running_pid() != pid), facts
        assert etcd_node.etcdctl("get", "kubexp-test/marker", "--print-value-only").stdout.strip() == "survives-moves"
        return facts

    assert step("ramdisk")["restarted"] is True  # moved
    kept = step("ramdisk")
    assert kept["restarted"] is False and kept["moved"] is False
    # The fingerprint covers the probe writes (3 puts and a delete, each fsynced), not etcd's life before them.
    assert kept["fsync_over"] == "probe writes" and 4 <= kept["wal_fsync_count"] < 10, kept
    assert step("disk")["restarted"] is True  # moved
    assert step("disk")["restarted"] is False
    assert step("disk", 5)["restarted"] is True  # another fsync delay: restarted in place
    assert step("disk", 5)["restarted"] is False
    etcd_node.process.stop(timeout=10)  # restarted by someone else: no longer the etcd kubexp started
    etcd_node.process.start(timeout=30)
    assert step("disk", 5)["restarted"] is True
    assert step("disk", 5)["restarted"] is False

    etcd["restart"] = "sometimes"
    with pytest.raises(SettingsError, match=r"kx-etcd.yaml: kubernetes.etcd.restart: 'sometimes'; allowed: always, "
                                            r"on-change"):
        create(parse_suite(yaml.safe_load(yaml.safe_dump(data)), tmp_path / "kx-etcd.yaml"))


def test_a_fsync_delay_without_a_profile_command_is_refused_when_the_suite_is_read(tmp_path: Path) -> None:
    data = {"suite": "kx-etcd", "platform": "kubernetes", "repetitions": 1,
            "matrix": {"etcd_storage": ["disk"], "etcd_fsync_delay_ms": [0, 10]},
            "kubernetes": {"etcd": {"members": [{"name": "e1", "ssh_conn_id": "kx_ssh"}]}}}
    with pytest.raises(SettingsError, match=r"kx-etcd.yaml: scenario 1 \(.*\) sets etcd_fsync_delay_ms=10, which "
                                            r"needs kubernetes.etcd.profile.set_fsync_delay"):
        create(parse_suite(data, tmp_path / "kx-etcd.yaml"))


def test_unmanaged_etcd_is_recorded_as_not_applied(tmp_path: Path) -> None:
    data = {"suite": "kx-etcd", "platform": "kubernetes", "repetitions": 1, "matrix": {"etcd_storage": ["disk"]},
            "kubernetes": {"etcd": {"manage": False}}}
    platform = create(parse_suite(data, tmp_path / "kx-etcd.yaml"))
    assert platform.configure_etcd({"etcd_storage": "disk"}) == {"storage": "unchanged", "requested": "disk",
                                                                 "managed": False}
    data["kubernetes"] = {}
    with pytest.raises(PlatformError, match=r"kubernetes.etcd.members is empty"):
        create(parse_suite(data, tmp_path / "kx-etcd.yaml")).configure_etcd({"etcd_storage": "disk"})


def test_an_unknown_ssh_connection_is_named() -> None:
    with pytest.raises(PlatformError, match=r"etcd member m1: cannot open SSH via Airflow connection 'kx_no_such"):
        EtcdReconfigurer([EtcdMember("m1", "kx_no_such_conn")], EtcdProfile()).switch("disk")


@pytest.fixture
def timeout_on(tmp_path: Path) -> Iterator[Path]:
    """A file whose appearance makes SIGALRM raise AirflowTaskTimeout in this process, as Airflow's
    execution_timeout does (its `timeout` context manager raises from a SIGALRM handler)."""
    from airflow.sdk.exceptions import AirflowTaskTimeout

    flag, stop = tmp_path / "now", threading.Event()

    def on_alarm(signum: int, frame: object) -> None:
        raise AirflowTaskTimeout("Timeout, PID: test")

    def watch() -> None:
        while not stop.is_set():
            if flag.exists():
                os.kill(os.getpid(), signal.SIGALRM)
                return
            time.sleep(0.05)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield flag
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.slow
def test_a_task_timeout_while_etcd_is_stopped_starts_it_again_on_its_old_data(
        etcd_node: EtcdNode, ssh_conn: str, timeout_on: Path) -> None:
    """The timeout strikes after the data were copied and ETCD_DATA_DIR points at the RAM disk (etcd is
    stopped): etcd must run again, on the disk data it had (it used to stay stopped: only a
    PlatformError restarted it)."""
    from airflow.sdk.exceptions import AirflowTaskTimeout

    # set_fsync_delay runs while etcd is stopped, after the copy and the env file edit.
    profile = etcd_node.profile(set_fsync_delay=("sh", "-c", 'touch "$1"; sleep 60', "kx", str(timeout_on)))
    pid = etcd_node.running_pid()

    with pytest.raises(AirflowTaskTimeout):
        EtcdReconfigurer([member(etcd_node, ssh_conn)], profile).switch("ramdisk")

    assert timeout_on.exists()  # it did strike while etcd was stopped
    assert etcd_node.running_pid() not in (None, pid)  # started again
    assert etcd_node.data_dir_in_env() == str(etcd_node.disk_path)  # on its old data
    deadline = time.monotonic() + 30
    while etcd_node.etcdctl("endpoint", "health").returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert etcd_node.etcdctl("get", "kubexp-test/marker", "--print-value-only").stdout.strip() == "survives-moves"


def _platform(etcd_node: EtcdNode, ssh_conn: str, tmp_path: Path, **profile_changes: object) -> Platform:
    profile = {key: list(value) if isinstance(value, tuple) else value
               for key, value in dataclasses.asdict(etcd_node.profile(**profile_changes)).items()}
    etcd = {"members": [{"name": "etcd1", "ssh_conn_id": ssh_conn, "endpoint": etcd_node.client_url}],
            "profile": profile}
    data = {"suite": "kx-etcd", "platform": "kubernetes", "repetitions": 1, "matrix": {"etcd_storage": ["ramdisk"]},
            "kubernetes": {"etcd": etcd}}
    return create(parse_suite(yaml.safe_load(yaml.safe_dump(data)), tmp_path / "kx-etcd.yaml"))


@pytest.mark.slow
def test_a_member_found_stopped_is_started_by_cleanup(etcd_node: EtcdNode, ssh_conn: str, tmp_path: Path) -> None:
    """A task killed outright between stop and start runs no handler: cleanup finds etcd stopped."""
    platform = _platform(etcd_node, ssh_conn, tmp_path)
    assert platform.start_stopped_etcd() == []  # running: left alone
    pid = etcd_node.running_pid()
    subprocess.run(list(etcd_node.profile().stop), check=True)
    assert etcd_node.running_pid() is None

    assert platform.start_stopped_etcd() == ["etcd1"]

    assert etcd_node.running_pid() not in (None, pid)
    assert etcd_node.etcdctl("get", "kubexp-test/marker", "--print-value-only").stdout.strip() == "survives-moves"


@pytest.mark.slow
def test_snapshots_are_kept_per_attempt_up_to_a_bound(etcd_node: EtcdNode, ssh_conn: str, tmp_path: Path) -> None:
    platform = _platform(etcd_node, ssh_conn, tmp_path, snapshots_kept=2)
    for attempt, storage in ((11, "ramdisk"), (12, "disk"), (13, "ramdisk")):
        platform.configure_etcd({"etcd_storage": storage}, tag=f"attempt-{attempt}")

    kept = sorted((etcd_node.backup_dir / "etcd1").iterdir())
    assert [path.name.split("-", 1)[1] for path in kept] == ["attempt-12.db", "attempt-13.db"]  # the newest two
    assert all(path.stat().st_size > 0 for path in kept)
    assert (etcd_node.backup_dir / "etcd1").stat().st_mode & 0o777 == 0o700
    with pytest.raises(ValueError, match=r"snapshots_kept: must be at least 1"):
        EtcdProfile.from_mapping({"snapshots_kept": 0})


@pytest.mark.slow
def test_rebooting_a_member_on_the_ram_disk_is_said_first(etcd_node: EtcdNode, ssh_conn: str, tmp_path: Path) -> None:
    platform = _platform(etcd_node, ssh_conn, tmp_path)
    assert platform.reboot_warning("etcd1") is None  # on disk
    assert platform.reboot_warning("worker-1") is None  # no etcd member there
    platform.configure_etcd({"etcd_storage": "ramdisk"})

    warning = platform.reboot_warning("etcd1")

    assert warning is not None
    assert f"etcd member etcd1 and its data are on the RAM disk {etcd_node.ramdisk_path}" in warning
    assert f"rebooting it loses that member's data; restore it from the newest snapshot in " \
           f"{etcd_node.backup_dir}/etcd1" in warning
    unreadable = _platform(etcd_node, ssh_conn, tmp_path, env_file=str(tmp_path / "missing.env"))
    assert "could not be read" in (unreadable.reboot_warning("etcd1") or "")  # unknown counts as RAM disk
