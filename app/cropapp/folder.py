"""Resolving a requested image name to a file that is certainly inside the image folder."""

from __future__ import annotations

import os
from pathlib import Path

from cropapp.images import IMAGE_SUFFIXES, SAFE_NAME


class ImageFolder:
    """The served images: plain files directly in one folder (symlinks only if they stay inside)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def names(self) -> list[str]:
        try:
            entries = sorted(os.listdir(self.root))
        except OSError:
            return []
        return [name for name in entries if self.resolve(name) is not None]

    def resolve(self, name: str) -> Path | None:
        """The file for `name`, or None for anything unknown or leaving the folder."""
        if not SAFE_NAME.fullmatch(name) or not name.lower().endswith(IMAGE_SUFFIXES):
            return None
        target = (self.root / name).resolve()
        if target.parent != self.root or not target.is_file():
            return None
        return target

    def open(self, name: str) -> int | None:
        """A read-only file descriptor for `name`, or None (see `resolve`).

        O_NOFOLLOW on the resolved path closes the gap where a file is swapped for a
        symlink between the check and the read.
        """
        target = self.resolve(name)
        if target is None:
            return None
        try:
            return os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
