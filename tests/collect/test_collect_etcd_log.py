"""etcd log parsing against real etcd output: a live etcd 3.5 with delayed fsyncs, logs captured from
etcd 3.4 (text and zap) and 3.5 clusters (data/etcd/capture.sh). Fetching over SSH: tests/platform/kubernetes/."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from metrics_stack import ETCD, etcd_process

from kubexp.collect import etcd_log
from kubexp.records import Window

DATA = Path(__file__).parent / "data" / "etcd"
ETCDCTL = ETCD.parent / "etcdctl"
CAPTURED_AT = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)  # the captured logs were written after this instant

EXPECTED = {
    "etcd-3.4-text-leader-change.log": {"EtcdSlowHeartbeat": 18, "EtcdSlowRequest": 2, "EtcdLeaderElected": 2,
                                        "EtcdLeaderLost": 1},
    "etcd-3.4-text-slow-fsync.log": {"EtcdSlowFsync": 7, "EtcdSlowRequest": 6, "EtcdLeaderElected": 1},
    "etcd-3.4-zap-slow-requests.log": {"EtcdSlowRequest": 9, "EtcdSlowTrace": 16, "EtcdLeaderElected": 1},
    "etcd-3.5-leader-change.log": {"EtcdSlowHeartbeat": 16, "EtcdSlowRequest": 5, "EtcdSlowTrace": 3,
                                   "EtcdLeaderElected": 2, "EtcdLeaderLost": 1},
    "etcd-3.5-slow-fsync.log": {"EtcdSlowFsync": 8, "EtcdSlowRequest": 11, "EtcdSlowTrace": 7,
                                "EtcdLeaderElected": 1},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_captured_logs_of_both_formats(name: str) -> None:
    events = etcd_log.parse((DATA / name).read_text(), CAPTURED_AT, "m1")

    assert Counter(e.kind for e in events) == EXPECTED[name]
    assert all(e.source == "etcd-log" and e.obj == "m1" and e.at.tzinfo is UTC for e in events)
    assert all(e.t == int((e.at - CAPTURED_AT).total_seconds() // 1) for e in events)


def test_text_timestamps_and_messages() -> None:
    text = (DATA / "etcd-3.4-text-leader-change.log").read_text()
    events = etcd_log.parse(text, CAPTURED_AT, "m1")
    heartbeat = next(e for e in events if e.kind == "EtcdSlowHeartbeat")
    assert heartbeat.at == datetime(2026, 11, 28, 17, 18, 32, 473768, tzinfo=UTC)
    assert heartbeat.message == ("failed to send out heartbeat on time (exceeded the 100ms timeout for 101.473858ms, "
                                 "to f4e67b28e8fc53f3)")
    lost = next(e for e in events if e.kind == "EtcdLeaderLost")
    assert lost.message == "9f40acca3696e61f lost leader 9f40acca3696e61f at term 3"
    # capnslog writes the host's local time: a host on UTC+2 shifts every event by two hours.
    shifted = etcd_log.parse(text, CAPTURED_AT, "m1", text_tz=timezone(timedelta(hours=2)))
    assert [e.at for e in shifted] == [e.at - timedelta(hours=2) for e in events]


def test_zap_details_and_window() -> None:
    text = (DATA / "etcd-3.5-slow-fsync.log").read_text()
    fsync = [e for e in etcd_log.parse(text, CAPTURED_AT, "m1") if e.kind == "EtcdSlowFsync"]
    assert fsync[0].message == "slow fdatasync; took=1.10650544s; expected-duration=1s"
    assert fsync[0].at == datetime(2026, 11, 28, 17, 19, 1, 152000, tzinfo=UTC)
    start, end = fsync[1].at, fsync[3].at
    windowed = etcd_log.parse(text, CAPTURED_AT, "m1", start=start, end=end)
    assert windowed and all(start <= e.at <= end for e in windowed)
    assert [e.at for e in windowed if e.kind == "EtcdSlowFsync"] == [e.at for e in fsync[1:4]]


def test_journal_and_container_runtime_prefixes() -> None:
    text_line = "2026-11-28 17:18:33.689872 W | etcdserver: read-only range request took too long (599.9ms) to execute"
    zap_line = ('{"level":"warn","ts":"2026-11-28T17:19:01.152Z","caller":"wal/wal.go:802","msg":"slow fdatasync",'
                '"took":"1.1s","expected-duration":"1s"}')
    lines = [
        f"2026-11-28T19:18:34.000001+02:00 node-1 etcd[812]: {text_line}",  # journal time wins for text lines
        f"2026-11-28T17:19:01.152345678Z stderr F {zap_line}",  # CRI log of a static pod
        "2026-11-28T17:19:02+0000 node-1 etcd[812]: some line etcd would never write {not json",
    ]
    events = etcd_log.parse("\n".join(lines), CAPTURED_AT, "node-1")
    assert [(e.kind, e.at) for e in events] == [
        ("EtcdSlowRequest", datetime(2026, 11, 28, 17, 18, 34, 1, tzinfo=UTC)),
        ("EtcdSlowFsync", datetime(2026, 11, 28, 17, 19, 1, 152000, tzinfo=UTC)),
    ]


@pytest.fixture(scope="module")
def slow_etcd_log() -> Iterator[tuple[Path, datetime, datetime]]:
    """A real etcd 3.5 whose fdatasyncs take 150 ms, after a burst of concurrent puts and gets."""
    root = Path(tempfile.mkdtemp(prefix="kubexp-etcd-log-"))
    etcd, port = etcd_process(root, name="slow", delay_us=150_000)
    started = datetime.now(UTC)
    try:
        etcd.start(timeout=60)
        clients = [subprocess.Popen([str(ETCDCTL), f"--endpoints=127.0.0.1:{port}", *args], stdout=subprocess.DEVNULL)
                   for i in range(4) for args in (["put", f"k{i}", "v"], ["get", "k"])]
        for client in clients:
            assert client.wait(timeout=60) == 0
        time.sleep(0.5)
    finally:
        etcd.stop()
    yield etcd.logfile, started, datetime.now(UTC)
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_live_etcd_with_slow_fsync(slow_etcd_log: tuple[Path, datetime, datetime], tmp_path: Path) -> None:
    log_path, started, stopped = slow_etcd_log
    collected = etcd_log.LocalEtcdLog(log_path, "slow").collect(Window(started, started, stopped, tmp_path))

    kinds = Counter(e.kind for e in collected.events)
    assert kinds["EtcdLeaderElected"] == 1 and kinds["EtcdSlowRequest"] >= 1
    assert all(0 <= e.t <= (stopped - started).total_seconds() for e in collected.events)
    # Go's duration format: "took=390.1ms;", and from 1 s on (a busy machine) "took=1.2s;"
    took = [re.search(r"took=([\d.]+)(ms|s);", e.message) for e in collected.events if e.kind == "EtcdSlowRequest"]
    took_ms = [float(m[1]) * (1 if m[2] == "ms" else 1000) for m in took if m]
    assert took_ms and min(took_ms) >= 100  # etcd warns from 100 ms; each fsync alone took 150 ms
    (artifact,) = collected.artifacts
    raw = log_path.read_bytes()
    assert artifact.kind == "etcd-log" and artifact.size == len(raw)
    assert hashlib.sha256(gzip.decompress(Path(artifact.path).read_bytes())).hexdigest() == artifact.sha256
    # The window applies: from just after the election on, the election is no longer an event of it.
    election = next(e for e in collected.events if e.kind == "EtcdLeaderElected")
    later = etcd_log.parse(log_path.read_text(), started, "slow", start=election.at + timedelta(microseconds=1))
    assert "EtcdLeaderElected" not in {e.kind for e in later}
