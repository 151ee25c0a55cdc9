"""Settings of the local platform: the suite's `local:` section, typed and checked."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubexp.platform.base import PlatformError


@dataclass(frozen=True)
class LocalSettings:
    """Every key of a suite's `local:` section; defaults model a Kubernetes node's kubelet."""

    health_check_interval_s: float = 10.0  # readiness probe period (HAProxy `inter`)
    restart_backoff_s: float = 10.0  # kubelet's first crash back-off, doubled per restart
    restart_backoff_cap_s: float = 300.0  # kubelet's cap (5 min)
    restart_backoff_reset_s: float = 600.0  # a replica running this long starts again at the first back-off
    app_server: str = "gunicorn"  # "gunicorn" or "flask" (Flask's threaded server); the load profile's by default
    probe_path: str = "/healthz"  # the health check (readiness probe) path; the load profile's by default
    app_workers: int = 1  # gunicorn workers per replica
    app_threads: int = 4  # threads per gunicorn worker (CROPAPP_THREADS)
    frontend_port: int | None = None  # HAProxy's frontend; None = a free port
    retry_per_try_timeout_s: float = 2.0  # mesh=istio: per-try timeout of the retry policy
    retry_attempts: int = 3  # mesh=istio: retries after the first try
    haproxy_binary: str = "haproxy"
    etcd_binary: str = ""  # "" = .venv/bin/etcd beside this Python
    strace_binary: str = "strace"
    etcd_disk_dir: str = "/var/tmp"  # where etcd_storage=disk puts its data dir
    etcd_ramdisk_dir: str = "/dev/shm"  # where etcd_storage=ramdisk puts its data dir
    cgroup_parent: str | None = None  # cgroup (path in the hierarchy) to nest replicas under; None = our own
    allow_unenforced_limits: bool = False  # true: run replicas without the limits this machine cannot enforce
    fingerprint_puts: int = 300  # writes of the etcd fingerprint burst
    fingerprint_max_s: float = 15.0  # bound on the burst's duration

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, origin: str = "suite section local") -> LocalSettings:
        values = dict(values or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise PlatformError(
                f"{origin}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
            )
        checked: dict[str, Any] = {}
        for name, raw in values.items():
            default = fields[name].default
            checked[name] = _coerce(name, raw, default, origin)
        settings = cls(**checked)
        settings._validate(origin)
        return settings

    def _validate(self, origin: str) -> None:
        positive = ("health_check_interval_s", "restart_backoff_s", "restart_backoff_cap_s",
                    "retry_per_try_timeout_s", "fingerprint_max_s", "app_workers", "app_threads", "fingerprint_puts")
        for name in positive:
            if getattr(self, name) <= 0:
                raise PlatformError(f"{origin}: {name} must be > 0, got {getattr(self, name)}")
        if self.restart_backoff_cap_s < self.restart_backoff_s:
            raise PlatformError(f"{origin}: restart_backoff_cap_s ({self.restart_backoff_cap_s}) must be >= "
                                f"restart_backoff_s ({self.restart_backoff_s})")
        if self.retry_attempts < 0:
            raise PlatformError(f"{origin}: retry_attempts must be >= 0, got {self.retry_attempts}")
        if self.app_server not in ("gunicorn", "flask"):
            raise PlatformError(f"{origin}: app_server must be gunicorn or flask, got {self.app_server!r}")
        if self.app_server == "flask" and self.app_workers != 1:
            raise PlatformError(f"{origin}: app_workers={self.app_workers}: Flask's threaded server is one process; "
                                f"set app_workers: 1 or app_server: gunicorn")
        if not self.probe_path.startswith("/"):
            raise PlatformError(f"{origin}: probe_path must start with /, got {self.probe_path!r}")
        if self.frontend_port is not None and not 0 < self.frontend_port < 65536:
            raise PlatformError(f"{origin}: frontend_port must be 1-65535, got {self.frontend_port}")

    def etcd_path(self) -> Path:
        import sys

        return Path(self.etcd_binary) if self.etcd_binary else Path(sys.executable).parent / "etcd"


def _coerce(name: str, raw: Any, default: Any, origin: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise PlatformError(f"{origin}: {name} must be true or false, got {raw!r}")
        return raw
    if default is None or isinstance(default, str):
        if name == "frontend_port":
            return None if raw is None else _coerce(name, raw, 0, origin)
        if raw is None or isinstance(raw, str):
            return raw
        raise PlatformError(f"{origin}: {name} must be a string, got {raw!r}")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise PlatformError(f"{origin}: {name} must be a number, got {raw!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if raw != int(raw):
            raise PlatformError(f"{origin}: {name} must be a whole number, got {raw!r}")
        return int(raw)
    return float(raw)
