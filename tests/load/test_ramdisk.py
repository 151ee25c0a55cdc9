"""Results folders must be on a RAM disk; the check reads the real mount table."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from kubexp.load.ramdisk import RamDiskError, filesystem_of, require_ramdisk


def test_dev_shm_is_accepted_and_created() -> None:
    parent = Path(tempfile.mkdtemp(prefix="kubexp-ramdisk-", dir="/dev/shm"))
    try:
        folder = require_ramdisk(parent / "suite" / "experiment")
        assert folder.is_dir()
        assert filesystem_of(folder) == ("/dev/shm", "tmpfs")
    finally:
        shutil.rmtree(parent)


def test_a_disk_folder_is_refused_with_its_filesystem_named(tmp_path: Path) -> None:
    mount_point, fstype = filesystem_of(tmp_path)
    assert fstype not in ("tmpfs", "ramfs"), "this test needs pytest's tmp_path on a disk"
    with pytest.raises(RamDiskError, match=f"{tmp_path}/results is on {fstype} .*load.results_dir"):
        require_ramdisk(tmp_path / "results")
    assert not (tmp_path / "results").exists()  # refused before anything is written


def test_longest_mount_point_wins_and_escapes_are_decoded(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "overlay / overlay rw 0 0\n"
        "tmpfs /mnt/ram\\040disk tmpfs rw 0 0\n"
        "ext4 /mnt/ram\\040disk/persisted ext4 rw 0 0\n"
    )
    assert filesystem_of(Path("/mnt/ram disk/results"), mounts) == ("/mnt/ram disk", "tmpfs")
    assert filesystem_of(Path("/mnt/ram disk/persisted/x"), mounts) == ("/mnt/ram disk/persisted", "ext4")
    assert filesystem_of(Path("/mnt/ram disks"), mounts) == ("/", "overlay")
