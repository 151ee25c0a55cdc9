"""A real etcd "node" for the SSH tests: an env file like Kubespray's, a disk dir, a RAM disk dir.

The profile differs from the Kubespray default only where systemd is missing here: `start`
reads the env file the way systemd's EnvironmentFile does (each ETCD_*= line exported
literally, nothing evaluated) and starts etcd detached with a PID file; `stop` ends that PID;
etcdctl and /metrics are reached without TLS. Everything else (snapshot, tmpfs mount,
file system check, copy, env file edit) runs the default commands.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kubexp.platform.kubernetes.etcd_ssh import EtcdProfile
from kubexp.processes import ManagedProcess, free_port

BIN = Path(sys.executable).parent
ETCD, ETCDCTL = str(BIN / "etcd"), str(BIN / "etcdctl")

_START = (
    'p=$(head -n 1 "$4" 2>/dev/null) && kill -0 "$p" 2>/dev/null && exit 0; '  # running: as systemctl start
    'while IFS= read -r line; do case "$line" in ETCD_*=*) export "$line";; esac; done < "$1"; '
    'setsid "$2" >>"$3" 2>&1 </dev/null & echo $! > "$4"'
)
# The PID file's first line is the PID (ManagedProcess writes the start time on the second).
_STOP = (
    'p=$(head -n 1 "$1" 2>/dev/null) || exit 0; kill "$p" 2>/dev/null; i=0; '
    'while kill -0 "$p" 2>/dev/null && ! grep -q "^State:[[:space:]]*Z" "/proc/$p/status" 2>/dev/null; do '
    'i=$((i+1)); [ "$i" -gt 400 ] && exit 1; sleep 0.05; done; rm -f "$1"'
)


@dataclass
class EtcdNode:
    root: Path
    env_file: Path
    disk_path: Path
    ramdisk_path: Path
    backup_dir: Path
    client_url: str
    process: ManagedProcess  # its PID file is the one the profile's start/stop use

    @property
    def pidfile(self) -> Path:
        return self.process.pidfile

    def profile(self, **overrides: object) -> EtcdProfile:
        values: dict[str, object] = {
            "env_file": str(self.env_file), "disk_path": str(self.disk_path),
            "ramdisk_path": str(self.ramdisk_path), "ramdisk_size": "64m", "backup_dir": str(self.backup_dir),
            "etcdctl": (ETCDCTL, "--endpoints={endpoint}", "--command-timeout=5s"),
            "start": ("sh", "-c", _START, "test-etcd-start", "{env_file}", ETCD, str(self.process.logfile),
                      str(self.pidfile)),
            "stop": ("sh", "-c", _STOP, "test-etcd-stop", str(self.pidfile)),
            "metrics": ("curl", "-sSf", "{endpoint}/metrics"),
            "fingerprint_writes": 3, "health_timeout_s": 30.0, "poll_interval_s": 0.2,
        }
        values.update(overrides)
        return EtcdProfile(**values)  # type: ignore[arg-type]

    def data_dir_in_env(self) -> str:
        lines = [line for line in self.env_file.read_text().splitlines() if line.startswith("ETCD_DATA_DIR=")]
        assert len(lines) == 1, lines
        return lines[0].split("=", 1)[1]

    def running_pid(self) -> int | None:
        return self.process.running_pid()

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ETCDCTL, f"--endpoints={self.client_url}", "--command-timeout=5s", *args],
                              capture_output=True, text=True, timeout=30)

    def stop(self) -> None:
        self.process.stop(timeout=10)
        for path in (self.ramdisk_path,):
            if subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0:
                subprocess.run(["umount", str(path)], check=True)


def start_etcd_node(root: Path, disk_root: Path, name: str = "etcd1") -> EtcdNode:
    """An etcd on its disk dir (as Kubespray leaves it), started as a managed process."""
    root.mkdir(parents=True, exist_ok=True)
    client_port, peer_port = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    disk_path = disk_root / "etcd-disk"
    disk_path.mkdir(mode=0o700, parents=True)
    env_file = root / "etcd.env"
    env_file.write_text(
        f"# written like Kubespray's /etc/etcd.env\nETCD_DATA_DIR={disk_path}\nETCD_NAME={name}\n"
        f"ETCD_LISTEN_CLIENT_URLS={client_url}\nETCD_ADVERTISE_CLIENT_URLS={client_url}\n"
        f"ETCD_LISTEN_PEER_URLS={peer_url}\nETCD_INITIAL_ADVERTISE_PEER_URLS={peer_url}\n"
        f"ETCD_INITIAL_CLUSTER={name}={peer_url}\nETCD_INITIAL_CLUSTER_STATE=new\n"
    )
    env = {line.split("=", 1)[0]: line.split("=", 1)[1]
           for line in env_file.read_text().splitlines() if line.startswith("ETCD_")}
    process = ManagedProcess(name="etcd", argv=[ETCD], state_dir=root, env=env, ports=[client_port])
    node = EtcdNode(root=root, env_file=env_file, disk_path=disk_path, ramdisk_path=root / "ram",
                    backup_dir=disk_root / "snapshots", client_url=client_url, process=process)
    process.start(timeout=30)
    assert node.etcdctl("put", "kubexp-test/marker", "survives-moves").returncode == 0
    return node
