"""cropapp: the application under test, a Flask + Pillow service that crops images.

The routes live in cropapp.api. They are imported on first `create_app` call only, so
the gunicorn master can use cropapp.images without loading Flask, Pillow and the
metrics into its own memory (it shares the container's memory limit with the workers).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def create_app(image_dir: Path | str | None = None) -> Flask:
    """The WSGI app serving the images in `image_dir` (default: CROPAPP_IMAGE_DIR or app/images).

    The bundled images are generated there first if missing.
    """
    from cropapp.api import create_app as create

    return create(image_dir)
