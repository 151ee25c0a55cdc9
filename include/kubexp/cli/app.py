"""`kubexp app serve`: the application under test under gunicorn, in the foreground."""

from __future__ import annotations

import os

import click

from kubexp import appserver, settings
from kubexp.cli import main


@main.group()
def app() -> None:
    """The application under test (app/, a Flask + Pillow crop service)."""


@app.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", default=None, type=click.IntRange(1, 64),
              help="Concurrent requests per worker (default 4, from app/gunicorn.conf.py).")
def serve(host: str, port: int, workers: int, threads: int | None) -> None:
    """Serve the app with gunicorn until interrupted (Ctrl-C)."""
    metrics_dir = settings.run_dir() / "app-metrics" / f"serve-{port}"
    env = {**os.environ, **appserver.gunicorn_env(metrics_dir, threads=threads)}
    argv = appserver.gunicorn_argv(host, port, workers)
    click.echo(f"cropapp on http://{host}:{port}  (try GET {appserver.DEFAULT_CROP_PATH})", err=True)
    # exec, so Ctrl-C and SIGTERM reach gunicorn's master directly.
    os.execve(argv[0], argv, env)
