"""Keep one cluster component running, as systemd's `Restart=always` or the kubelet's static pods do on a
real node: kube-controller-manager and kube-scheduler exit on purpose when etcd times out, and a real node
brings them back.

    python -m kubexp.platform.kubernetes.localcluster.supervise RESTARTS_FILE -- PROGRAM [ARG...]

The program shares this process's session, output and log. Each exit that was not asked for is written to
the output with its code and counted in RESTARTS_FILE; the next start waits 1 s, doubling up to 10 s while
the program keeps exiting within 60 s of its start. SIGTERM or SIGINT is passed on and ends the supervision.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 10.0
STABLE_AFTER_S = 60.0


def read_restarts(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def supervise(restarts_file: Path, argv: list[str]) -> int:
    stopping: list[int] = []
    child: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        if child and child[0].poll() is None:
            child[0].send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    restarts_file.write_text("0\n")
    delay = FIRST_DELAY_S
    while True:
        started = time.monotonic()
        child[:] = [subprocess.Popen(argv, stdin=subprocess.DEVNULL)]
        if stopping:  # the signal came before the child existed
            child[0].send_signal(stopping[0])
        code = child[0].wait()
        if stopping:
            return 0
        ran = time.monotonic() - started
        if ran >= STABLE_AFTER_S:
            delay = FIRST_DELAY_S
        count = read_restarts(restarts_file) + 1
        restarts_file.write_text(f"{count}\n")
        print(f"kubexp-supervise: {Path(argv[0]).name} exited with code {code} after {ran:.1f} s; "
              f"restart {count} in {delay:.0f} s", flush=True)
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if stopping:
            return 0
        delay = min(delay * 2, MAX_DELAY_S)


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: supervise RESTARTS_FILE -- PROGRAM [ARG...]", file=sys.stderr)
        return 2
    return supervise(Path(args[0]), args[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
