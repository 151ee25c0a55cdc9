"""A real etcd: the fingerprint tells a RAM disk from an injected fsync delay (a slow network disk)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kubexp.platform.local import LocalPlatform, targets


@pytest.mark.slow
def test_fingerprint_tells_ramdisk_from_delayed_fsync(make_platform: Callable[..., LocalPlatform]) -> None:
    platform = make_platform({"fingerprint_puts": 150})
    ramdisk = platform.configure_etcd({"etcd_storage": "ramdisk", "etcd_fsync_delay_ms": 0})
    data_dir = Path(ramdisk["etcd_data_dir"])
    assert ramdisk["etcd_data_fstype"] == "tmpfs" and data_dir.is_dir()
    assert ramdisk["wal_fsyncs"] >= 100
    assert ramdisk["wal_fsync_mean_ms"] < 1.0

    [group] = [g for g in targets.read(platform.targets_file) if g["labels"]["component"] == "etcd"]
    assert group["targets"] == [ramdisk["etcd_client_url"].removeprefix("http://")]

    log_messages = [json.loads(line).get("msg") for line in platform.etcd_log_path.read_text().splitlines()]
    assert "ready to serve client requests" in log_messages  # zap JSON lines, what the etcd-log collector reads

    # The delay stands for a slow disk: a RAM disk ignores it, the disk gets it.
    undelayed = platform.configure_etcd({"etcd_storage": "ramdisk", "etcd_fsync_delay_ms": 5})
    assert undelayed["etcd_fsync_delay_ms"] == 0 and undelayed["etcd_data_fstype"] == "tmpfs"
    delayed = platform.configure_etcd({"etcd_storage": "disk", "etcd_fsync_delay_ms": 5})
    assert delayed["etcd_fsync_delay_ms"] == 5 and delayed["etcd_data_fstype"] != "tmpfs"
    assert delayed["wal_fsync_mean_ms"] > 4.0 > ramdisk["wal_fsync_mean_ms"]
    assert delayed["wal_fsync_p99_ms"] > ramdisk["wal_fsync_p99_ms"]
    assert delayed["fingerprint_puts_per_s"] < ramdisk["fingerprint_puts_per_s"]
    assert platform.fingerprint()["etcd"] == delayed

    platform.teardown()
    assert not data_dir.exists() and not platform.targets_file.exists()
