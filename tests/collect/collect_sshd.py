"""A real OpenSSH server on 127.0.0.1 (generated host and client keys) standing in for an etcd node."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kubexp.processes import ManagedProcess, free_port


def start_sshd(root: Path) -> tuple[ManagedProcess, str]:
    """The running sshd and an Airflow SSH connection (JSON, env-var form) that checks its host key."""
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation directory
    host_key, client_key = root / "host_ed25519", root / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (root / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile none\nUsePAM no\nStrictModes no\n"
        f"AuthorizedKeysFile {root}/authorized_keys\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n"
    )
    process = ManagedProcess("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(root / "sshd_config")], root,
                             ports=[port])
    process.start(timeout=20)
    kind, key = Path(f"{host_key}.pub").read_text().split()[:2]
    connection = json.dumps({"conn_type": "ssh", "host": "127.0.0.1", "port": port, "login": "root",
                             "extra": {"key_file": str(client_key), "host_key": f"{kind} {key}",
                                       "look_for_keys": "false", "conn_timeout": 10}})
    return process, connection
