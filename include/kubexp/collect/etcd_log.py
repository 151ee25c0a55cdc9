"""etcd's log, read for what the paper found by hand: slow-disk warnings and leader changes.

`parse` understands both log formats etcd writes:
- zap JSON lines (etcd 3.5, and 3.4 with --logger=zap): {"level":"warn","ts":"...","msg":"...", ...}
- capnslog text (etcd 3.4's default): `2024-05-01 12:00:00.123456 W | etcdserver: ...` and
  raft's `raft2024/05/01 12:00:00 INFO: ...` (local time of the etcd host: pass `text_tz`),
with any prefix before them (a journal line, a container runtime line) ignored, except that
a journal's ISO timestamp (journalctl -o short-iso-precise) is preferred for text lines.

Kinds of PlatformEvent (source "etcd-log", obj = the member's name):
    EtcdSlowFsync      "slow fdatasync" / "sync duration of ..., expected less than 1s" (WAL fsync > 1 s)
    EtcdSlowHeartbeat  leader failed to send out a heartbeat on time (its disk or CPU stalls)
    EtcdSlowRequest    "... took too long ...", "request stats" (requests and applies over 100 ms)
    EtcdSlowTrace      trace[...] lines: a request's steps when it took over 100 ms (zap only)
    EtcdLeaderElected / EtcdLeaderLost / EtcdLeaderChanged   raft's view of the leader on this member
t is floor(seconds from t0), so an event falls into the load second it happened in.

A platform supplies the text: the local platform's own etcd log (`LocalEtcdLog`), or a cluster's
members over SSH (kubexp.platform.kubernetes.etcd_log.RemoteEtcdLog); the raw text is archived.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from kubexp.artifacts import archive
from kubexp.records import Collected, PlatformEvent, Window

SOURCE = "etcd-log"
ARTIFACT_KIND = "etcd-log"
_DETAILS = ("took", "time spent", "duration", "expected-duration", "to", "exceeded-duration", "prefix", "request",
            "request content", "detail")
_MESSAGE_LIMIT = 500

_JOURNAL = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))\s")
_CAPNSLOG = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+) ([CEWNID]) \| ([\w./-]+): (.*)$")
_RAFT_TEXT = re.compile(r"raft ?(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) (?:INFO|WARN|ERROR|DEBUG): (.*)$")
_LEADER = [
    ("EtcdLeaderChanged", re.compile(r"changed leader from \w+ to \w+ at term \d+")),
    ("EtcdLeaderElected", re.compile(r"elected leader \w+ at term \d+")),
    ("EtcdLeaderLost", re.compile(r"lost leader \w+ at term \d+")),
]


def classify(message: str) -> str | None:
    """The event kind of one log message (zap `msg` or capnslog text), None if it is not one we keep."""
    if message.startswith("trace["):
        return "EtcdSlowTrace"
    if message == "slow fdatasync" or message.startswith("sync duration of"):
        return "EtcdSlowFsync"
    if "failed to send out heartbeat on time" in message:
        return "EtcdSlowHeartbeat"
    if "took too long" in message or message == "request stats" or "timed out waiting for read index" in message:
        return "EtcdSlowRequest"
    for kind, pattern in _LEADER:
        if pattern.search(message):
            return kind
    return None


def parse(text: str, t0: datetime, member: str, *, start: datetime | None = None, end: datetime | None = None,
          text_tz: tzinfo = UTC) -> list[PlatformEvent]:
    """PlatformEvents of one member's log text, optionally only those in [start, end], in log order."""
    if t0.tzinfo is None:
        raise ValueError("t0 must be a timezone-aware datetime (UTC)")
    events = []
    for line in text.splitlines():
        found = _parse_line(line, text_tz)
        if found is None:
            continue
        kind, at, message = found
        if (start is not None and at < start) or (end is not None and at > end):
            continue
        events.append(PlatformEvent(t=math.floor((at - t0).total_seconds()), at=at, source=SOURCE, kind=kind,
                                    obj=member, message=message[:_MESSAGE_LIMIT]))
    return events


def _parse_line(line: str, text_tz: tzinfo) -> tuple[str, datetime, str] | None:
    brace = line.find('{"')
    if brace >= 0:
        try:
            record, _ = json.JSONDecoder().raw_decode(line, brace)
        except ValueError:
            record = None
        if isinstance(record, dict) and "msg" in record and "ts" in record:
            return _from_zap(record)
    journal = _JOURNAL.match(line)
    journal_at = _iso(journal.group(1)) if journal else None
    if text := _CAPNSLOG.search(line):
        stamp, fmt, message = text.group(1), "%Y-%m-%d %H:%M:%S.%f", text.group(4)
    elif text := _RAFT_TEXT.search(line):
        stamp, fmt, message = text.group(1), "%Y/%m/%d %H:%M:%S", text.group(2)
    else:
        return None
    kind = classify(message)
    if kind is None:
        return None
    at = journal_at or datetime.strptime(stamp, fmt).replace(tzinfo=text_tz).astimezone(UTC)
    return kind, at, message.removeprefix("raft.node: ")


def _from_zap(record: Mapping[str, Any]) -> tuple[str, datetime, str] | None:
    message = str(record["msg"])
    kind = classify(message)
    if kind is None:
        return None
    stamp = record["ts"]
    at = datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, int | float) else _iso(str(stamp))
    if at is None:
        return None
    details = [f"{key}={record[key]}" for key in _DETAILS if record.get(key) not in (None, "")]
    return kind, at, "; ".join([message.removeprefix("raft.node: "), *details])


def _iso(stamp: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00") if stamp.endswith("Z") else stamp)
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


# -- collection -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalEtcdLog:
    """The local platform's etcd log (one per etcd start): archived whole, the window's events parsed; nothing
    while etcd has not written one."""

    log_path: Path
    member: str
    name: str = "etcd log"

    def collect(self, window: Window) -> Collected:
        if not self.log_path.exists():
            return Collected(events=[], artifacts=[])
        text = self.log_path.read_text(errors="replace")
        return Collected(events=parse(text, window.t0, self.member, start=window.start, end=window.end),
                         artifacts=[archive(self.log_path, window.dest_dir, kind=ARTIFACT_KIND)])
