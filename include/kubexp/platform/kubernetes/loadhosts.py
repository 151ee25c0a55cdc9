"""JMeter servers on their own VMs, restarted over SSH before each experiment (clean JVMs, as in the paper).

The hosts are the suite's `load.servers` ('host:port', the JMeter server's RMI port) with
one Airflow SSH connection each in `load.ssh_conn_ids` (same order). The restart command is
`systemctl restart jmeter-server` by default (include/systemd/jmeter-server.service),
configurable in `kubernetes.load_hosts`; after it, the port must accept connections from
this machine within the timeout. Returns the 'host:port' list for the JMeter master's -R.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from kubexp.platform.kubernetes.commands import fill
from kubexp.platform.kubernetes.remote import RemoteHost
from kubexp.platform.kubernetes.waiting import wait_until

if TYPE_CHECKING:
    from kubexp.suite import LoadSection


@dataclass(frozen=True)
class LoadHost:
    address: str  # 'host:port' as in load.servers
    ssh_conn_id: str

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


@dataclass(frozen=True)
class LoadHostSettings:
    """Placeholders in restart_command: {service} {host} {port}."""

    restart_command: tuple[str, ...] = ("systemctl", "restart", "{service}")
    service: str = "jmeter-server"
    sudo: bool = False

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "kubernetes.load_hosts") -> LoadHostSettings:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(cls.__dataclass_fields__)}")
        command = data.get("restart_command", list(cls.restart_command))
        if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
            raise ValueError(f"{where}.restart_command: must be a non-empty list of arguments")
        fill(command, {"service": "", "host": "", "port": ""}, f"{where}.restart_command")
        return cls(restart_command=tuple(command), service=str(data.get("service", cls.service)),
                   sudo=bool(data.get("sudo", False)))


def load_hosts(load: LoadSection, where: str = "load") -> list[LoadHost]:
    """Remote JMeter servers of a suite's load section; [] when JMeter runs locally (servers: N)."""
    servers, conn_ids = load.servers, load.ssh_conn_ids
    if isinstance(servers, int):
        return []
    if len(conn_ids) != len(servers):
        raise ValueError(f"{where}.ssh_conn_ids: {len(conn_ids)} connection ids for {len(servers)} servers; give one "
                         f"Airflow SSH connection per entry of {where}.servers, in the same order")
    return [LoadHost(address=str(server), ssh_conn_id=str(conn)) for server, conn in zip(servers, conn_ids,
                                                                                        strict=True)]


def restart_load_servers(
    hosts: Sequence[LoadHost],
    settings: LoadHostSettings,
    *,
    timeout_s: float = 120.0,
    interval_s: float = 1.0,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> list[str]:
    """Restart every JMeter server, then wait until each accepts TCP connections; their 'host:port' list."""
    for load_host in hosts:
        argv = fill(settings.restart_command,
                    {"service": settings.service, "host": load_host.host, "port": load_host.port},
                    "kubernetes.load_hosts.restart_command")
        with RemoteHost(load_host.ssh_conn_id, label=f"load host {load_host.address}", sudo=settings.sudo,
                        dry_run=dry_run, echo=echo, timeout_s=timeout_s) as remote:
            remote.run(argv, what=f"restart {settings.service}")
    if not dry_run:
        for load_host in hosts:
            wait_until(partial(_accepts, load_host.host, load_host.port), timeout_s=timeout_s, interval_s=interval_s,
                       what=f"load host {load_host.address}: JMeter server accepting connections after restart "
                            f"(check `journalctl -u {settings.service}` there and the firewall)")
    return [h.address for h in hosts]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except (OSError, UnicodeError):  # refused, unreachable, or not a resolvable host name
        return False
