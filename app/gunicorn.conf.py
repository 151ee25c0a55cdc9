"""gunicorn settings for cropapp (`gunicorn -c gunicorn.conf.py cropapp.wsgi:app`).

Bind address and worker count come from the command line (--bind, --workers) or
GUNICORN_CMD_ARGS. Each worker serves CROPAPP_THREADS requests at once (default 4):
concurrent crops then add up in one worker's memory, which is what makes a 64 MiB
limit bite under load, as in the paper.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

wsgi_app = "cropapp.wsgi:app"
worker_class = "gthread"
threads = int(os.environ.get("CROPAPP_THREADS", "4"))
workers = int(os.environ.get("CROPAPP_WORKERS", "1"))
timeout = 30
graceful_timeout = 5
keepalive = 5
# Access lines come from the app itself (CROPAPP_ACCESS_LOG), in one format under either server.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("CROPAPP_LOG_LEVEL", "info")
# gunicorn 23+ opens a control socket at one shared path per user; replicas must not share it.
control_socket_disable = True

# Metrics of several workers are merged through files in PROMETHEUS_MULTIPROC_DIR. The
# variable must be set before any worker imports prometheus_client; this file runs in the
# master first, so setting it here covers every way of starting the app.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cropapp-metrics-")


def on_starting(server):
    """Start from empty metrics: files of an earlier run would be summed in."""
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(metrics_dir, "*.db")):
        os.unlink(stale)
    # Generate missing bundled images once, before the workers start, and in a child
    # process: Pillow and the generation's memory must not stay in the master.
    from cropapp.images import image_dir_from_env, missing_images

    if missing_images(image_dir_from_env()):
        server.log.info("generating the bundled images in %s", image_dir_from_env())
        subprocess.run([sys.executable, "-m", "cropapp.images"], check=True)


def child_exit(server, worker):
    """A dead worker's live gauges (memory, in flight) must disappear from /metrics."""
    # Imported here, never at the top: workers inherit the master's modules, and
    # prometheus_client picks its value store when first imported.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
