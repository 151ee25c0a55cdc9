"""etcd's log fetched from a cluster's members over SSH (journalctl of a unit, or the tail of a log
file, per member) through the ssh provider's SSHHook; parsed by kubexp.collect.etcd_log."""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubexp.artifacts import archive
from kubexp.collect.etcd_log import ARTIFACT_KIND, parse
from kubexp.platform.kubernetes.remote_exec import exec_to_end
from kubexp.records import Artifact, Collected, PlatformEvent, Window

if TYPE_CHECKING:
    from kubexp.suite import Suite


class EtcdLogError(RuntimeError):
    """A log could not be fetched; names the member, host connection and command."""


@dataclass(frozen=True)
class EtcdLogSource:
    """Where one member's log is: a systemd journal unit, or a log file, on a host reached over SSH."""

    member: str
    ssh_conn_id: str
    journal_unit: str | None = "etcd"
    log_file: str | None = None  # instead of the journal; its last `max_bytes` are read
    sudo: bool = False
    max_bytes: int = 64 << 20
    text_tz: tzinfo = UTC  # time zone of capnslog text timestamps when read from a plain file

    def command(self, start: datetime, end: datetime) -> list[str]:
        """The argument list that prints the log around [start, end] (one second of margin each side)."""
        prefix = ["sudo", "-n", "--"] if self.sudo else []
        if self.log_file:
            return [*prefix, "tail", "-c", str(self.max_bytes), "--", self.log_file]
        since = (start - timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        until = (end + timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return [*prefix, "journalctl", "--unit", str(self.journal_unit), "--since", since, "--until", until,
                "--output", "short-iso-precise", "--utc", "--no-pager", "--quiet"]

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any], where: str) -> EtcdLogSource:
        unknown = sorted(set(entry) - {"member", "ssh_conn_id", "journal_unit", "log_file", "sudo", "max_bytes"})
        if unknown or not entry.get("member") or not entry.get("ssh_conn_id"):
            raise EtcdLogError(f"{where}: needs member and ssh_conn_id, optionally journal_unit or log_file, sudo, "
                               f"max_bytes" + (f"; unknown key(s) {', '.join(unknown)}" if unknown else ""))
        if entry.get("journal_unit") and entry.get("log_file"):
            raise EtcdLogError(f"{where}: give journal_unit or log_file, not both")
        return cls(member=str(entry["member"]), ssh_conn_id=str(entry["ssh_conn_id"]),
                   journal_unit=None if entry.get("log_file") else str(entry.get("journal_unit") or "etcd"),
                   log_file=str(entry["log_file"]) if entry.get("log_file") else None,
                   sudo=bool(entry.get("sudo", False)), max_bytes=int(entry.get("max_bytes", 64 << 20)))


def sources_from_suite(suite: Suite) -> list[EtcdLogSource]:
    """`metrics.etcd_logs` entries, else one journal source (unit "etcd") per `kubernetes.etcd.members` entry."""
    entries = suite.metrics.etcd_logs
    if entries is not None:
        return [EtcdLogSource.from_mapping(entry, f"{suite.path}: metrics.etcd_logs[{i}]")
                for i, entry in enumerate(entries)]
    members = (suite.kubernetes.get("etcd") or {}).get("members") or []
    return [EtcdLogSource.from_mapping({"member": m.get("name"), "ssh_conn_id": m.get("ssh_conn_id")},
                                       f"{suite.path}: kubernetes.etcd.members[{i}]")
            for i, m in enumerate(members)]


@dataclass(frozen=True)
class RemoteEtcdLog:
    """Each member's log fetched over SSH, archived as etcd-<member>.log.gz, the window's events parsed."""

    sources: Sequence[EtcdLogSource]
    timeout_s: float = 120.0
    name: str = "etcd logs over SSH"

    def collect(self, window: Window) -> Collected:
        events: list[PlatformEvent] = []
        artifacts: list[Artifact] = []
        for source in self.sources:
            text = _fetch(source, window.start, window.end, self.timeout_s)
            artifacts.append(_archive_text(text, f"etcd-{source.member}.log", window.dest_dir))
            events += parse(text, window.t0, source.member, start=window.start, end=window.end,
                            text_tz=source.text_tz)
        events.sort(key=lambda event: event.at)
        return Collected(events=events, artifacts=artifacts)


def _fetch(source: EtcdLogSource, start: datetime, end: datetime, timeout_s: float) -> str:
    from kubexp import connections

    line = shlex.join(source.command(start, end))
    where = f"etcd member {source.member!r} via SSH connection {source.ssh_conn_id!r}"
    try:
        with connections.ssh_client(source.ssh_conn_id, timeout_s) as client:
            status, out, err = exec_to_end(client, line, timeout_s)
    except Exception as exc:  # paramiko, socket and Airflow lookup errors alike
        raise EtcdLogError(f"{where}: `{line}` could not run ({exc}); check the connection") from exc
    if status != 0:
        detail = " | ".join(err.decode(errors="replace").strip().splitlines()[-2:]) or "no output"
        raise EtcdLogError(f"{where}: `{line}` exited with {status}: {detail}; check journal_unit / log_file"
                           f"{' and sudo rights' if source.sudo else ' (or set sudo: true)'}")
    return out.decode(errors="replace")


def _archive_text(text: str, name: str, dest_dir: Path) -> Artifact:
    with tempfile.TemporaryDirectory(prefix="kubexp-etcd-log-") as staging:
        raw = Path(staging) / name
        raw.write_text(text)
        return archive(raw, dest_dir, kind=ARTIFACT_KIND)

