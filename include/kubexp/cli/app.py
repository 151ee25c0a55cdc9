"""`kubexp app serve`: the application under test under gunicorn or Flask's threaded server, in the foreground."""

from __future__ import annotations

import os

import click

from kubexp import settings
from kubexp.cli import main
from kubexp.load.profiles import APP_SERVERS
from kubexp.platform.local import appserver


@main.group()
def app() -> None:
    """The application under test (app/, a Flask + Pillow crop service)."""


@app.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", default=None, type=click.IntRange(1, 64),
              help="Concurrent requests per worker (default 4, from app/gunicorn.conf.py).")
@click.option("--server", type=click.Choice(APP_SERVERS), default="gunicorn", show_default=True,
              help="gunicorn, or Flask's threaded server (one process, a thread per connection: the paper's).")
@click.option("--access-log", default=None, help="Access log: a file, or - for stdout (off by default).")
def serve(host: str, port: int, workers: int, threads: int | None, server: str, access_log: str | None) -> None:
    """Serve the app until interrupted (Ctrl-C)."""
    metrics_dir = settings.run_dir() / "app-metrics" / f"serve-{port}"
    env = {**os.environ, **appserver.gunicorn_env(metrics_dir, threads=threads, access_log=access_log)}
    try:
        argv = appserver.server_argv(server, host, port, workers)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"cropapp ({server}) on http://{host}:{port}  (try GET {appserver.DEFAULT_CROP_PATH} or "
               f"{appserver.PAPER_CROP_PATH})", err=True)
    # exec, so Ctrl-C and SIGTERM reach the server directly.
    os.chdir(settings.APP_DIR)
    os.execve(argv[0], argv, env)
