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


def test_results_go_to_a_private_folder_of_this_user_and_run_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results used to go to /dev/shm/kubexp, shared by everyone and never checked."""
    import os

    from kubexp.load.ramdisk import PrivateFolderError, private_folder, results_root
    from kubexp.suite import LoadSection

    monkeypatch.setenv("KUBEXP_HOME", str(tmp_path / "home-a"))
    root_a = results_root(LoadSection())
    monkeypatch.setenv("KUBEXP_HOME", str(tmp_path / "home-b"))
    assert root_a.parent == Path("/dev/shm") and root_a.name.startswith(f"kubexp-{os.geteuid()}-")
    assert results_root(LoadSection()) != root_a  # one per run folder
    assert results_root(LoadSection(results_dir="/dev/shm/mine")) == Path("/dev/shm/mine")

    created = private_folder(tmp_path / "results" / "root")
    assert (created.stat().st_mode & 0o777, created.stat().st_uid) == (0o700, os.geteuid())
    assert private_folder(created) == created  # checked again: fine

    created.chmod(0o755)
    with pytest.raises(PrivateFolderError, match=rf"{created} is open to other users \(mode 0755\); remove it, "
                                                 r"or set the suite's load.results_dir"):
        private_folder(created)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "results")
    with pytest.raises(PrivateFolderError, match=f"{link} is a symbolic link"):
        private_folder(link)
    if os.geteuid() == 0:  # planted by another user beforehand
        planted = tmp_path / "planted"
        planted.mkdir(mode=0o700)
        os.chown(planted, 65534, 65534)
        with pytest.raises(PrivateFolderError, match=f"{planted} belongs to uid 65534, not to this user"):
            private_folder(planted)
