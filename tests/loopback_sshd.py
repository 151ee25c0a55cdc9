"""A real OpenSSH server on 127.0.0.1 with a generated host key and client key (test stand-in for a node).

Shared by the tests that reach a "node" over SSH (tests/platform/kubernetes, tests/collect).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kubexp.processes import ManagedProcess, free_port


@dataclass
class LoopbackSshd:
    root: Path
    port: int
    process: ManagedProcess
    client_key: Path
    host_public_key: str  # "ssh-ed25519 AAAA..."

    def connection_json(self) -> str:
        """An Airflow SSH connection (env var form) that checks the generated host key."""
        return json.dumps({
            "conn_type": "ssh", "host": "127.0.0.1", "port": self.port, "login": "root",
            "extra": {"key_file": str(self.client_key), "host_key": self.host_public_key,
                      "look_for_keys": "false", "conn_timeout": 10},
        })


def start_sshd(root: Path) -> LoopbackSshd:
    root.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory sshd insists on
    host_key, client_key = root / "host_ed25519", root / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubexp-test", "-f", str(key)],
                       check=True)
    (root / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile none\n"
        f"AuthorizedKeysFile {root}/authorized_keys\nUsePAM no\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\nMaxStartups 50\nMaxSessions 50\n"
    )
    process = ManagedProcess(
        name="sshd", argv=["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], state_dir=root, ports=[port],
    )
    process.start(timeout=20)
    public = Path(f"{host_key}.pub").read_text().split()
    return LoopbackSshd(root=root, port=port, process=process, client_key=client_key,
                        host_public_key=f"{public[0]} {public[1]}")


@contextmanager
def running_sshd(prefix: str = "kubexp-sshd-") -> Iterator[LoopbackSshd]:
    """An sshd in a fresh temp folder; stopped and the folder removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server = start_sshd(root)
        try:
            yield server
        finally:
            server.process.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
