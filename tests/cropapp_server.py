"""The app under test under real gunicorn on a free loopback port (tests/app, tests/load, tests/collect)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from kubexp.platform.local import appserver
from kubexp.processes import ManagedProcess, free_port


@contextmanager
def running_app(name: str, state_dir: Path, *, workers: int = 1, image_dir: Path | None = None,
                env: Mapping[str, str] | None = None) -> Iterator[ManagedProcess]:
    """cropapp served until the block ends (its port: `.ports[0]`); `env` is added to gunicorn's."""
    process = appserver.app_process(name, state_dir, "127.0.0.1", free_port(), workers=workers, image_dir=image_dir)
    process.env = {**(process.env or {}), **(env or {})}
    try:
        process.start(timeout=60)
        yield process
    finally:
        process.stop()
