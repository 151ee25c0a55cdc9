"""Run one command line over an open SSH connection and keep all of its output.

The SSH provider's `SSHHook.exec_ssh_client_command` stops reading as soon as the exit status has
arrived and its buffers are momentarily empty. sshd may send the exit status before the last output
(it reports the child's exit while its pipe still holds data), so that loses the end of the output
now and then. Here both streams are read until the server's end of file.
"""

from __future__ import annotations

import selectors
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import paramiko

_CHUNK = 1 << 16


def exec_to_end(client: paramiko.SSHClient, line: str, timeout_s: float) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of `line`; TimeoutError when it has not ended after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    stdin, stdout, _ = client.exec_command(line, timeout=timeout_s)
    channel = stdout.channel
    stdin.close()
    channel.shutdown_write()
    out, err = bytearray(), bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(channel, selectors.EVENT_READ)
        while True:
            if channel.recv_ready():
                out += channel.recv(_CHUNK)
            elif channel.recv_stderr_ready():
                err += channel.recv_stderr(_CHUNK)
            elif channel.eof_received or channel.closed:
                break
            else:
                _wait(selector, deadline, line)
    # the exit status may follow the end of file
    if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError(f"`{line}` sent no exit status before its timeout")
    status = channel.recv_exit_status()
    channel.close()
    return status, bytes(out), bytes(err)


def _wait(selector: selectors.BaseSelector, deadline: float, line: str) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"`{line}` had not ended after its timeout")
    selector.select(min(remaining, 0.5))
