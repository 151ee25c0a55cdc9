"""A real OpenSSH server on 127.0.0.1 with a generated host key and client key (test stand-in for a node):
the local cluster's `Sshd`, in a temp folder on a free port.

Shared by the tests that reach a "node" over SSH (tests/platform/kubernetes).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kubexp.platform.kubernetes.localcluster.sshd import Sshd
from kubexp.processes import free_port


@contextmanager
def running_sshd(prefix: str = "kubexp-sshd-") -> Iterator[Sshd]:
    """An sshd in a fresh temp folder; stopped and the folder removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server = Sshd(root, free_port())
        server.prepare()
        process = server.process()
        process.start(timeout=20)
        try:
            yield server
        finally:
            process.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
