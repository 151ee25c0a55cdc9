"""`kubexp app serve` runs the app in the foreground under gunicorn (exec: signals reach gunicorn)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from kubexp import settings
from kubexp.platform.local import appserver
from kubexp.processes import ManagedProcess, free_port


def test_kubexp_app_serve(bundled_images: Path) -> None:
    state = Path(tempfile.mkdtemp(prefix="kubexp-serve-"))
    port = free_port()
    kubexp = str(Path(sys.executable).with_name("kubexp"))
    process = ManagedProcess("serve", [kubexp, "app", "serve", "--port", str(port), "--workers", "2"], state,
                             env={"KUBEXP_HOME": str(state / "home")}, ports=(port,),
                             ready=lambda: appserver.healthy("127.0.0.1", port))
    try:
        process.start(timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/images", timeout=10) as response:
            assert b"landscape.png" in response.read()
        assert (state / "home" / "app-metrics" / f"serve-{port}").is_dir()
        # gunicorn replaced the kubexp process itself: one master, two workers
        master = psutil.Process(process.running_pid())
        assert "gunicorn" in " ".join(master.cmdline())
        # the first worker answers while the second may still be booting on a busy machine
        deadline = time.monotonic() + 30
        while len(master.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(master.children()) == 2
    finally:
        process.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_a_service_link_in_cropapp_port_is_refused_by_name() -> None:
    """Kubernetes sets CROPAPP_PORT=tcp://IP:PORT in pods of a namespace with a Service named cropapp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROPAPP_")}
    done = subprocess.run([sys.executable, "-m", "cropapp.serve"], cwd=settings.APP_DIR, capture_output=True,
                          text=True, timeout=60, env={**env, "CROPAPP_PORT": "tcp://10.96.0.12:8000"})
    assert done.returncode == 2
    assert "CROPAPP_PORT='tcp://10.96.0.12:8000' is not a port number" in done.stderr
