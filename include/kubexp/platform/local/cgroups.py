"""Memory and CPU cgroups for replicas: cgroup v1 or v2, whichever this machine lets us write.

Groups are nested under the caller's own cgroup (or `local.cgroup_parent`), so the
replicas stay accounted to whoever started kubexp. Each platform gets one group
`kubexp-local-<id>` per controller with one child per replica. Under v2 the kernel's
delegation rules hold: a controller reaches a child only if every cgroup above enables it in
`cgroup.subtree_control`, which only a cgroup without processes of its own may do (the root
excepted), and processes live in leaves only. So the base must offer the controllers (its
`cgroup.controllers`), be writable, and either enable them already or hold no process; the
platform group never holds a process, the replicas' leaves do. Where that fails, `detect`
says why, naming the cgroup and what to do, and the platform refuses the scenario.
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
    note: str  # how limits are enforced, or why they are not (naming the cgroup and what to do)
    mount: Path | None = None  # v2: the hierarchy's root (exempt from the no-internal-process rule)

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


def _v2_mount(mounts: list[tuple[str, Path, set[str]]]) -> Path | None:
    """The cgroup2 mount that carries controllers (a hybrid v1 machine also has an empty one)."""
    found = [mount for fstype, mount, _ in mounts if fstype == "cgroup2"]
    return next((m for m in found if _read(m / "cgroup.controllers").split()), found[0] if found else None)


def v2_problem(mount: Path, base: Path, controller: str) -> str | None:
    """Why children of `base` cannot get `controller` under cgroup v2's delegation rules; None when they can."""
    if not base.is_dir():
        return (f"cgroup {base} does not exist; create it (with {controller} delegated to it) or set "
                f"local.cgroup_parent to an existing cgroup")
    if controller not in _read(base / "cgroup.controllers").split():
        return (f"{base}/cgroup.controllers lacks {controller}: the cgroup above does not delegate it; add "
                f"+{controller} to {base.parent}/cgroup.subtree_control, or set local.cgroup_parent to a cgroup "
                f"that has it")
    if not os.access(base, os.W_OK):
        return (f"cgroup {base} is not writable by this user: delegate it (chown it and its cgroup.procs, "
                f"cgroup.subtree_control to this user, as systemd's Delegate=yes does) or run as root")
    if controller in _read(base / "cgroup.subtree_control").split():
        return None
    if not os.access(base / "cgroup.subtree_control", os.W_OK):
        return f"{base}/cgroup.subtree_control is not writable by this user: delegate the cgroup or run as root"
    if base != mount and _read(base / "cgroup.procs").split():
        return (f"cgroup {base} holds processes (its cgroup.procs is not empty; kubexp's own when it is kubexp's "
                f"cgroup), and cgroup v2 lets only a cgroup without processes enable {controller} for its "
                f"children; set local.cgroup_parent to an empty cgroup that has it, e.g. as root: "
                f"mkdir {mount}/kubexp; echo '+memory +cpu' > {mount}/cgroup.subtree_control; "
                f"and cgroup_parent: /kubexp")
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
    tried = [str(m / (parent if parent is not None else own.get("memory", "/")).lstrip("/"))
             for fstype, m, options in mounts if fstype == "cgroup" and "memory" in options]
    v1 = (f"cgroup v1: {', '.join(tried)} is not a writable memory cgroup (run as root or set local.cgroup_parent "
          f"to one)" if tried else "no cgroup v1 memory controller")
    mount = _v2_mount(mounts)
    if mount is None:
        return CgroupSupport("none", None, None, f"{v1}, and no cgroup v2 hierarchy is mounted")
    base = mount / (parent if parent is not None else own.get("", "/")).lstrip("/")
    problem = v2_problem(mount, base, "memory")
    if problem is not None:
        return CgroupSupport("none", None, None, f"{v1}; cgroup v2: {problem}", mount)
    cpu_problem = v2_problem(mount, base, "cpu")
    note = f"cgroup v2 at {base}" + (f"; cpu limits cannot be enforced: {cpu_problem}" if cpu_problem else "")
    return CgroupSupport("v2", base, None if cpu_problem else base, note, mount)


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
        base = support.memory_base
        wanted = ["memory"] + (["cpu"] if support.cpu_base is not None and cpu_millicores else [])
        for name in wanted:
            problem = v2_problem(support.mount or base, base, name)
            if problem is not None:
                raise CgroupError(problem)
        top = _mkdirs(base / group)  # holds no process: it may enable controllers for the replicas' leaves
        for folder in (base, top):  # v2: a controller must be enabled on every level above
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
