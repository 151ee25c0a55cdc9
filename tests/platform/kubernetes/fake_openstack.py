"""A small Keystone v3 + Nova HTTP fake for openstacksdk, with a server state machine.

ACTIVE -> (POST .../action {"reboot": ...}) -> REBOOT or HARD_REBOOT -> after `polls_to_active`
GETs of that server -> ACTIVE (or `final_status`); SHUTOFF -> (os-start) -> the same way to
ACTIVE. It records every request (method, path, query, JSON body, token) for the tests to
assert on, and calls `on_active(name)` when a reboot completes, which is where a test plays
the kubelet coming back.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

TOKEN = "kx-test-token-" + uuid.uuid4().hex


@dataclass
class FakeServer:
    name: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "ACTIVE"
    polls_to_active: int = 2
    final_status: str = "ACTIVE"  # what a reboot ends in ("ERROR" to play a failing VM)
    polls_left: int = 0
    starting: bool = False
    actions: list[str] = field(default_factory=list)  # "SOFT", "HARD" (reboots), "os-start"

    def body(self, base: str) -> dict[str, Any]:
        rebooting = self.status in ("REBOOT", "HARD_REBOOT")
        return {
            "id": self.id, "name": self.name, "status": self.status,
            "OS-EXT-STS:vm_state": "error" if self.status == "ERROR" else "active",
            "OS-EXT-STS:task_state": "rebooting" if rebooting else "powering-on" if self.starting else None,
            "tenant_id": "p1", "user_id": "u1", "metadata": {}, "addresses": {},
            "flavor": {"original_name": "m1.medium", "vcpus": 2, "ram": 4096, "disk": 20},
            "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/compute/v2.1/servers/{self.id}"}],
        }


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    token: str | None


class FakeOpenStack:
    def __init__(self) -> None:
        self.servers: dict[str, FakeServer] = {}
        self.requests: list[RecordedRequest] = []
        self.on_active: Callable[[str], None] = lambda name: None
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenStack:
        self.thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_server(self, name: str, **kwargs: Any) -> FakeServer:
        server = FakeServer(name=name, **kwargs)
        self.servers[server.id] = server
        return server

    def by_name(self, name: str) -> FakeServer:
        return next(server for server in self.servers.values() if server.name == name)

    def write_clouds_yaml(self, path: Path, cloud: str = "kx-test") -> Path:
        path.write_text(yaml.safe_dump({"clouds": {cloud: self.auth_settings()}}))
        return path

    def auth_settings(self) -> dict[str, Any]:
        return {
            "auth": {"auth_url": f"{self.base}/identity/v3", "username": "kubexp", "password": "s3cret-pw",
                     "project_name": "research", "user_domain_name": "Default", "project_domain_name": "Default"},
            "region_name": "RegionOne", "interface": "public", "identity_api_version": 3,
        }

    def compute_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith("/compute/v2.1/servers")]

    # -- request handling (runs in the server's threads) --

    def handle(self, method: str, raw_path: str, body: Any, token: str | None) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        path, query = parts.path.rstrip("/") or "/", parse_qs(parts.query)
        with self.lock:
            self.requests.append(RecordedRequest(method, path, query, body, token))
            return self._route(method, path, query, body, token)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any,
               token: str | None) -> tuple[int, Any, dict[str, str]]:
        if path == "/identity/v3" and method == "GET":
            return 200, {"version": {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                                     "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}],
                                     "media-types": [{"base": "application/json",
                                                      "type": "application/vnd.openstack.identity-v3+json"}]}}, {}
        if path == "/identity/v3/auth/tokens" and method == "POST":
            return self._issue_token(body)
        if not path.startswith("/compute"):
            return 404, {"error": {"code": 404, "message": f"no route {path}"}}, {}
        if token != TOKEN:
            return 401, {"error": {"code": 401, "message": "The request you have made requires authentication."}}, {}
        if path == "/compute/v2.1" and method == "GET":
            return 200, {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.90", "min_version": "2.1",
                                     "updated": "2013-07-23T11:33:21Z",
                                     "links": [{"rel": "self", "href": f"{self.base}/compute/v2.1/"}]}}, {}
        if path == "/compute/v2.1/servers/detail" and method == "GET":
            wanted = (query.get("name") or [None])[0]
            found = [s.body(self.base) for s in self.servers.values() if wanted is None or s.name == wanted]
            return 200, {"servers": found}, {}
        segments = path.split("/")  # ['', 'compute', 'v2.1', 'servers', id, ('action')]
        if len(segments) >= 5 and segments[3] == "servers":
            server = self.servers.get(segments[4])
            if server is None:
                missing = f"Instance {segments[4]} could not be found."
                return 404, {"itemNotFound": {"code": 404, "message": missing}}, {}
            if len(segments) == 5 and method == "GET":
                self._advance(server)
                return 200, {"server": server.body(self.base)}, {}
            if len(segments) == 6 and segments[5] == "action" and method == "POST" and "os-start" in (body or {}):
                if server.status != "SHUTOFF":
                    return 409, {"conflictingRequest": {"code": 409, "message": "Instance is not stopped"}}, {}
                server.actions.append("os-start")
                server.starting, server.polls_left = True, server.polls_to_active
                return 202, None, {}
            if len(segments) == 6 and segments[5] == "action" and method == "POST" and "reboot" in (body or {}):
                kind = body["reboot"].get("type", "SOFT")
                if server.status != "ACTIVE" and kind == "SOFT":
                    return 409, {"conflictingRequest": {"code": 409, "message": "Cannot 'reboot' instance while it "
                                                        "is in task_state reboot_started"}}, {}
                server.actions.append(kind)
                server.status = "HARD_REBOOT" if kind == "HARD" else "REBOOT"
                server.polls_left = server.polls_to_active
                return 202, None, {}
        return 404, {"itemNotFound": {"code": 404, "message": f"no route {method} {path}"}}, {}

    def _advance(self, server: FakeServer) -> None:
        if server.status not in ("REBOOT", "HARD_REBOOT") and not server.starting:
            return
        if server.polls_left > 0:
            server.polls_left -= 1
            return
        server.status, server.starting = server.final_status, False
        if server.status == "ACTIVE":
            self.on_active(server.name)

    def _issue_token(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        password = (((body or {}).get("auth") or {}).get("identity") or {}).get("password") or {}
        user = password.get("user") or {}
        if user.get("name") != "kubexp" or user.get("password") != "s3cret-pw":
            return 401, {"error": {"code": 401, "message": "The request you have made requires authentication."}}, {}
        domain = {"id": "default", "name": "Default"}
        token = {
            "methods": ["password"], "expires_at": "2099-01-01T00:00:00.000000Z",
            "issued_at": "2026-01-01T00:00:00.000000Z",
            "user": {"id": "u1", "name": "kubexp", "domain": domain, "password_expires_at": None},
            "project": {"id": "p1", "name": "research", "domain": domain},
            "roles": [{"id": "r1", "name": "member"}],
            "catalog": [{"type": "compute", "name": "nova", "id": "c1", "endpoints": [
                {"id": "e1", "interface": "public", "region": "RegionOne", "region_id": "RegionOne",
                 "url": f"{self.base}/compute/v2.1"}]}],
        }
        return 201, {"token": token}, {"X-Subject-Token": TOKEN}


def _handler_for(cloud: FakeOpenStack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, payload, headers = cloud.handle(self.command, self.path, body, self.headers.get("X-Auth-Token"))
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
            pass

    return Handler
