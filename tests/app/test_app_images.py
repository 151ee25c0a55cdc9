"""The bundled images are generated, never downloaded, and identical on every machine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from cropapp.images import BUNDLED_IMAGES, ImageSpec, ensure_images, missing_images, render
from kubexp.platform.local.appserver import LARGE_IMAGE, LARGE_IMAGE_SIZE

# Pixel checksums: experiments on different machines crop the very same pictures. A
# Pillow upgrade that changes them fails here, so the change is a decision, not an accident.
PIXELS_SHA256 = {
    "landscape.png": "7c5f387cf804af42e25a04eee404855b011ed6d3aae0b5f4c997da9f70863a3d",
    "square.png": "cae27e2b8f53e3853bbfad192ee1339d8acb3091075557d8211634f98c24b856",
    "small.png": "d75cb8e94fb2f29f4cbfdf8465a0d2d8e58d5fb05a592620c8459cccfaa4c670",
    "photo.png": "b9358629ddc0ef47fa8f23ab9aeaf367025fe9e013a0701f3f718c50877d8939",
}


@pytest.mark.parametrize("spec", BUNDLED_IMAGES, ids=lambda spec: spec.name)
def test_generated_pixels_are_fixed(spec: ImageSpec) -> None:
    assert hashlib.sha256(render(spec).tobytes()).hexdigest() == PIXELS_SHA256[spec.name]


def test_large_image_is_photo_like_and_costly(bundled_images: Path) -> None:
    path = bundled_images / LARGE_IMAGE
    with Image.open(path) as image:
        assert (image.size, image.mode) == (LARGE_IMAGE_SIZE, "RGB")
        assert image.getcolors(maxcolors=10_000) is None  # more distinct colours than that
    # grain keeps PNG from compressing it away: decoding must read megabytes
    assert path.stat().st_size > 1_500_000


def test_ensure_images_writes_only_what_is_missing(tmp_path: Path) -> None:
    small = next(spec for spec in BUNDLED_IMAGES if spec.name == "small.png")
    (tmp_path / "landscape.png").write_bytes(b"kept as is")
    (tmp_path / "square.png").write_bytes(b"kept as is")
    (tmp_path / "photo.png").write_bytes(b"kept as is")
    assert missing_images(tmp_path) == [small]
    assert ensure_images(tmp_path) == [tmp_path / "small.png"]
    assert ensure_images(tmp_path) == []
    assert (tmp_path / "landscape.png").read_bytes() == b"kept as is"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["landscape.png", "photo.png", "small.png", "square.png"]
