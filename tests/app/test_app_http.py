"""Every endpoint and every bad input, over real HTTP against gunicorn (2 workers)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import re

import pytest
from app_served import MAX_CROP_PIXELS, SECRET, Served
from PIL import Image

from kubexp.platform.local.appserver import DEFAULT_CROP_PATH, LARGE_IMAGE, LARGE_IMAGE_SIZE


def get(served: Served, path: str, method: str = "GET") -> tuple[int, str, str]:
    """Sends `path` byte for byte (no client-side normalisation of .. or %2F)."""
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode("latin-1")
    finally:
        conn.close()


def test_images_lists_plain_images_inside_the_folder(served: Served) -> None:
    status, ctype, body = get(served, "/images")
    assert (status, ctype) == (200, "application/json")
    names = json.loads(body)
    assert {"landscape.png", "square.png", "small.png", "alias.png"} <= set(names)
    assert "escape.png" not in names and "notes.txt" not in names


def test_dimensions(served: Served) -> None:
    status, _, body = get(served, f"/dimensions/{LARGE_IMAGE}")
    assert status == 200
    assert json.loads(body) == {"width": LARGE_IMAGE_SIZE[0], "height": LARGE_IMAGE_SIZE[1]}


def test_crop_is_base64_png_of_pillows_crop(served: Served) -> None:
    status, ctype, body = get(served, "/square.png?left=10&top=20&right=110&bottom=70")
    assert status == 200 and ctype.startswith("text/plain")
    cropped = Image.open(io.BytesIO(base64.b64decode(body, validate=True)))
    assert cropped.format == "PNG" and cropped.size == (100, 50)
    with Image.open(served.images / "square.png") as original:
        assert cropped.tobytes() == original.crop((10, 20, 110, 70)).tobytes()


def test_default_load_request_crops_the_large_image(served: Served) -> None:
    status, _, body = get(served, DEFAULT_CROP_PATH)
    assert status == 200
    assert Image.open(io.BytesIO(base64.b64decode(body))).size == (400, 300)


def test_symlink_inside_the_folder_is_served(served: Served) -> None:
    assert get(served, "/dimensions/alias.png")[2].strip() == '{"height":240,"width":320}'


def test_healthz(served: Served) -> None:
    assert get(served, "/healthz")[:1] == (200,)


@pytest.mark.parametrize("path", [
    "/nope.png?left=0&top=0&right=1&bottom=1",
    "/dimensions/nope.png",
    "/notes.txt?left=0&top=0&right=1&bottom=1",
    "/escape.png?left=0&top=0&right=1&bottom=1",
    "/dimensions/escape.png",
    "/..%2Fsecret.png?left=0&top=0&right=1&bottom=1",
    "/..%2fsecret.txt",
    "/dimensions/..%2Fsecret.png",
    "/%2E%2E%2Fsecret.png?left=0&top=0&right=1&bottom=1",
    "/../secret.png?left=0&top=0&right=1&bottom=1",
    "/images/../../secret.png",
    "/..",
    "/.%2e",
    "//etc/passwd",
    "/%2Fetc%2Fpasswd",
    "/dimensions/%2Fetc%2Fpasswd",
    "/dimensions//etc/passwd",
    "/%2e%2e%5csecret.png",
    "/.hidden.png?left=0&top=0&right=1&bottom=1",
    "/small.png%00.txt?left=0&top=0&right=1&bottom=1",
    "/broken.png?left=0&top=0&right=1&bottom=1",
    "/dimensions/broken.png",
])
def test_unknown_or_escaping_paths_are_404_and_never_read_outside(served: Served, path: str) -> None:
    status, _, body = get(served, path)
    assert status == 404, (path, status, body[:200])
    assert SECRET not in body
    assert body.count("\n") <= 1


@pytest.mark.parametrize(("query", "reason"), [
    ("", r"missing query parameter 'left'"),
    ("left=0&top=0&right=10", r"missing query parameter 'bottom'"),
    ("left=a&top=0&right=10&bottom=10", r"left='a' is not a non-negative integer"),
    ("left=1.5&top=0&right=10&bottom=10", r"not a non-negative integer"),
    ("left=-1&top=0&right=10&bottom=10", r"left='-1' is not a non-negative integer"),
    ("left=+1&top=0&right=10&bottom=10", r"not a non-negative integer"),
    ("left=&top=0&right=10&bottom=10", r"not a non-negative integer"),
    ("left=99999999999999&top=0&right=10&bottom=10", r"not a non-negative integer"),
    ("left=10&top=0&right=5&bottom=10", r"empty or inverted rectangle"),
    ("left=0&top=10&right=5&bottom=10", r"empty or inverted rectangle"),
    ("left=0&top=0&right=2001&bottom=10", r"exceeds the image \(2000x1500\)"),
    ("left=0&top=0&right=10&bottom=1501", r"exceeds the image"),
    ("left=0&top=0&right=2000&bottom=1500", rf"has 3000000 pixels; at most {MAX_CROP_PIXELS}"),
])
def test_bad_rectangles_are_400_with_a_one_line_reason(served: Served, query: str, reason: str) -> None:
    status, ctype, body = get(served, f"/{LARGE_IMAGE}?{query}")
    assert (status, ctype.split(";")[0]) == (400, "text/plain")
    assert body.endswith("\n") and body.count("\n") == 1
    assert re.search(reason, body), body


def test_wrong_method_is_one_plain_line(served: Served) -> None:
    status, _, body = get(served, "/images", method="POST")
    assert status == 405 and body.count("\n") == 1


def test_metrics_count_every_worker(served: Served) -> None:
    """Counts are exact whichever of the 2 workers served a request or answers /metrics."""
    before = _crop_count(get(served, "/metrics")[2], "200")
    for _ in range(12):  # a new connection each: the kernel spreads them over both workers
        assert get(served, "/small.png?left=0&top=0&right=8&bottom=8")[0] == 200
    assert get(served, "/small.png?left=0&top=0")[0] == 400
    for _ in range(4):  # every worker's view agrees
        text = get(served, "/metrics")[2]
        assert _crop_count(text, "200") == before + 12
        assert _crop_count(text, "400") >= 1
    assert 'cropapp_request_duration_seconds_bucket{endpoint="crop",le="+Inf"}' in text
    memory = re.findall(r'cropapp_worker_resident_memory_bytes\{pid="\d+"\} ([0-9.e+]+)', text)
    assert memory and all(float(value) > 10e6 for value in memory)


def _crop_count(metrics_text: str, code: str) -> float:
    match = re.search(rf'cropapp_requests_total\{{code="{code}",endpoint="crop"\}} ([0-9.e+]+)', metrics_text)
    return float(match.group(1)) if match else 0.0
