"""Small stand-ins shared by the tests: an HTTP app behind a "NodePort", a logging CLI tool."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SSH_CONN_ID = "kx_test_ssh"
KUBE_CONN_ID = "kx_test_kube"


class SanityServer:
    """Stands in for the app behind a NodePort: answers GET /healthz with 200 and records every path."""

    def __init__(self) -> None:
        paths = self.paths = []  # type: list[str]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                paths.append(self.path)
                self.send_response(200 if self.path == "/healthz" else 404)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@dataclass
class FakeTool:
    path: Path
    log: Path

    def calls(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]
