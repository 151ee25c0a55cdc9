"""`kubexp app serve` runs the app in the foreground under gunicorn (exec: signals reach gunicorn)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

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
