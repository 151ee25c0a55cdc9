"""Temp dirs for servers that run as another user."""

from __future__ import annotations

import tempfile
from pathlib import Path


def reachable_tmpdir(prefix: str) -> Path:
    """A temp dir the `postgres` user can reach too (pytest's tmp_path is 0700 for root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path
