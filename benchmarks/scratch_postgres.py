"""A throwaway PostgreSQL 15 for the store benchmarks, unless they are given a database URL."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kubexp.local_services import Postgres
from kubexp.processes import free_port


@contextmanager
def database(url: str | None, prefix: str) -> Iterator[str]:
    """`url` itself, or the URL of database `kubexp` in a fresh server removed afterwards."""
    if url:
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)  # the postgres user must reach its data folder
    server = Postgres(root=root, port=free_port(), password=secrets.token_urlsafe(12))
    try:
        server.init()
        server.process().start(timeout=60)  # ready once it accepts a session, not just the port
        server.create_databases("kubexp")
        yield server.url("kubexp")
    finally:
        server.process().stop()
        shutil.rmtree(root, ignore_errors=True)
