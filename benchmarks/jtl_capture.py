"""Capture real JMeter 5.5 result rows: the templates of the JTL benchmarks' generated files.

Runs JMeter distributed over two local JMeter servers (as the tests do) against a local HTTP server
that answers the app's crop URL with a long query string: mostly 200, sometimes 503 or 404, and
sometimes too late (JMeter's response timeout, 500 ms, fires). Writes every failed row and a
sample of the others, as JMeter wrote them (header row included), to
benchmarks/data/jmeter-5.5-rows.jtl.

    .venv/bin/python benchmarks/jtl_capture.py [--duration 8] [--keep 400]
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kubexp.load.jmeter import LocalJMeterServers, run_load
from kubexp.platform.base import Endpoint
from kubexp.platform.local.appserver import DEFAULT_CROP_PATH

OUTPUT = Path(__file__).parent / "data" / "jmeter-5.5-rows.jtl"
REQUEST_PATH = f"{DEFAULT_CROP_PATH}&format=png&quality=85&session=9f1c2e7a-44b1-4b8e-9d4e-3a6f0c1d2b7e&trace=on"


class _Answer(BaseHTTPRequestHandler):
    """200 with a 48 kB body, or (by chance) 503, 404, or an answer after JMeter's response timeout."""

    protocol_version = "HTTP/1.1"
    body = b"x" * 48_213

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
        draw = random.random()
        if draw < 0.004:
            time.sleep(0.8)
        status, body = (503, b"busy") if draw > 0.99 else (404, b"none") if draw > 0.985 else (200, self.body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # JMeter timed out and closed the connection

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--keep", type=int, default=400, help="successful rows to keep (all failures are kept)")
    args = parser.parse_args()
    server = _Server(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state = Path(tempfile.mkdtemp(prefix="kubexp-jtl-capture-"))
    results = Path(tempfile.mkdtemp(prefix="kubexp-jtl-capture-", dir="/dev/shm"))
    servers = LocalJMeterServers(2, state)
    try:
        scenario = {"pods": 1, "workers": 8, "think_time_ms": 5, "duration_s": args.duration,
                    "connect_timeout_ms": 2000, "response_timeout_ms": 500, "arrival_rate_per_s": None}
        addresses = servers.start()
        run = run_load(scenario, Endpoint("127.0.0.1", server.server_address[1], "/"), results,
                       servers=addresses, request_path=REQUEST_PATH, rmi_ssl=servers.rmi_ssl)
        lines = run.jtl.read_text().splitlines(keepends=True)  # one sample per line: no newline in these fields
        header = next(csv.reader(lines[:1]))
        rows = list(zip(lines[1:], csv.reader(lines[1:]), strict=True))
        success = header.index("success")
        failed = [row for row in rows if row[1][success] == "false"]
        kept = random.Random(7).sample([row for row in rows if row[1][success] == "true"], args.keep)
        OUTPUT.parent.mkdir(exist_ok=True)
        ordered = sorted(failed + kept, key=lambda row: int(row[1][0]))
        OUTPUT.write_text(lines[0] + "".join(line for line, _fields in ordered))
        print(f"{len(rows)} rows from JMeter, {len(failed)} failed; wrote {len(failed) + len(kept)} to {OUTPUT}")
    finally:
        servers.stop()
        server.shutdown()
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(results, ignore_errors=True)


if __name__ == "__main__":
    main()
