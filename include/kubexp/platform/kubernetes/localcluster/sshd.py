"""An OpenSSH server on 127.0.0.1 with its own host key and one client key: the way into the node that
the etcd step uses, as it uses SSH into a Kubespray etcd member."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubexp.processes import ManagedProcess


@dataclass(frozen=True)
class Sshd:
    folder: Path
    port: int

    @property
    def client_key(self) -> Path:
        return self.folder / "client_ed25519"

    @property
    def host_key(self) -> Path:
        return self.folder / "host_ed25519"

    def process(self, state_dir: Path | None = None) -> ManagedProcess:
        return ManagedProcess(name="sshd", argv=["/usr/sbin/sshd", "-D", "-e", "-f", str(self.folder / "sshd_config")],
                              state_dir=state_dir or self.folder, ports=[self.port])

    def prepare(self) -> None:
        """Keys and configuration (new keys each time: nothing is reused across runs)."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory sshd insists on
        for key in (self.host_key, self.client_key):
            for old in (key, Path(f"{key}.pub")):
                old.unlink(missing_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubexp", "-f", str(key)],
                           check=True)
        (self.folder / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        (self.folder / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\nPidFile none\n"
            f"AuthorizedKeysFile {self.folder}/authorized_keys\nUsePAM no\nStrictModes no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\nMaxStartups 50\nMaxSessions 50\n"
        )

    def host_public_key(self) -> str:
        kind, key = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"{kind} {key}"

    def connection(self) -> dict[str, object]:
        """An Airflow SSH connection that checks the generated host key."""
        return {"conn_type": "ssh", "host": "127.0.0.1", "port": self.port, "login": "root",
                "extra": {"key_file": str(self.client_key), "host_key": self.host_public_key(),
                          "look_for_keys": "false", "conn_timeout": 10}}

    def connection_json(self) -> str:
        return json.dumps(self.connection())
