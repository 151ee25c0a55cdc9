"""The crop request: rectangle validation and the PNG + base64 encoding."""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image

# One request may allocate at most this many crop pixels (beyond the decoded image), so
# its memory is bounded even for a future, larger image. 2048 x 2048 by default.
MAX_CROP_PIXELS = int(os.environ.get("CROPAPP_MAX_CROP_PIXELS", str(2048 * 2048)))
_DIGITS = re.compile(r"[0-9]{1,9}")


class RectangleError(ValueError):
    """A bad crop rectangle; the message is the one-line reason sent with the 400."""


@dataclass(frozen=True)
class Rectangle:
    """Pillow crop box: left/top inclusive, right/bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def area(self) -> int:
        return (self.right - self.left) * (self.bottom - self.top)

    @classmethod
    def from_query(cls, args: Mapping[str, str], width: int, height: int) -> Rectangle:
        values = {}
        for key in ("left", "top", "right", "bottom"):
            raw = args.get(key)
            if raw is None:
                raise RectangleError(f"missing query parameter {key!r}; give left, top, right and bottom")
            if not _DIGITS.fullmatch(raw):
                raise RectangleError(f"{key}={raw[:40]!r} is not a non-negative integer")
            values[key] = int(raw)
        box = cls(**values)
        if box.right <= box.left or box.bottom <= box.top:
            raise RectangleError(f"empty or inverted rectangle {box.describe()}; need left < right and top < bottom")
        if box.right > width or box.bottom > height:
            raise RectangleError(f"rectangle {box.describe()} exceeds the image ({width}x{height})")
        if box.area > MAX_CROP_PIXELS:
            raise RectangleError(f"rectangle {box.describe()} has {box.area} pixels; at most {MAX_CROP_PIXELS}")
        return box

    def describe(self) -> str:
        return f"left={self.left} top={self.top} right={self.right} bottom={self.bottom}"


def crop_base64_png(image: Image.Image, box: Rectangle) -> bytes:
    out = io.BytesIO()
    image.crop((box.left, box.top, box.right, box.bottom)).save(out, format="PNG")
    return base64.b64encode(out.getbuffer())
