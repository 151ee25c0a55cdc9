"""The HTTP API (compatible with the paper's application):
    GET /images                 JSON list of image names
    GET /dimensions/<image>     JSON {"width": w, "height": h}
    GET /<image>?left=&top=&right=&bottom=   base64 of a PNG of that rectangle (text/plain)
    GET /healthz                200 "ok" when the image folder is readable
    GET /metrics                Prometheus metrics
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, Response, g, jsonify, request
from PIL import Image, UnidentifiedImageError
from werkzeug.exceptions import HTTPException

from cropapp import metrics
from cropapp.crop import Rectangle, RectangleError, crop_base64_png
from cropapp.folder import ImageFolder
from cropapp.images import ensure_images, image_dir_from_env


class ImageRefused(Exception):
    """Raised inside a route when the named image cannot be served; carries the answer to give."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def create_app(image_dir: Path | str | None = None) -> Flask:
    """The WSGI app serving the images in `image_dir` (default: CROPAPP_IMAGE_DIR or app/images).

    The bundled images are generated there first if missing.
    """
    root = Path(image_dir) if image_dir is not None else image_dir_from_env()
    ensure_images(root)
    folder = ImageFolder(root)
    app = Flask(__name__)
    access = access_logger(os.environ.get("CROPAPP_ACCESS_LOG"))

    def text(body: str | bytes, status: int = 200) -> Response:
        return Response(body, status=status, mimetype="text/plain")

    @contextmanager
    def opened(name: str) -> Iterator[Image.Image]:
        """The named image, open while the block runs; a 404 answer when there is none or it is no image."""
        fd = folder.open(name)
        if fd is None:
            raise ImageRefused(text(f"no image {name[:80]!r}; GET /images lists them\n", 404))
        with os.fdopen(fd, "rb") as file:
            try:
                picture = Image.open(file)
            except (UnidentifiedImageError, Image.DecompressionBombError):
                raise ImageRefused(text(f"{name[:80]!r} is not a readable image\n", 404)) from None
            yield picture

    @app.errorhandler(ImageRefused)
    def refused(exc: ImageRefused) -> Response:
        return exc.response

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()
        metrics.IN_FLIGHT.inc()

    @app.after_request
    def count(response: Response) -> Response:
        endpoint = request.endpoint or "unknown"
        metrics.REQUESTS.labels(endpoint, str(response.status_code)).inc()
        metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - g.started)
        metrics.IN_FLIGHT.dec()
        metrics.record_memory()
        if access is not None:
            environ = request.environ
            access.info('%s:%s "%s %s" %s %.1f', environ.get("REMOTE_ADDR", "-"), environ.get("REMOTE_PORT", "-"),
                        request.method, request.full_path.rstrip("?"), response.status_code,
                        1000 * (time.perf_counter() - g.started))
        return response

    @app.errorhandler(HTTPException)
    def plain_http_error(exc: HTTPException) -> Response:
        # Routing failures (e.g. a path with slashes) answer in one plain line too.
        return text(f"{exc.code} {exc.name}\n", exc.code or 500)

    @app.get("/healthz")
    def healthz() -> Response:
        return text("ok\n") if os.access(folder.root, os.R_OK | os.X_OK) else text("image folder unreadable\n", 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    @app.get("/images")
    def images() -> Response:
        return jsonify(folder.names())

    @app.get("/dimensions/<image>")
    def dimensions(image: str) -> Response:
        with opened(image) as picture:
            return jsonify({"width": picture.width, "height": picture.height})

    @app.get("/<image>")
    def crop(image: str) -> Response:
        with opened(image) as picture:
            try:
                box = Rectangle.from_query(request.args, picture.width, picture.height)
            except RectangleError as exc:
                return text(f"{exc}\n", 400)
            return text(crop_base64_png(picture, box))

    return app


def access_logger(target: str | None) -> logging.Logger | None:
    """One line per answered request, the same under either server: time, peer address:port (a new port is a
    new TCP connection), request line, status, ms. `target` is a file path, "-" for stdout, or None for off."""
    if not target:
        return None
    logger = logging.getLogger("cropapp.access")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout) if target == "-" else logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return logger
