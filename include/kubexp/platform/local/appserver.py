"""How kubexp runs the application under test (app/, package `cropapp`) with gunicorn or Flask's server.

The local platform, `kubexp app serve` and the tests all start it through
`server_argv` + `gunicorn_env`, so they run the same configuration as the container.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from kubexp.load import profiles
from kubexp.load.profiles import KUBEXP_CROP_PATH
from kubexp.processes import ManagedProcess
from kubexp.settings import APP_DIR

GUNICORN_CONFIG = APP_DIR / "gunicorn.conf.py"
LARGE_IMAGE = "landscape.png"
LARGE_IMAGE_SIZE = (2000, 1500)
# The load's default request (profile kubexp): a 400x300 crop out of the middle of the large image.
# Each costs a full decode of the 2000x1500 PNG (about 14 MiB live per request), so under a
# 64 MiB limit one gunicorn worker survives two concurrent crops and is OOM-killed at three.
DEFAULT_CROP_PATH = KUBEXP_CROP_PATH
# The paper's request (profile paper): 30x30 at (0,0) of the 800x600 photo.
PAPER_CROP_PATH = profiles.PAPER_CROP_PATH
PAPER_IMAGE_SIZE = (800, 600)


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


def server_argv(server: str, host: str, port: int, workers: int = 1) -> list[str]:
    """Command line serving cropapp with `server` ("gunicorn" or "flask"; run it in APP_DIR with `gunicorn_env`).

    Flask's threaded server is one process; `workers` then must stay 1."""
    if server == "gunicorn":
        return gunicorn_argv(host, port, workers)
    if server != "flask":
        raise ValueError(f"app server {server!r}; allowed: {', '.join(profiles.APP_SERVERS)}")
    if workers != 1:
        raise ValueError(f"workers={workers}: Flask's threaded server runs one process; use app_server gunicorn")
    return [sys.executable, "-m", "cropapp.serve", "--server", "flask", "--host", host, "--port", str(port)]


def gunicorn_env(metrics_dir: Path, image_dir: Path | None = None, threads: int | None = None,
                 access_log: str | None = None) -> dict[str, str]:
    """Environment for `server_argv`: where workers merge their metrics, which images, the access log.

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
    if access_log is not None:
        env["CROPAPP_ACCESS_LOG"] = access_log
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
    image_dir: Path | None = None, threads: int | None = None, server: str = "gunicorn",
    access_log: str | None = None,
) -> ManagedProcess:
    """A ManagedProcess running cropapp under `server`, ready once /healthz answers 200."""
    metrics_dir = state_dir / "app-metrics" / name
    return ManagedProcess(
        name=name,
        argv=server_argv(server, host, port, workers),
        state_dir=state_dir,
        env=gunicorn_env(metrics_dir, image_dir, threads, access_log),
        ports=(port,),
        ready=lambda: healthy(host, port),
        cwd=APP_DIR,
    )
