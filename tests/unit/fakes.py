"""Local fake servers for the health layers' unit tests: a Docker API on a Unix socket, HTTP
servers on loopback (noVNC/status page and the WAA server) and a QMP server, each programmable
per test. Real sockets, fake behaviour: the probe's timeouts and parsing are exercised for real.
Everything listens on 127.0.0.1 or a Unix socket under the test's tmp_path."""
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
from urllib.parse import parse_qs, urlsplit

HANG_S = 30  # a hung handler sleeps this long; the client's timeout must end the wait long before


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_row(kind: int, row: bytes, prev: bytes, bpp: int) -> bytes:
    """The PNG encoder's side of the five filters (the probe implements the decoder's side)."""
    if kind == 0:
        return bytes(row)
    if not any(row) and not any(prev):  # shortcuts keep full-screen test images cheap to build
        return bytes(len(row))
    if kind == 2 and row == prev:
        return bytes(len(row))
    if kind == 1 and row == row[:bpp] * (len(row) // bpp):
        return row[:bpp] + bytes(len(row) - bpp)
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        predictor = {0: 0, 1: a, 2: b, 3: (a + b) >> 1, 4: _paeth(a, b, c)}[kind]
        out[i] = (x - predictor) & 0xFF
    return bytes(out)


def encode_png(rows: list[bytes], width: int, color_type: int = 2, depth: int = 8, filters: int | list[int] = 0,
               palette: bytes | None = None) -> bytes:
    """A PNG of the given raw rows, each row filtered with `filters` (one type, or one per row)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    bpp = max(1, channels * depth // 8)
    raw = bytearray()
    prev = bytes(len(rows[0]))
    for index, row in enumerate(rows):
        kind = filters if isinstance(filters, int) else filters[index % len(filters)]
        raw += bytes([kind]) + filter_row(kind, row, prev, bpp)
        prev = row
    header = struct.pack(">IIBBBBB", width, len(rows), depth, color_type, 0, 0, 0)
    body = _chunk(b"IHDR", header) + (_chunk(b"PLTE", palette) if palette else b"")
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IDAT", zlib.compress(bytes(raw))) + _chunk(b"IEND", b"")


def make_png(black: bool, width: int = 64, height: int = 40, filters: int | list[int] = 0,
             dots: int = 0) -> bytes:
    """A black or Windows-blue RGB screen; `dots` white pixels on a black one (a mouse cursor)."""
    pixel = b"\x00\x00\x00" if black else b"\x00\x5a\x9e"
    rows = [bytearray(pixel * width) for _ in range(height)]
    for n in range(dots):
        y, x = divmod(n, width)
        rows[y][3 * x:3 * x + 3] = b"\xff\xff\xff"
    return encode_png([bytes(r) for r in rows], width, filters=filters)


class _QuietErrors:
    """The client gave up (its timeout): that is what the tests provoke, not a server error."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, TimeoutError)):
            super().handle_error(request, client_address)


class _HTTPServer(_QuietErrors, ThreadingHTTPServer):
    daemon_threads = True


class _TCPServer(_QuietErrors, socketserver.ThreadingTCPServer):
    daemon_threads = True


Route = Callable[[BaseHTTPRequestHandler], "tuple[int, str, bytes] | None"]


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
                    time.sleep(HANG_S)  # hang: the client's timeout must end this
                    return
                status, content_type, body = answer
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _HTTPServer(("127.0.0.1", 0), Handler)
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

    def trickle(self, path: str, every_s: float) -> None:
        """Send the headers, then one body byte every `every_s` seconds, forever (for HANG_S)."""
        def route(handler):
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", "1000000")
            handler.end_headers()
            end = time.monotonic() + HANG_S
            try:
                while time.monotonic() < end:
                    handler.wfile.write(b" ")
                    handler.wfile.flush()
                    time.sleep(every_s)
            except OSError:
                pass
            return None
        self.routes[path] = route

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeQMP:
    """QEMU's QMP: greeting, qmp_capabilities, query-status, screendump.

    mode: "ok", "hang" (accept, never greet), "garbage" (greet with something else),
    "events" (send events before each reply), "screendump_error".
    """

    def __init__(self, status: str = "running", mode: str = "ok") -> None:
        self.status = status
        self.mode = mode
        self.commands: list[str] = []
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                if fake.mode == "hang":
                    time.sleep(HANG_S)
                    return
                greeting = {"QMP": {"version": {}, "capabilities": []}} if fake.mode != "garbage" else {"hello": 1}
                self.wfile.write(json.dumps(greeting).encode() + b"\r\n")
                for line in self.rfile:
                    command = json.loads(line)
                    name = command.get("execute")
                    fake.commands.append(name)
                    if fake.mode == "events":
                        self.wfile.write(b'{"event": "RTC_CHANGE", "data": {"offset": 0}}\r\n')
                    if name == "query-status":
                        reply = {"return": {"status": fake.status, "running": fake.status == "running"}}
                    elif name == "screendump" and fake.mode == "screendump_error":
                        reply = {"error": {"class": "GenericError", "desc": "no console"}}
                    else:
                        reply = {"return": {}}
                    self.wfile.write(json.dumps(reply).encode() + b"\r\n")

        self.server = _TCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _UnixHTTPServer(_QuietErrors, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def tar_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeDocker:
    """The Docker Engine API on a Unix socket: _ping, version, one container's inspect/logs/archive,
    and streaming endpoints (`streams[path]` = list of (delay_s, bytes) pieces, sent chunked unless
    `stream_length` says to send a Content-Length)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.containers: dict[str, dict] = {}
        self.logs: dict[str, str] = {}
        self.screen: bytes | None = None
        self.ping_status = 200
        self.hang_all = False
        self.streams: dict[str, list[tuple[float, bytes]]] = {}
        self.stream_status = 200
        self.stream_length = False
        self.queries: list[tuple[str, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def address_string(self) -> str:
                return "unix"

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def _stream(self, pieces: list[tuple[float, bytes]]) -> None:
                self.close_connection = True
                self.send_response(fake.stream_status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                if fake.stream_length:
                    self.send_header("Content-Length", str(sum(len(p) for _, p in pieces)))
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for delay, piece in pieces:
                        time.sleep(delay)
                        if fake.stream_length:
                            self.wfile.write(piece)
                        else:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    if not fake.stream_length:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass

            def do_POST(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                split = urlsplit(self.path)
                path = split.path.removeprefix("/v1.41")
                fake.queries.append((path, {k: v[0] for k, v in parse_qs(split.query).items()}))
                if fake.hang_all:
                    time.sleep(HANG_S)
                    return
                if path in fake.streams:
                    return self._stream(fake.streams[path])
                if path == "/_ping":
                    return self._send(fake.ping_status, b"OK" if fake.ping_status == 200 else b"down", "text/plain")
                if path == "/version":
                    return self._send(200, json.dumps({"Version": "20.10.24", "ApiVersion": "1.41"}).encode())
                parts = path.split("/")
                if len(parts) == 4 and parts[1] == "containers":
                    name, what = parts[2], parts[3]
                    if name not in fake.containers:
                        return self._send(404, b'{"message": "No such container: %s"}' % name.encode())
                    if what == "json":
                        return self._send(200, json.dumps(fake.containers[name]).encode())
                    if what == "logs":
                        payload = fake.logs.get(name, "").encode()
                        frame = struct.pack(">BxxxI", 1, len(payload)) + payload if payload else b""
                        return self._send(200, frame, "application/vnd.docker.raw-stream")
                    if what == "archive" and fake.screen is not None:
                        return self._send(200, tar_of("waa-probe-screen.png", fake.screen), "application/x-tar")
                    if what == "archive":
                        return self._send(404, b'{"message": "Could not find the file"}')
                return self._send(404, b'{"message": "page not found"}')

        self.server = _UnixHTTPServer(path, Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def add_container(self, name: str, running: bool = True, restarting: bool = False, oom: bool = False,
                      exit_code: int = 0, started_at: str = "2026-11-24T00:00:00.123456789Z") -> None:
        status = "running" if running else ("restarting" if restarting else "exited")
        self.containers[name] = {
            "State": {"Status": status, "Running": running, "Restarting": restarting, "OOMKilled": oom,
                      "ExitCode": exit_code, "StartedAt": started_at},
            "RestartCount": 2 if restarting else 0, "Config": {"Image": "waa-emulator:latest"}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
