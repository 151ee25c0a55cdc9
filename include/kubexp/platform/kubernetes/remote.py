"""Argument lists run on another machine over SSH, connected through the Airflow SSH provider's SSHHook.

The connection (host, user, key, host key) comes from an Airflow connection id; nothing here
builds a shell string from its input except `commands.shell_line`, which quotes every
argument. A dry run prints each command line and runs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from kubexp.platform.base import PlatformError
from kubexp.platform.kubernetes.commands import shell_line
from kubexp.platform.kubernetes.remote_exec import exec_to_end

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def tail(self, lines: int = 2) -> str:
        """The last non-empty output lines (stderr first), for error messages."""
        text = [line.strip() for line in (self.stderr or self.stdout).splitlines() if line.strip()]
        return " | ".join(text[-lines:])[-600:] or "no output"


class RemoteHost:
    """One SSH target. Use as a context manager; `run` executes one argument list."""

    def __init__(
        self,
        ssh_conn_id: str,
        *,
        label: str | None = None,
        sudo: bool = False,
        dry_run: bool = False,
        timeout_s: float = 300.0,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.ssh_conn_id = ssh_conn_id
        self.label = label or ssh_conn_id
        self.sudo = sudo
        self.dry_run = dry_run
        self.timeout_s = timeout_s
        self.echo = echo
        self._client: paramiko.SSHClient | None = None

    def __enter__(self) -> RemoteHost:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _connect(self) -> paramiko.SSHClient:
        if self._client is None:
            from kubexp import connections

            try:
                self._client = connections.ssh_client(self.ssh_conn_id, self.timeout_s)
            except Exception as exc:  # paramiko, socket and Airflow lookup errors alike
                raise PlatformError(
                    f"{self.label}: cannot open SSH via Airflow connection {self.ssh_conn_id!r} ({exc}); "
                    f"check the connection's host, port, login, key_file and host_key"
                ) from exc
        return self._client

    def command_line(self, argv: Sequence[str]) -> str:
        return shell_line([*(["sudo", "-n", "--"] if self.sudo else []), *argv])

    def run(self, argv: Sequence[str], *, check: bool = True, timeout_s: float | None = None,
            what: str = "") -> CommandResult:
        """Run one command; with `check`, a non-zero exit raises PlatformError naming host and command."""
        line = self.command_line(argv)
        if self.dry_run:
            self.echo(f"[dry-run] {self.label}: {line}")
            return CommandResult(tuple(argv), 0, "", "")
        client = self._connect()
        started = time.monotonic()
        try:
            status, out, err = exec_to_end(client, line, timeout_s or self.timeout_s)
        except Exception as exc:
            raise PlatformError(f"{self.label}: `{line}` did not finish ({exc})") from exc
        result = CommandResult(tuple(argv), status, out.decode(errors="replace"), err.decode(errors="replace"))
        log.info("%s: %s: exit %s after %.2f s", self.label, what or argv[0], status, time.monotonic() - started)
        if check and not result.ok:
            purpose = f" ({what})" if what else ""
            raise PlatformError(f"{self.label}: `{line}`{purpose} exited with {status}: {result.tail()}")
        return result
