"""Memory of the app under a memory limit, by app server and request (docs/app.md, "Memory under a 64 MiB limit").

Starts cropapp in a fresh cgroup v1 memory cgroup (as tests/app/test_app_oom.py does), then sends 50
sequential requests and rounds of 8 requests per client with 4, 8, ... 128 clients in parallel, and prints
per step the answers, the cgroup's peak usage (memory.max_usage_in_bytes, reset before each step) and the
cgroup's OOM-kill count. Needs a writable /sys/fs/cgroup/memory (root).

    .venv/bin/python benchmarks/app_memory_limit.py [--server flask|gunicorn] [--path PATH] [--limit-mib 64]
        [--default-arenas]

--default-arenas leaves MALLOC_ARENA_MAX unset (glibc's per-thread arenas, as the paper's container had).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubexp.platform.local import appserver
from kubexp.processes import ManagedProcess, free_port

MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")


def status(url: str) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(exc).__name__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("flask", "gunicorn"), default="flask")
    parser.add_argument("--path", default=appserver.PAPER_CROP_PATH)
    parser.add_argument("--limit-mib", type=int, default=64)
    parser.add_argument("--default-arenas", action="store_true")
    args = parser.parse_args()
    cgroup = MEMORY_CGROUPS / f"kubexp-bench-{secrets.token_hex(4)}"
    cgroup.mkdir()
    (cgroup / "memory.limit_in_bytes").write_text(str(args.limit_mib << 20))
    state, port = Path(tempfile.mkdtemp(prefix="kubexp-memory-")), free_port()
    env = appserver.gunicorn_env(state / "metrics")
    if args.default_arenas:
        env.pop("MALLOC_ARENA_MAX")
    # The shell only moves itself into the cgroup, then execs the server (no user input in it).
    argv = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup / "cgroup.procs"),
            *appserver.server_argv(args.server, "127.0.0.1", port)]
    process = ManagedProcess("cropapp-memory", argv, state, env=env, ports=(port,), cwd=appserver.APP_DIR,
                             ready=lambda: appserver.healthy("127.0.0.1", port))
    url = f"http://127.0.0.1:{port}{args.path}"

    def mib(name: str) -> float:
        return int((cgroup / name).read_text()) / 2**20

    def kills() -> int:
        return int(dict(line.split() for line in (cgroup / "memory.oom_control").read_text().splitlines())["oom_kill"])

    def step(name: str, clients: int, requests: int) -> bool:
        (cgroup / "memory.max_usage_in_bytes").write_text("0")
        started = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            answers = Counter(pool.map(status, [url] * requests))
        alive = appserver.healthy("127.0.0.1", port)
        print(f"{name:>14}: {dict(answers)}  peak {mib('memory.max_usage_in_bytes'):.1f} MiB  OOM kills {kills()}  "
              f"{time.monotonic() - started:.1f} s  serving after: {alive}")
        return alive

    try:
        process.start(timeout=60)
        time.sleep(1)
        print(f"{args.server}, {args.path}, limit {args.limit_mib} MiB, "
              f"{'default arenas' if args.default_arenas else 'MALLOC_ARENA_MAX=1'}")
        print(f"{'idle':>14}: {mib('memory.usage_in_bytes'):.1f} MiB")
        if step("50 sequential", 1, 50):
            for clients in (4, 8, 16, 32, 64, 128):
                if not step(f"{clients} parallel", clients, 8 * clients):
                    break
    finally:
        process.stop()
        shutil.rmtree(state, ignore_errors=True)
        for _ in range(50):
            try:
                cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.1)


if __name__ == "__main__":
    main()
