"""The paper's effect: under a 64 MiB memory limit, concurrent large crops get workers OOM-killed,
while sequential requests (low load) are unaffected. Real gunicorn in a real cgroup v1."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kubexp.platform.local import appserver
from kubexp.processes import ManagedProcess, free_port

MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")


def _status(url: str) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(exc).__name__


@pytest.mark.slow
def test_concurrent_large_crops_are_oom_killed_under_64_mib(bundled_images: Path) -> None:
    if not os.access(MEMORY_CGROUPS, os.W_OK):
        pytest.skip(f"no writable cgroup v1 memory controller at {MEMORY_CGROUPS} on this machine")
    cgroup = MEMORY_CGROUPS / f"kubexp-test-{secrets.token_hex(4)}"
    cgroup.mkdir()
    (cgroup / "memory.limit_in_bytes").write_text(str(64 << 20))
    state = Path(tempfile.mkdtemp(prefix="kubexp-oom-"))
    port = free_port()
    # The shell only moves itself into the cgroup, then execs gunicorn (no user input in it).
    argv = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup / "cgroup.procs"),
            *appserver.gunicorn_argv("127.0.0.1", port, workers=1)]
    process = ManagedProcess("cropapp-oom", argv, state, env=appserver.gunicorn_env(state / "metrics"),
                             ports=(port,), ready=lambda: appserver.healthy("127.0.0.1", port))
    url = f"http://127.0.0.1:{port}{appserver.DEFAULT_CROP_PATH}"

    def oom_kills() -> int:
        return int(dict(line.split() for line in (cgroup / "memory.oom_control").read_text().splitlines())["oom_kill"])

    try:
        process.start(timeout=60)
        assert [_status(url) for _ in range(5)] == [200] * 5
        assert oom_kills() == 0
        with ThreadPoolExecutor(8) as pool:
            outcomes = Counter(pool.map(_status, [url] * 32))
        assert oom_kills() > 0, outcomes
        assert sum(n for status, n in outcomes.items() if status != 200) > 0
        # gunicorn's master replaces the killed worker: the app serves again
        deadline = time.monotonic() + 30
        while not appserver.healthy("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _status(url) == 200
    finally:
        process.stop()
        shutil.rmtree(state, ignore_errors=True)
        for _ in range(50):
            try:
                cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.1)
