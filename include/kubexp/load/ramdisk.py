"""Load results go to a RAM disk, so writing them never competes with the load generator for disk I/O,
inside a folder only this user can enter."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubexp.suite import LoadSection

RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


class RamDiskError(RuntimeError):
    """The results folder is not on a RAM-backed filesystem."""


class PrivateFolderError(RuntimeError):
    """The results root is not a folder of this user's alone; the message names it and what to do."""


def results_root(load: LoadSection) -> Path:
    """Where a suite's load results go: load.results_dir, else /dev/shm/kubexp-<uid>-<hash of the run folder>
    (one per user and run folder). Either must pass `private_folder` before anything is written below it."""
    if load.results_dir:
        return Path(load.results_dir)
    from kubexp import settings

    run_dir = str(settings.run_dir().resolve())
    return Path("/dev/shm") / f"kubexp-{os.geteuid()}-{hashlib.sha256(run_dir.encode()).hexdigest()[:12]}"


def private_folder(path: Path) -> Path:
    """Create `path` with mode 0700, or check that the existing one is a real folder (no symbolic link) of this
    user that no one else can enter: another user could otherwise read the results, or plant files and links
    for the load and collect steps to follow."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    info = os.lstat(path)
    what = ("is a symbolic link" if stat.S_ISLNK(info.st_mode) else "is not a folder" if not stat.S_ISDIR(info.st_mode)
            else f"belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})" if info.st_uid != os.geteuid()
            else f"is open to other users (mode {stat.S_IMODE(info.st_mode):04o})" if info.st_mode & 0o077 else "")
    if what:
        raise PrivateFolderError(f"load results folder {path} {what}; remove it, or set the suite's "
                                 f"load.results_dir to a folder of your own with mode 0700 (on a RAM disk)")
    return path


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
