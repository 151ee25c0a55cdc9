"""The bundled images: generated deterministically by the project, never downloaded.

The large photo-like image makes a crop cost real CPU (PNG decode and encode) and
memory (the decoded 2000x1500 RGB image alone is about 9 MB); `photo.png` (800x600) is
the size of the paper's photos, which the `paper` load profile crops.

Files are written once into the image folder (atomically, so several workers starting
at once are harmless); `python -m cropapp.images DIR` does it ahead of time (Dockerfile).
"""

from __future__ import annotations

import os
import random
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Pillow is imported lazily: the gunicorn master only needs the names
    from PIL import Image

DEFAULT_IMAGE_DIR = Path(__file__).resolve().parent.parent / "images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# What a served image name may look like: one plain file name, no separators, no leading dot.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class ImageSpec:
    name: str
    width: int
    height: int
    seed: int


BUNDLED_IMAGES = (
    ImageSpec("landscape.png", 2000, 1500, seed=1),  # the large one the default load crops
    ImageSpec("square.png", 1000, 1000, seed=2),
    ImageSpec("small.png", 320, 240, seed=3),
    # The paper's request crops 30x30 at (0,0) of a photo; its authors scaled their photos to 800 px wide.
    ImageSpec("photo.png", 800, 600, seed=4),
)


def image_dir_from_env() -> Path:
    return Path(os.environ.get("CROPAPP_IMAGE_DIR") or DEFAULT_IMAGE_DIR)


def missing_images(folder: Path) -> list[ImageSpec]:
    return [spec for spec in BUNDLED_IMAGES if not (folder / spec.name).exists()]


def ensure_images(folder: Path) -> list[Path]:
    """Generate every bundled image missing from `folder`; returns the files written."""
    written = []
    for spec in missing_images(folder):
        write_image(spec, folder / spec.name)
        written.append(folder / spec.name)
    return written


def write_image(spec: ImageSpec, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{spec.name}.", dir=target.parent)
    except OSError as exc:
        raise RuntimeError(
            f"cannot write bundled image {target}: {exc}; make the folder writable or set "
            f"CROPAPP_IMAGE_DIR, or generate the images ahead with `python -m cropapp.images DIR`"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as out:
            render(spec).save(out, format="PNG")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render(spec: ImageSpec) -> Image.Image:
    """A landscape-like picture: sky gradient, sun, layered hills, grain. Same pixels every time."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(spec.seed)
    w, h = spec.width, spec.height
    sky = Image.merge("RGB", [
        Image.linear_gradient("L").resize((w, h)).point(lambda v, lo=lo, hi=hi: lo + (hi - lo) * v // 255)
        for lo, hi in ((40, 230), (90, 200), (200, 150))
    ])
    sun = Image.radial_gradient("L").resize((w // 3, w // 3)).point(lambda v: max(0, 255 - 2 * v))
    sky.paste((255, 230, 160), (rng.randrange(w // 2), rng.randrange(h // 4)), sun)
    draw = ImageDraw.Draw(sky)
    for layer in range(5):
        base = h * (45 + 10 * layer) // 100
        points = [(0, h)]
        for x in range(0, w + 40, 40):
            base += rng.randint(-h // 40, h // 40)
            points.append((x, base))
        points.append((w, h))
        shade = 30 + 25 * layer
        draw.polygon(points, fill=(shade // 2, shade + rng.randrange(40), shade // 3))
    picture = sky.filter(ImageFilter.GaussianBlur(2))
    grain = Image.frombytes("L", (w, h), rng.randbytes(w * h)).point(lambda v: v // 8)
    return Image.merge("RGB", [
        Image.blend(channel, grain.convert("L"), 0.12) for channel in picture.split()
    ])


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else image_dir_from_env()
    for path in ensure_images(folder):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
