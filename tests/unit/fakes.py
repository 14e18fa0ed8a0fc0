"""Local fake servers for the health layers' unit tests: a Docker API on a Unix socket, HTTP
servers on loopback (noVNC/status page and the WAA server) and a QMP server, each programmable
per test. Real sockets, fake behaviour: the probe's timeouts and parsing are exercised for real."""
from __future__ import annotations

import io
import json
import socket
import socketserver
import struct
import tarfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def make_png(black: bool, width: int = 64, height: int = 40) -> bytes:
    pixel = b"\x00\x00\x00" if black else b"\x00\x5a\x9e"
    raw = b"".join(b"\x00" + pixel * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


Route = Callable[[BaseHTTPRequestHandler], tuple[int, str, bytes] | None]


class FakeHTTP:
    """An HTTP server on 127.0.0.1:<random>; `routes[path]` returns (status, content type, body),
    or None to hang (accept and never answer)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                fake.hits.append(self.path)
                route = fake.routes.get(self.path) or fake.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                answer = route(self)
                if answer is None:
                    time.sleep(30)  # hang: the client's timeout must end this
                    return
                status, content_type, body = answer
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def answer(self, path: str, status: int, body: bytes | str | dict, content_type: str = "text/html") -> None:
        if isinstance(body, dict):
            body, content_type = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            body = body.encode()
        self.routes[path] = lambda handler, s=status, c=content_type, b=body: (s, c, b)

    def hang(self, path: str) -> None:
        self.routes[path] = lambda handler: None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeQMP:
    def __init__(self, status: str = "running", screen: bytes | None = None) -> None:
        self.status = status
        self.screen = screen
        self.commands: list[str] = []
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
                for line in self.rfile:
                    command = json.loads(line)
                    name = command.get("execute")
                    fake.commands.append(name)
                    if name == "query-status":
                        reply = {"return": {"status": fake.status, "running": fake.status == "running"}}
                    elif name == "screendump":
                        reply = {"return": {}}
                    else:
                        reply = {"return": {}}
                    self.wfile.write(json.dumps(reply).encode() + b"\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeDocker:
    """The Docker Engine API on a Unix socket: _ping, version, one container's inspect/logs/archive."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.containers: dict[str, dict] = {}
        self.logs: dict[str, str] = {}
        self.screen: bytes | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def address_string(self) -> str:
                return "unix"

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?")[0].removeprefix("/v1.41")
                if path == "/_ping":
                    return self._send(200, b"OK", "text/plain")
                if path == "/version":
                    return self._send(200, json.dumps({"Version": "20.10.24", "ApiVersion": "1.41"}).encode())
                parts = path.split("/")
                if len(parts) == 4 and parts[1] == "containers":
                    name, what = parts[2], parts[3]
                    if name not in fake.containers:
                        return self._send(404, b'{"message": "No such container"}')
                    if what == "json":
                        return self._send(200, json.dumps(fake.containers[name]).encode())
                    if what == "logs":
                        payload = fake.logs.get(name, "").encode()
                        frame = struct.pack(">BxxxI", 1, len(payload)) + payload
                        return self._send(200, frame, "application/vnd.docker.raw-stream")
                    if what == "archive" and fake.screen is not None:
                        buffer = io.BytesIO()
                        with tarfile.open(fileobj=buffer, mode="w") as archive:
                            info = tarfile.TarInfo("waa-probe-screen.png")
                            info.size = len(fake.screen)
                            archive.addfile(info, io.BytesIO(fake.screen))
                        return self._send(200, buffer.getvalue(), "application/x-tar")
                return self._send(404, b'{"message": "not found"}')

        self.server = _UnixHTTPServer(path, Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def add_container(self, name: str, running: bool = True, restarting: bool = False, oom: bool = False,
                      exit_code: int = 0) -> None:
        status = "running" if running else ("restarting" if restarting else "exited")
        self.containers[name] = {
            "State": {"Status": status, "Running": running, "Restarting": restarting, "OOMKilled": oom,
                      "ExitCode": exit_code, "StartedAt": "2026-11-24T00:00:00Z"},
            "RestartCount": 2 if restarting else 0, "Config": {"Image": "waa-emulator:latest"}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
