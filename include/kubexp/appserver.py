"""How kubexp runs the application under test (app/, package `cropapp`) with gunicorn.

The local platform, `kubexp app serve` and the tests all start it through
`gunicorn_argv` + `gunicorn_env`, so they run the same configuration as the container.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from kubexp.processes import ManagedProcess
from kubexp.settings import APP_DIR

GUNICORN_CONFIG = APP_DIR / "gunicorn.conf.py"
LARGE_IMAGE = "landscape.png"
LARGE_IMAGE_SIZE = (2000, 1500)
# The load's default request: a 400x300 crop out of the middle of the large image. Each
# costs a full decode of the 2000x1500 PNG (about 14 MiB live per request), so under a
# 64 MiB limit one worker survives two concurrent crops and is OOM-killed at three.
DEFAULT_CROP_PATH = f"/{LARGE_IMAGE}?left=800&top=600&right=1200&bottom=900"


def gunicorn_argv(host: str, port: int, workers: int = 1) -> list[str]:
    """Command line serving cropapp on host:port (run it with `gunicorn_env`)."""
    if workers < 1:
        raise ValueError(f"workers={workers}: gunicorn needs at least 1 worker")
    return [
        sys.executable, "-m", "gunicorn",
        "--config", str(GUNICORN_CONFIG),
        "--chdir", str(APP_DIR),
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "cropapp.wsgi:app",
    ]


def gunicorn_env(metrics_dir: Path, image_dir: Path | None = None, threads: int | None = None) -> dict[str, str]:
    """Environment for `gunicorn_argv`: where workers merge their metrics, which images.

    `metrics_dir` must belong to this one server; gunicorn.conf.py empties it at start.
    """
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONUNBUFFERED": "1",
        # One malloc arena: a worker's memory then follows its concurrent requests instead
        # of keeping ~14 MiB per thread that ever served a crop (as the Dockerfile does).
        "MALLOC_ARENA_MAX": "1",
    }
    if image_dir is not None:
        env["CROPAPP_IMAGE_DIR"] = str(image_dir)
    if threads is not None:
        env["CROPAPP_THREADS"] = str(threads)
    return env


def healthy(host: str, port: int) -> bool:
    """True when GET /healthz answers 200."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def app_process(
    name: str, state_dir: Path, host: str, port: int, workers: int = 1,
    image_dir: Path | None = None, threads: int | None = None,
) -> ManagedProcess:
    """A ManagedProcess running cropapp under gunicorn, ready once /healthz answers 200."""
    metrics_dir = state_dir / "app-metrics" / name
    return ManagedProcess(
        name=name,
        argv=gunicorn_argv(host, port, workers),
        state_dir=state_dir,
        env=gunicorn_env(metrics_dir, image_dir, threads),
        ports=(port,),
        ready=lambda: healthy(host, port),
    )
