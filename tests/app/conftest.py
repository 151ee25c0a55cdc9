"""The app under test served by real gunicorn on a free port, over a folder with traps in it."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_served import MAX_CROP_PIXELS, SECRET, Served
from cropapp_server import running_app

from kubexp.settings import APP_DIR

# cropapp is its own package under app/, not installed into the venv.
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

from cropapp.images import DEFAULT_IMAGE_DIR, ensure_images  # noqa: E402


@pytest.fixture(scope="session")
def bundled_images() -> Path:
    ensure_images(DEFAULT_IMAGE_DIR)
    return DEFAULT_IMAGE_DIR


@pytest.fixture(scope="module")
def served(bundled_images: Path, pytestconfig: pytest.Config) -> Iterator[Served]:
    """gunicorn with 2 workers over a copy of the bundled images plus traps:
    an outside secret (also as a .png), a symlink pointing out, one pointing in, a non-image."""
    root = Path(tempfile.mkdtemp(prefix="kubexp-app-"))
    images = root / "images"
    shutil.copytree(bundled_images, images)
    (root / "secret.txt").write_text(SECRET)
    (root / "secret.png").write_text(SECRET)
    (images / "escape.png").symlink_to(root / "secret.png")
    (images / "alias.png").symlink_to(images / "small.png")
    (images / "broken.png").write_text("not a PNG at all")
    (images / "notes.txt").write_text("not an image name")
    try:
        with running_app("cropapp-test", root / "state", workers=2, image_dir=images,
                         env={"CROPAPP_MAX_CROP_PIXELS": str(MAX_CROP_PIXELS)}) as app:
            port = app.ports[0]
            yield Served(f"http://127.0.0.1:{port}", port, root, images)
    finally:
        shutil.rmtree(root, ignore_errors=True)
