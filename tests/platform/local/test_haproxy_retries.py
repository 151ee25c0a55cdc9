"""The HAProxy the local platform renders, for real: mesh=istio retries every 5xx HAProxy can retry
(500-504, like Istio's retryOn 5xx), native passes them through."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from kubexp.platform.local import haproxy
from kubexp.processes import free_port


def _backend(code: int) -> type[BaseHTTPRequestHandler]:
    class Answer(BaseHTTPRequestHandler):
        """Healthy for the health check, `code` for every request."""

        def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
            status = 200 if self.path == "/healthz" else code
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Answer


@pytest.fixture
def replicas() -> Iterator[list[tuple[str, int]]]:
    """One good replica and two that answer 500 and 501 (not 502-504, which HAProxy retried before)."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _backend(code)) for code in (200, 500, 501)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield [(f"replica-{s.server_address[1]}", s.server_address[1]) for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _codes(mesh: str, servers: list[tuple[str, int]], folder: Path) -> Counter[int]:
    frontend, stats = free_port(), free_port()
    config = haproxy.HAProxyConfig(frontend_port=frontend, stats_port=stats, servers=servers,
                                   health_check_interval_s=0.2, mesh=mesh)
    folder.mkdir()
    (folder / "haproxy.cfg").write_text(config.render())
    process = haproxy.process("haproxy", folder / "haproxy.cfg", folder, [frontend, stats])
    process.start(timeout=15)
    try:
        deadline = time.monotonic() + 15
        while not all(s.checked_up for s in haproxy.server_states(stats) or []):
            assert time.monotonic() < deadline, f"replicas not checked up: {haproxy.server_states(stats)}"
            time.sleep(0.1)
        return Counter(requests.get(f"http://127.0.0.1:{frontend}/", timeout=10).status_code for _ in range(30))
    finally:
        process.stop()


def test_istio_stand_in_retries_500_and_501_native_does_not(replicas: list[tuple[str, int]], tmp_path: Path) -> None:
    assert "500 501 502 503 504" in haproxy.RETRY_ON
    native = _codes("native", replicas, tmp_path / "native")
    assert native[500] > 0 and native[501] > 0 and native[200] > 0  # round robin over all three, no retry
    istio = _codes("istio", replicas, tmp_path / "istio")
    assert istio == Counter({200: 30})  # every 500 and 501 retried onto the good replica
