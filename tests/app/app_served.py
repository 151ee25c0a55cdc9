"""What the app tests share: the served app's addresses and the traps beside its image folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SECRET = "TOP-SECRET-OUTSIDE-THE-IMAGE-FOLDER"
MAX_CROP_PIXELS = 1_000_000  # below the large image's 3 MP, so the area bound is testable


@dataclass(frozen=True)
class Served:
    base: str
    port: int
    root: Path  # holds images/ and the secret files beside it
    images: Path
