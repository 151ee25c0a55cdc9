"""Commands over real SSH keep all their output, even when sshd reports the exit before the last bytes."""

from __future__ import annotations

import hashlib
import sys

import pytest

from kubexp.platform.base import PlatformError
from kubexp.platform.kubernetes.remote import RemoteHost

# Prints a large, known stdout in many writes, a line on stderr, and exits 3 right after the last write.
WRITER = ("import sys\n"
          "for i in range(4000): sys.stdout.write(f'{i:06d} ' + 'x' * 250 + '\\n'); sys.stdout.flush()\n"
          "sys.stderr.write('done\\n'); sys.exit(3)\n")
EXPECTED = "".join(f"{i:06d} " + "x" * 250 + "\n" for i in range(4000))


def test_all_output_arrives_every_time(ssh_conn: str) -> None:
    with RemoteHost(ssh_conn) as host:
        for _ in range(15):
            result = host.run([sys.executable, "-c", WRITER], check=False)
            assert (result.exit_status, result.stderr) == (3, "done\n")
            assert hashlib.sha256(result.stdout.encode()).hexdigest() == hashlib.sha256(EXPECTED.encode()).hexdigest()


def test_a_command_that_outlives_its_timeout_is_named(ssh_conn: str) -> None:
    with RemoteHost(ssh_conn, label="node-1") as host, pytest.raises(PlatformError, match=r"node-1: `sleep 30`"):
        host.run(["sleep", "30"], timeout_s=1)
