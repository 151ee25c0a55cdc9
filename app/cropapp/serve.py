"""Serve cropapp: `python -m cropapp.serve [--server gunicorn|flask] [--host H] [--port P] [--workers N]`.

`gunicorn` (the default) runs app/gunicorn.conf.py: N worker processes with CROPAPP_THREADS threads
each (4), keep-alive 5 s. `flask` runs Flask's own server with threaded=True, as the paper's
application did (its backend.py calls app.run): one process, one new thread per connection, no bound
on concurrent requests. CROPAPP_SERVER, CROPAPP_HOST, CROPAPP_PORT and CROPAPP_WORKERS give the
defaults (the container image is started this way).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from pathlib import Path

SERVERS = ("gunicorn", "flask")
APP_ROOT = Path(__file__).resolve().parent.parent  # the folder holding gunicorn.conf.py and cropapp/


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cropapp.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=SERVERS, default=os.environ.get("CROPAPP_SERVER", "gunicorn"))
    parser.add_argument("--host", default=os.environ.get("CROPAPP_HOST", "127.0.0.1"))
    port = os.environ.get("CROPAPP_PORT", "8000")
    if not port.isdigit():  # e.g. tcp://10.96.0.12:8000, the service link of a Service named cropapp
        parser.error(f"CROPAPP_PORT={port!r} is not a port number; set CROPAPP_PORT in the container's env "
                     f"(Kubernetes sets it to a URL for a Service named cropapp) or pass --port")
    parser.add_argument("--port", type=int, default=int(port))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("CROPAPP_WORKERS", "1")),
                        help="gunicorn worker processes (the flask server is always one process)")
    args = parser.parse_args(argv)
    if args.server not in SERVERS:  # a bad CROPAPP_SERVER bypasses argparse's choices
        parser.error(f"CROPAPP_SERVER={args.server!r}; allowed: {', '.join(SERVERS)}")
    return args


def gunicorn_argv(host: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "--config", str(APP_ROOT / "gunicorn.conf.py"),
            "--chdir", str(APP_ROOT), "--bind", f"{host}:{port}", "--workers", str(workers), "cropapp.wsgi:app"]


def serve_flask(host: str, port: int) -> None:
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:  # as gunicorn.conf.py does: start from empty metrics
        os.makedirs(metrics_dir, exist_ok=True)
        for stale in glob.glob(os.path.join(metrics_dir, "*.db")):
            os.unlink(stale)
    from cropapp import create_app

    # Werkzeug's own request lines would duplicate the app's access log (CROPAPP_ACCESS_LOG).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    create_app().run(host=host, port=port, threaded=True)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.server == "gunicorn":
        command = gunicorn_argv(args.host, args.port, args.workers)
        os.execv(command[0], command)  # gunicorn's master gets the signals directly
    serve_flask(args.host, args.port)


if __name__ == "__main__":
    main()
