"""Move a Kubespray-style etcd between a RAM disk (tmpfs) and its persistent data dir, over SSH.

Kubespray runs etcd as a systemd unit that reads /etc/etcd.env, whose ETCD_DATA_DIR says
where the data lives. Per member, one at a time: snapshot (refuse to go on if it fails; the
member's last `snapshots_kept` snapshots are kept, one per switch, named by time and attempt),
prepare and check the target file system, stop, copy the data, point ETCD_DATA_DIR at the
target, start, wait for `etcdctl endpoint health`, and record a fingerprint (file system,
version, WAL fsync and backend commit means from etcd's own metrics, over the probe writes). With
`restart="on-change"` a member whose etcd is still the process kubexp last started on the same data
dir and fsync delay (its start time, from its metrics, matches a state file kubexp wrote beside the
snapshots) is not stopped: only the snapshot, checks and fingerprint run. Whatever ends the step
while etcd is stopped (a failed command, a task timeout, an interrupt) starts it again on its
old data dir first; a task killed outright leaves that to `start_stopped`, which cleanup runs.

Every command comes from an `EtcdProfile` (argument lists with placeholders); the defaults fit
Kubespray with systemctl, and a profile can replace any of them (the tests use one that starts
etcd as a plain process). A RAM disk loses etcd's data on reboot: docs/cluster-setup.md says
how to restore from the snapshot this module leaves in `backup_dir`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubexp.platform.base import PlatformError
from kubexp.platform.kubernetes.commands import fill
from kubexp.platform.kubernetes.remote import CommandResult, RemoteHost

log = logging.getLogger(__name__)

STORAGES = ("ramdisk", "disk")
RESTARTS = ("always", "on-change")  # kubernetes.etcd.restart
STATE_FILE = "kubexp-etcd-state.json"  # in the member's snapshot folder: what kubexp last started
_KUBESPRAY_CERTS = "/etc/ssl/etcd/ssl"

# Fixed scripts take their values as positional arguments ("$1", "$2"), never spliced into the text.
_PREPARE_RAMDISK = 'mkdir -p -- "$1" && { mountpoint -q -- "$1" || mount -t tmpfs -o "size=$2,mode=0700" tmpfs "$1"; }'
_COPY_DATA = (
    'if [ "$1" -ef "$2" ]; then echo "source and target are the same directory" >&2; exit 3; fi; '
    'rm -rf -- "$2/member" && cp -a -- "$1/member" "$2/member"'
)
# Snapshot names start with their UTC time: the shell's sorted glob lists them oldest first.
_PRUNE_SNAPSHOTS = 'cd -- "$1" || exit 1; k=$2; set -- *.db; [ -e "$1" ] || exit 0; ' \
                   'while [ "$#" -gt "$k" ]; do rm -f -- "$1"; shift; done'
# The probe writes in one command (one SSH round trip instead of one per write): "$1" puts, then one delete,
# each by the profile's etcdctl argument list, which follows as "$@".
_PROBE_WRITES = ('n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do "$@" put kubexp/fingerprint "$i" > /dev/null '
                 '|| exit 1; i=$((i + 1)); done; "$@" del kubexp/fingerprint > /dev/null')
_WRITE_FILE = 'printf "%s\\n" "$2" > "$1.partial" && mv -f -- "$1.partial" "$1"'
_SET_DATA_DIR = (
    'D="$2" awk \'/^ETCD_DATA_DIR=/ { print "ETCD_DATA_DIR=" ENVIRON["D"]; done = 1; next } { print } '
    'END { if (!done) print "ETCD_DATA_DIR=" ENVIRON["D"] }\' "$1" > "$1.kubexp" '
    '&& cat -- "$1.kubexp" > "$1" && rm -f -- "$1.kubexp"'
)


@dataclass(frozen=True)
class EtcdProfile:
    """Commands and paths for one etcd deployment style. Placeholders: {member} {endpoint}
    {env_file} {disk_path} {ramdisk_path} {ramdisk_size} {backup_dir} {snapshot_dir} (the member's folder
    in backup_dir) {snapshots_kept} {data_dir} {from_dir} {to_dir} {fsync_delay_ms}. `set_fsync_delay`
    (empty by default: Kubespray has no such thing) runs while etcd is stopped and makes its next start
    delay every fdatasync by {fsync_delay_ms} (0: none)."""

    sudo: bool = False
    env_file: str = "/etc/etcd.env"
    disk_path: str = "/var/lib/etcd"
    ramdisk_path: str = "/var/lib/etcd-ramdisk"
    ramdisk_size: str = "2g"
    backup_dir: str = "/var/backups/kubexp-etcd"
    etcdctl: tuple[str, ...] = (
        "etcdctl", "--endpoints={endpoint}", f"--cacert={_KUBESPRAY_CERTS}/ca.pem",
        f"--cert={_KUBESPRAY_CERTS}/admin-{{member}}.pem", f"--key={_KUBESPRAY_CERTS}/admin-{{member}}-key.pem",
    )
    stop: tuple[str, ...] = ("systemctl", "stop", "etcd")
    start: tuple[str, ...] = ("systemctl", "start", "etcd")
    read_env: tuple[str, ...] = ("cat", "--", "{env_file}")
    prepare_ramdisk: tuple[str, ...] = ("sh", "-c", _PREPARE_RAMDISK, "kubexp-prepare-ramdisk",
                                        "{ramdisk_path}", "{ramdisk_size}")
    prepare_disk: tuple[str, ...] = ("mkdir", "-p", "-m", "0700", "--", "{disk_path}")
    make_backup_dir: tuple[str, ...] = ("mkdir", "-p", "-m", "0700", "--", "{backup_dir}", "{snapshot_dir}")
    prune_snapshots: tuple[str, ...] = ("sh", "-c", _PRUNE_SNAPSHOTS, "kubexp-prune-snapshots", "{snapshot_dir}",
                                        "{snapshots_kept}")
    snapshots_kept: int = 5  # per member, newest first; at least 1
    filesystem: tuple[str, ...] = ("stat", "-f", "-c", "%T", "--", "{data_dir}")
    copy_data: tuple[str, ...] = ("sh", "-c", _COPY_DATA, "kubexp-copy-etcd-data", "{from_dir}", "{to_dir}")
    set_data_dir: tuple[str, ...] = ("sh", "-c", _SET_DATA_DIR, "kubexp-set-data-dir", "{env_file}", "{data_dir}")
    set_fsync_delay: tuple[str, ...] = ()
    metrics: tuple[str, ...] = (
        "curl", "-sSf", "--cacert", f"{_KUBESPRAY_CERTS}/ca.pem", "--cert", f"{_KUBESPRAY_CERTS}/admin-{{member}}.pem",
        "--key", f"{_KUBESPRAY_CERTS}/admin-{{member}}-key.pem", "{endpoint}/metrics",
    )
    fingerprint_writes: int = 10  # small puts before reading the fsync metrics (0: none)
    health_timeout_s: float = 120.0
    poll_interval_s: float = 2.0

    @classmethod
    def from_mapping(cls, overrides: Mapping[str, Any], where: str = "kubernetes.etcd.profile") -> EtcdProfile:
        """The Kubespray defaults with `overrides` applied (lists become argument tuples)."""
        fields = {field.name: field for field in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in fields:
                raise ValueError(f"{where}.{key}: unknown key; allowed: {', '.join(sorted(fields))}")
            default = getattr(cls(), key)
            if isinstance(default, tuple):
                # Only commands that are optional (empty by default, like set_fsync_delay) may be left empty.
                if not isinstance(value, list) or (default and not value) \
                        or not all(isinstance(v, str | int) for v in value):
                    raise ValueError(f"{where}.{key}: must be a non-empty list of strings (one per argument)")
                values[key] = tuple(str(v) for v in value)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{where}.{key}: must be true or false")
                values[key] = value
            elif isinstance(default, int | float):
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
                        or (isinstance(default, int) and value != int(value)):
                    raise ValueError(f"{where}.{key}: must be a {'whole ' if isinstance(default, int) else ''}"
                                     f"number >= 0")
                values[key] = type(default)(value)
            else:
                if not isinstance(value, str) or not value:
                    raise ValueError(f"{where}.{key}: must be a non-empty string")
                values[key] = value
        profile = cls(**values)
        profile.validate(where)
        return profile

    def validate(self, where: str = "kubernetes.etcd.profile") -> None:
        for key in ("env_file", "disk_path", "ramdisk_path", "backup_dir"):
            path = getattr(self, key)
            # ETCD_DATA_DIR is written into a systemd EnvironmentFile: no line breaks, quotes or escapes.
            if not path.startswith("/") or path.rstrip("/") == "" or re.search(r"[\n\r\\\"']", path):
                raise ValueError(f"{where}.{key}: {path!r} must be an absolute path without quotes, "
                                 f"backslashes or line breaks, and not /")
        if self.snapshots_kept < 1:
            raise ValueError(f"{where}.snapshots_kept: must be at least 1 (the snapshot just taken)")
        known = dict.fromkeys(("member", "endpoint", "env_file", "disk_path", "ramdisk_path", "ramdisk_size",
                               "backup_dir", "snapshot_dir", "snapshots_kept", "data_dir", "from_dir", "to_dir",
                               "fsync_delay_ms"), "x")
        for item in dataclasses.fields(self):
            if isinstance(getattr(self, item.name), tuple):
                fill(getattr(self, item.name), known, f"{where}.{item.name}")
        if _normal(self.disk_path) == _normal(self.ramdisk_path):
            raise ValueError(f"{where}: disk_path and ramdisk_path are both {self.disk_path!r}; they must differ")

    def data_dir(self, storage: str) -> str:
        return self.ramdisk_path if storage == "ramdisk" else self.disk_path


@dataclass(frozen=True)
class EtcdMember:
    name: str  # etcd member / node name; used in Kubespray's certificate names and the snapshot file name
    ssh_conn_id: str
    endpoint: str = "https://127.0.0.1:2379"  # as seen from the member itself (the commands run there)


def _normal(path: str) -> str:
    return path.rstrip("/") or "/"


def data_dir_from_env(text: str) -> str | None:
    """ETCD_DATA_DIR from an etcd env file (last assignment wins, optional quotes removed)."""
    found = None
    for line in text.splitlines():
        match = re.match(r"\s*(?:export\s+)?ETCD_DATA_DIR=(.*)$", line)
        if match:
            found = match.group(1).strip().strip("'\"")
    return found or None


def _metric_values(metrics_text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in metrics_text.splitlines():
        match = re.match(r"(etcd_disk_(?:wal_fsync|backend_commit)_duration_seconds_(?:sum|count)"
                         r"|process_start_time_seconds)\s+(\S+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def process_start(metrics_text: str) -> float | None:
    """When the etcd process that answered started (process_start_time_seconds), None if not said."""
    return _metric_values(metrics_text).get("process_start_time_seconds")


def fsync_means(metrics_text: str, before_text: str | None = None) -> dict[str, float | int | None]:
    """Mean WAL fsync and backend commit latency (ms) and their counts from etcd's /metrics text; with
    `before_text` (the same metrics read earlier from the same process), over the interval between the two."""
    values, before = _metric_values(metrics_text), _metric_values(before_text or "")
    if before_text is not None:
        values = {key: value - before[key] for key, value in values.items() if key in before}
    result: dict[str, float | int | None] = {}
    for name, key in (("wal_fsync", "etcd_disk_wal_fsync_duration_seconds"),
                      ("backend_commit", "etcd_disk_backend_commit_duration_seconds")):
        total, count = values.get(f"{key}_sum"), values.get(f"{key}_count")
        result[f"{name}_count"] = int(count) if count is not None else None
        result[f"{name}_mean_ms"] = round(1000 * total / count, 4) if total is not None and count else None
    return result


class EtcdReconfigurer:
    """Puts every member's data on one storage kind, one member at a time."""

    def __init__(
        self,
        members: Sequence[EtcdMember],
        profile: EtcdProfile,
        *,
        dry_run: bool = False,
        echo: Callable[[str], None] = print,
        command_timeout_s: float = 300.0,
        restart: str = "always",
    ) -> None:
        if restart not in RESTARTS:
            raise ValueError(f"kubernetes.etcd.restart: {restart!r}; allowed: {', '.join(RESTARTS)}")
        if not members:
            raise ValueError("kubernetes.etcd.members: at least one member is needed to reconfigure etcd")
        for member in members:
            if not member.name or "/" in member.name:
                raise ValueError(f"kubernetes.etcd.members: member name {member.name!r} must be non-empty "
                                 f"and contain no '/' (it is part of a file name)")
        profile.validate()
        self.members = list(members)
        self.profile = profile
        self.dry_run = dry_run
        self.echo = echo
        self.command_timeout_s = command_timeout_s
        self.restart = restart

    def switch(self, storage: str, fsync_delay_ms: float = 0.0, tag: str = "manual") -> dict[str, Any]:
        """Move every member to `storage` ('ramdisk' or 'disk') with that fsync delay (needs the profile's
        set_fsync_delay unless 0); returns the etcd fingerprint. `tag` ends the snapshots' names (the attempt)."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", tag):
            raise ValueError(f"etcd snapshot tag {tag!r}: only letters, digits, '_', '.' and '-'")
        if storage not in STORAGES:
            raise PlatformError(f"etcd_storage={storage!r} is not supported; allowed: {', '.join(STORAGES)}")
        if fsync_delay_ms > 0 and not self.profile.set_fsync_delay:
            raise PlatformError(f"etcd_fsync_delay_ms={fsync_delay_ms:g} needs kubernetes.etcd.profile.set_fsync_delay "
                                f"(a command that makes etcd's next start delay every fsync); this profile has none")
        members = []
        for member in self.members:
            with RemoteHost(member.ssh_conn_id, label=f"etcd member {member.name}", sudo=self.profile.sudo,
                            dry_run=self.dry_run, echo=self.echo, timeout_s=self.command_timeout_s) as host:
                members.append(self._switch_member(host, member, storage, fsync_delay_ms, tag))
        return {"storage": storage, "fsync_delay_ms": fsync_delay_ms if self.profile.set_fsync_delay else None,
                "dry_run": self.dry_run, "members": members}

    def start_stopped(self) -> list[str]:
        """Start every member that does not answer `etcdctl endpoint health` and wait until it does; their names.

        For cleanup: a task killed outright (SIGKILL, lost worker) between stop and start leaves etcd down."""
        if self.dry_run:
            return []
        started = []
        for member in self.members:
            with RemoteHost(member.ssh_conn_id, label=f"etcd member {member.name}", sudo=self.profile.sudo,
                            echo=self.echo, timeout_s=self.command_timeout_s) as host:
                def etcdctl(*args: str, what: str, check: bool = True, host: RemoteHost = host,
                            member: EtcdMember = member) -> CommandResult:
                    argv = fill([*self.profile.etcdctl, *args], self._values(member), where="etcd profile (etcdctl)")
                    return host.run(argv, check=check, what=what)

                health = etcdctl("endpoint", "health", what="is etcd up", check=False)
                if health.ok:
                    continue
                log.warning("%s: etcd does not answer (%s): starting it on the data dir its env file names",
                            host.label, health.tail())
                host.run(fill(self.profile.start, self._values(member), where="etcd profile (start)"),
                         what="start etcd found stopped")
                self._wait_healthy(host, etcdctl)
                started.append(member.name)
        return started

    def ramdisk_warning(self, node: str) -> str | None:
        """What rebooting `node` does to etcd, when it runs a member whose data may be on the RAM disk."""
        member = next((m for m in self.members if m.name == node), None)
        if member is None:
            return None
        p, why = self.profile, ""
        try:
            with RemoteHost(member.ssh_conn_id, label=f"etcd member {member.name}", sudo=p.sudo, dry_run=self.dry_run,
                            echo=self.echo, timeout_s=min(self.command_timeout_s, 30.0)) as host:
                read = host.run(fill(p.read_env, self._values(member), where="etcd profile (read_env)"),
                                check=False, what="read the etcd env file")
            data_dir = data_dir_from_env(read.stdout) if read.ok else None
            why = "" if read.ok else read.tail()
        except PlatformError as exc:
            data_dir, why = None, str(exc)
        if data_dir is not None and _normal(data_dir) != _normal(p.ramdisk_path):
            return None
        where = (f"its data are on the RAM disk {data_dir}" if data_dir is not None else
                 f"where its data are could not be read ({why or 'no ETCD_DATA_DIR'}), maybe on the RAM disk "
                 f"{p.ramdisk_path}")
        return (f"node {node} runs etcd member {member.name} and {where}: rebooting it loses that member's data; "
                f"restore it from the newest snapshot in {self._values(member)['snapshot_dir']} "
                f"(docs/cluster-setup.md, 'The RAM disk and its caveat')")

    def _values(self, member: EtcdMember, **extra: str) -> dict[str, str]:
        p = self.profile
        return {"member": member.name, "endpoint": member.endpoint, "env_file": p.env_file,
                "disk_path": p.disk_path, "ramdisk_path": p.ramdisk_path, "ramdisk_size": p.ramdisk_size,
                "backup_dir": p.backup_dir, "snapshot_dir": f"{p.backup_dir.rstrip('/')}/{member.name}",
                "snapshots_kept": str(p.snapshots_kept), **extra}

    def _switch_member(self, host: RemoteHost, member: EtcdMember, storage: str,
                       fsync_delay_ms: float = 0.0, tag: str = "manual") -> dict[str, Any]:
        p = self.profile
        target = p.data_dir(storage)
        values = self._values(member, data_dir=target)

        def run(template: Sequence[str], what: str, check: bool = True, **extra: str) -> CommandResult:
            argv = fill(template, {**values, **extra}, where=f"etcd profile ({what})")
            return host.run(argv, check=check, what=what)

        def etcdctl(*args: str, what: str, check: bool = True) -> CommandResult:
            return run([*p.etcdctl, *args], what, check=check)

        current = data_dir_from_env(run(p.read_env, "read the etcd env file").stdout)
        if current is None and not self.dry_run:
            raise PlatformError(f"{host.label}: {p.env_file} has no ETCD_DATA_DIR line; "
                                f"set env_file in kubernetes.etcd.profile to the file the etcd unit reads")
        current = current or p.data_dir("disk" if storage == "ramdisk" else "ramdisk")

        snapshot = f"{values['snapshot_dir']}/{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{tag}.db"
        run(p.make_backup_dir, "create the snapshot folder")
        taken = etcdctl("snapshot", "save", snapshot, what="snapshot before touching etcd", check=False)
        if not taken.ok:
            raise PlatformError(
                f"{host.label}: etcd snapshot to {snapshot} failed (exit {taken.exit_status}: "
                f"{taken.tail()}); refusing to stop etcd without a snapshot. "
                f"If the node rebooted while etcd was on the RAM disk, its data is gone: restore it from the "
                f"last snapshot in {values['snapshot_dir']} (docs/cluster-setup.md)"
            )
        run(p.prune_snapshots, f"keep the newest {p.snapshots_kept} snapshots")

        run(p.prepare_ramdisk if storage == "ramdisk" else p.prepare_disk, f"prepare the {storage} data dir")
        filesystem = run(p.filesystem, "check the target file system").stdout.strip()
        if not self.dry_run and (filesystem == "tmpfs") != (storage == "ramdisk"):
            raise PlatformError(
                f"{host.label}: {target} is on {filesystem or 'an unknown file system'}, but etcd_storage={storage} "
                f"needs {'a tmpfs mount' if storage == 'ramdisk' else 'a persistent (non-tmpfs) file system'}; "
                f"fix ramdisk_path/disk_path in kubernetes.etcd.profile"
            )

        moved = _normal(current) != _normal(target)
        # What a restart would start; the state file says what kubexp last started, and on which process.
        wanted = {"data_dir": _normal(target), "fsync_delay_ms": fsync_delay_ms if p.set_fsync_delay else 0.0}
        state_file = f"{{snapshot_dir}}/{STATE_FILE}"  # a template: filled by run()
        def read_metrics() -> str:
            answer = run(p.metrics, "read etcd metrics", check=False)
            return answer.stdout if answer.ok else ""

        before, restarted = "", True
        if self.restart == "on-change" and not moved and not self.dry_run:
            recorded = run(("cat", "--", state_file), "read what kubexp last started", check=False)
            before = read_metrics()
            restarted = not _still_running(recorded.stdout if recorded.ok else "", before, wanted)
        if restarted:
            self._restart(run, host, current, target, moved, fsync_delay_ms)
        else:
            log.info("%s: etcd still runs as kubexp started it on %s (fsync delay %g ms): not restarted "
                     "(kubernetes.etcd.restart: on-change)", host.label, target, wanted["fsync_delay_ms"])

        started = time.monotonic()
        self._wait_healthy(host, etcdctl)
        healthy_after_s = round(time.monotonic() - started, 3)

        if restarted:
            before = read_metrics()
            if self.restart == "on-change" and process_start(before) is not None:
                state = json.dumps({**wanted, "process_start_time_seconds": process_start(before)})
                run(("sh", "-c", _WRITE_FILE, "kubexp-write-state", state_file, "{state}"),
                    "record what kubexp started", state=state)
        status = etcdctl("endpoint", "status", "-w", "json", what="read endpoint status").stdout
        after = before
        if p.fingerprint_writes:
            run(["sh", "-c", _PROBE_WRITES, "kubexp-probe-writes", str(p.fingerprint_writes), *p.etcdctl],
                f"write and remove a probe key {p.fingerprint_writes} times")
            after = read_metrics()
        # Over the probe writes only if both reads came from the same etcd process.
        windowed = bool(p.fingerprint_writes) and process_start(before) is not None \
            and process_start(before) == process_start(after)
        return {
            "member": member.name, "storage": storage, "data_dir": target, "previous_data_dir": current,
            "moved": moved, "restarted": restarted, "filesystem": filesystem, "snapshot": snapshot,
            "healthy_after_s": healthy_after_s, "fsync_over": "probe writes" if windowed else "since etcd started",
            **_status_facts(status), **fsync_means(after, before if windowed else None),
        }

    def _restart(self, run: Callable[..., CommandResult], host: RemoteHost, current: str, target: str, moved: bool,
                 fsync_delay_ms: float) -> None:
        """Stop etcd, move its data if `moved`, set the fsync delay, start it; never leave it stopped."""
        p = self.profile
        pointed = False  # ETCD_DATA_DIR may name the target
        try:
            run(p.stop, "stop etcd")
            if moved:
                run(p.copy_data, f"copy etcd data {current} -> {target}", from_dir=current, to_dir=target)
                pointed = True
                run(p.set_data_dir, f"set ETCD_DATA_DIR={target} in {p.env_file}")
            if p.set_fsync_delay:
                run(p.set_fsync_delay, f"set the fsync delay to {fsync_delay_ms:g} ms",
                    fsync_delay_ms=f"{fsync_delay_ms:g}")
            run(p.start, "start etcd")
        except BaseException as exc:  # a task timeout or an interrupt too: never leave etcd stopped
            # The old data dir is untouched (etcd was stopped while it was copied): start etcd there again.
            reverted = not pointed or run(p.set_data_dir, f"set ETCD_DATA_DIR={current} again", check=False,
                                          data_dir=current).ok
            restarted = reverted and run(p.start, "restart etcd on its old data dir", check=False).ok
            state = (f"etcd left on {current} (restarted)" if restarted else
                     f"etcd is STOPPED: set ETCD_DATA_DIR={current} in {p.env_file} and start it by hand")
            if isinstance(exc, PlatformError):
                raise PlatformError(f"{exc}; {state}") from exc
            log.error("%s: %s ended the etcd step while etcd was stopped; %s", host.label, type(exc).__name__, state)
            raise

    def _wait_healthy(self, host: RemoteHost, etcdctl: Callable[..., CommandResult]) -> None:
        deadline = time.monotonic() + self.profile.health_timeout_s
        while True:
            answer = etcdctl("endpoint", "health", what="wait for endpoint health", check=False)
            if answer.ok:
                return
            if time.monotonic() >= deadline:
                raise PlatformError(
                    f"{host.label}: etcd not healthy {self.profile.health_timeout_s:g} s after start "
                    f"({answer.tail()}); check the unit's log on that host"
                )
            time.sleep(self.profile.poll_interval_s)


def _still_running(recorded: str, metrics_text: str, wanted: Mapping[str, Any]) -> bool:
    """The state file kubexp wrote at its last start of etcd names `wanted` and the process that answers now."""
    try:
        state = json.loads(recorded)
    except ValueError:
        return False
    now = process_start(metrics_text)
    return isinstance(state, dict) and now is not None and state == {**wanted, "process_start_time_seconds": now}


def _status_facts(text: str) -> dict[str, Any]:
    """Version, database size and raft term from `etcdctl endpoint status -w json`."""
    try:
        entries = json.loads(text) if text.strip() else []
        status = entries[0]["Status"]
    except (ValueError, LookupError, TypeError):
        return {"version": None}
    return {"version": status.get("version"), "db_size_bytes": status.get("dbSize"),
            "raft_term": (status.get("header") or {}).get("raft_term") or status.get("raftTerm")}
