"""Load results go to a RAM disk, so writing them never competes with the load generator for disk I/O."""

from __future__ import annotations

from pathlib import Path

RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


class RamDiskError(RuntimeError):
    """The results folder is not on a RAM-backed filesystem."""


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes (\040 ...).
    return field.encode("latin-1").decode("unicode_escape")


def filesystem_of(path: Path, mounts: Path = Path("/proc/mounts")) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount that holds `path` (longest matching mount point)."""
    target = path.resolve()
    best = ("", "")
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point, fstype = _unescape(fields[1]), fields[2]
        mount_path = Path(mount_point)
        if (target == mount_path or mount_path in target.parents) and len(mount_point) >= len(best[0]):
            best = (mount_point, fstype)
    return best


def require_ramdisk(path: Path, mounts: Path = Path("/proc/mounts")) -> Path:
    """Check `path` is (or would be) on tmpfs/ramfs, then create it; raise RamDiskError naming the path otherwise."""
    mount_point, fstype = filesystem_of(path, mounts)
    if fstype not in RAM_FILESYSTEMS:
        raise RamDiskError(
            f"load results folder {path} is on {fstype or 'an unknown filesystem'} (mount {mount_point or '?'}), "
            f"not a RAM disk; set the suite's load.results_dir to a folder under a tmpfs mount such as /dev/shm"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path
