"""Memory and CPU cgroups for replicas: cgroup v1 or v2, whichever this machine lets us write.

Groups are nested under the caller's own cgroup (or `local.cgroup_parent`), so the
replicas stay accounted to whoever started kubexp, and v2 delegation rules are respected.
Each platform gets one group `kubexp-local-<id>` per controller with one child per replica.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class CgroupSupport:
    """Where this platform's group goes per controller, and what can be enforced."""

    version: str  # "v1", "v2" or "none"
    memory_base: Path | None  # the folder our platform group is created in
    cpu_base: Path | None
    note: str  # how limits are enforced, or why they are not

    @property
    def memory(self) -> bool:
        return self.memory_base is not None

    @property
    def cpu(self) -> bool:
        return self.cpu_base is not None


def _mounts() -> list[tuple[str, Path, set[str]]]:
    """(fstype, mount point, options) of every cgroup mount."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            found.append((parts[2], Path(parts[1]), set(parts[3].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Controller (or "" for the v2 hierarchy) -> our cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _v1_base(controller: str, file: str, mounts: list[tuple[str, Path, set[str]]],
             own: dict[str, str], parent: str | None) -> Path | None:
    for fstype, mount, options in mounts:
        if fstype == "cgroup" and controller in options:
            base = mount / (parent if parent is not None else own.get(controller, "/")).lstrip("/")
            if _writable_dir(base) and (mount / file).exists():
                return base
    return None


def _v2_base(controller: str, mounts: list[tuple[str, Path, set[str]]], own: dict[str, str],
             parent: str | None) -> Path | None:
    for fstype, mount, _ in mounts:
        if fstype != "cgroup2":
            continue
        base = mount / (parent if parent is not None else own.get("", "/")).lstrip("/")
        controllers = base / "cgroup.controllers"
        if _writable_dir(base) and controllers.exists() and controller in controllers.read_text().split():
            return base
    return None


def detect(parent: str | None = None) -> CgroupSupport:
    """Which cgroup version lets us set memory (and CPU) limits; v1 first, as measured here."""
    try:
        mounts, own = _mounts(), _own_paths()
    except OSError as exc:
        return CgroupSupport("none", None, None, f"cannot read cgroup mounts ({exc}); limits not enforced")
    memory = _v1_base("memory", "memory.limit_in_bytes", mounts, own, parent)
    if memory is not None:
        cpu = _v1_base("cpu", "cpu.cfs_quota_us", mounts, own, parent)
        note = f"cgroup v1 memory controller at {memory}" + ("" if cpu else "; no writable cpu controller")
        return CgroupSupport("v1", memory, cpu, note)
    memory = _v2_base("memory", mounts, own, parent)
    if memory is not None:
        cpu = _v2_base("cpu", mounts, own, parent)
        return CgroupSupport("v2", memory, cpu, f"cgroup v2 at {memory}")
    return CgroupSupport("none", None, None,
                         "no writable memory cgroup (v1 or v2) on this machine: memory limits are NOT enforced")


class CgroupError(OSError):
    """A cgroup could not be created or written."""


@dataclass(frozen=True)
class ReplicaCgroup:
    """The cgroup folder(s) of one replica: one per controller in v1, one shared in v2."""

    version: str
    memory_dir: Path | None
    cpu_dir: Path | None

    def dirs(self) -> list[Path]:
        return list(dict.fromkeys(d for d in (self.memory_dir, self.cpu_dir) if d is not None))

    def join(self, pid: int) -> None:
        for folder in self.dirs():
            (folder / "cgroup.procs").write_text(f"{pid}\n")

    def oom_kills(self) -> int:
        """The kernel's OOM-kill counter of this group (0 where none is kept)."""
        if self.memory_dir is None:
            return 0
        name = "memory.oom_control" if self.version == "v1" else "memory.events"
        try:
            for line in (self.memory_dir / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            pass
        return 0

    def pids(self) -> set[int]:
        found: set[int] = set()
        for folder in self.dirs():
            try:
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return found

    def kill_all(self, timeout: float = 10.0) -> set[int]:
        """SIGKILL every process in the group; wait until it is empty. Returns pids still left."""
        deadline = time.monotonic() + timeout
        left = self.pids()
        while left and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
            left = self.pids()
        return left


def create_replica_group(support: CgroupSupport, group: str, replica: str, memory_bytes: int,
                         cpu_millicores: int | None) -> ReplicaCgroup:
    """Create `<base>/<group>/<replica>` with the limits; raise CgroupError naming the file."""
    memory_dir = cpu_dir = None
    if support.version == "v1":
        if support.memory_base is not None:
            memory_dir = _mkdirs(support.memory_base / group / replica)
            _write(memory_dir / "memory.limit_in_bytes", memory_bytes)
            if (memory_dir / "memory.memsw.limit_in_bytes").exists():
                _write(memory_dir / "memory.memsw.limit_in_bytes", memory_bytes, optional=True)  # no swap, as a pod
        if support.cpu_base is not None and cpu_millicores:
            cpu_dir = _mkdirs(support.cpu_base / group / replica)
            _write(cpu_dir / "cpu.cfs_period_us", CPU_PERIOD_US)
            _write(cpu_dir / "cpu.cfs_quota_us", cpu_millicores * CPU_PERIOD_US // 1000)
    elif support.version == "v2" and support.memory_base is not None:
        top = _mkdirs(support.memory_base / group)
        wanted = ["memory"] + (["cpu"] if support.cpu_base is not None and cpu_millicores else [])
        for folder in (support.memory_base, top):  # v2: a controller must be enabled on every level above
            present = _read(folder / "cgroup.subtree_control").split()
            missing = " ".join(f"+{name}" for name in wanted if name not in present)
            if missing:
                _write(folder / "cgroup.subtree_control", missing)
        memory_dir = _mkdirs(top / replica)
        _write(memory_dir / "memory.max", memory_bytes)
        _write(memory_dir / "memory.swap.max", 0, optional=True)
        _write(memory_dir / "memory.oom.group", 1, optional=True)  # a container dies as a whole
        if cpu_millicores and "cpu" in wanted:
            cpu_dir = memory_dir
            _write(cpu_dir / "cpu.max", f"{cpu_millicores * CPU_PERIOD_US // 1000} {CPU_PERIOD_US}")
    return ReplicaCgroup(support.version, memory_dir, cpu_dir)


def remove_tree(top: Path, timeout: float = 10.0) -> None:
    """Kill what is left in `top` and its children, then remove them (deepest first). Idempotent."""
    if not top.is_dir():
        return
    folders = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for folder in [*folders, top]:
        ReplicaCgroup("any", folder, None).kill_all(timeout)
        deadline = time.monotonic() + timeout
        while folder.exists():
            try:
                folder.rmdir()
            except FileNotFoundError:
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise CgroupError(f"cannot remove cgroup {folder}: {exc}; processes left: "
                                      f"{ReplicaCgroup('any', folder, None).pids() or 'none'}") from exc
                time.sleep(0.05)


def _mkdirs(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CgroupError(f"cannot create cgroup {path}: {exc}") from exc
    return path


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: object, optional: bool = False) -> None:
    try:
        path.write_text(f"{value}\n")
    except OSError as exc:
        if not optional:
            raise CgroupError(f"cannot write {value} to {path}: {exc}") from exc
