"""Hostile peers for the health probe: tiny servers on 127.0.0.1 ephemeral ports (and Unix sockets
under a short temp dir) that behave like a WAA host gone bad - slow headers a byte every 0.5 s,
slow bodies, huge bodies (a 28 MB accessibility tree of millions of tiny elements, a 300 MB
screendump, a 100 MB inspect answer), bombs (XML entities, a zlib-compressed PNG of 48 MB of
pixels), garbage, silence after accept, QMP that greets and stalls, an engine that trickles.

Each peer ends by itself: every connection checks a stop event between writes and the listener
closes after `lifetime_s`, so a test that forgets one never leaves a thread spinning for long.

`run_probe(args)` runs the real module (plugins/modules/waa_health_probe.py main()) in a child
Python process, the way AnsiballZ would, and returns its result with the child's wall time and
peak RSS (os.wait4's ru_maxrss: the child's own high-water mark). `python -m tests.support.hostile
probe '<json>'` is that child. `HostileHost` is a healthy host whose routes a case overrides.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
TRICKLE_S = 0.5
CHUNK = 64 * 1024

Handler = Callable[["Conn"], None]


class Conn:
    """One accepted connection: the socket, the request head (HTTP peers), and the peer's stop event."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop
        self.path = ""
        self.head = b""

    def send(self, data: bytes) -> bool:
        """False once the client has gone (or the peer is stopping)."""
        if self.stop.is_set():
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def trickle(self, data: bytes, every_s: float = TRICKLE_S) -> None:
        """One byte every `every_s` seconds."""
        for index in range(len(data)):
            if not self.send(data[index:index + 1]) or self.stop.wait(every_s):
                return

    def stream(self, pieces: Iterator[bytes]) -> None:
        for piece in pieces:
            if not self.send(piece):
                return

    def silence(self) -> None:
        self.stop.wait()

    def read_head(self, timeout_s: float = 5.0) -> bytes:
        self.sock.settimeout(timeout_s)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                piece = self.sock.recv(4096)
                if not piece:
                    break
                data += piece
        except OSError:
            pass
        self.head = data
        line = data.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        self.path = line[1] if len(line) > 1 else ""
        return data


class Peer:
    """A listener whose connections `handler` serves, each in its own thread."""

    def __init__(self, handler: Handler, unix_path: str | None = None, lifetime_s: float = 120.0) -> None:
        self.handler = handler
        self.stop = threading.Event()
        if unix_path:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(unix_path)
            self.path = unix_path
            self.port = 0
        else:
            self.listener = socket.socket()
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(("127.0.0.1", 0))
            self.port = self.listener.getsockname()[1]
            self.path = ""
        self.listener.listen(32)
        self.listener.settimeout(0.2)
        self.timer = threading.Timer(lifetime_s, self.close)
        self.timer.daemon = True
        self.timer.start()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = Conn(sock, self.stop)
        try:
            sock.settimeout(None)
            self.handler(conn)
        except OSError:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.timer.cancel()
        try:
            self.listener.close()
        except OSError:
            pass


# -- HTTP ------------------------------------------------------------------------------------------
Route = Callable[[Conn], None]


def head(status: int = 200, content_type: str = "application/json", length: int | None = None,
         chunked: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(status: int, body: bytes | str | dict[str, Any], content_type: str = "application/json") -> Route:
    if isinstance(body, dict):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body

    def route(conn: Conn) -> None:
        conn.send(head(status, content_type, len(data)) + data)
    return route


def http_peer(routes: dict[str, Route], unix_path: str | None = None) -> Peer:
    def handler(conn: Conn) -> None:
        conn.read_head()
        path = conn.path
        route = routes.get(path) or routes.get(path.split("?")[0])
        if route is None and path.startswith("/v1.41/"):
            route = routes.get(path[len("/v1.41"):].split("?")[0])
        if route is None:
            answer(404, {"message": "not found"})(conn)
            return
        route(conn)
    return Peer(handler, unix_path=unix_path)


# -- hostile routes --------------------------------------------------------------------------------
def slow_headers(body: bytes = b'{"status": "Probe successful", "message": "ok"}') -> Route:
    return lambda conn: conn.trickle(head(200, "application/json", len(body)) + body)


def slow_body(body: bytes = b'{"status": "Probe successful", "message": "ok"}' + b" " * 200) -> Route:
    def route(conn: Conn) -> None:
        if conn.send(head(200, "application/json", len(body))):
            conn.trickle(body)
    return route


def silence() -> Route:
    return lambda conn: conn.silence()


def garbage() -> Route:
    return lambda conn: conn.stream(iter([os.urandom(512) for _ in range(64)]))


def delayed(seconds: float, route: Route) -> Route:
    def later(conn: Conn) -> None:
        if not conn.stop.wait(seconds):
            route(conn)
    return later


def repeated(prefix: bytes, unit: bytes, suffix: bytes, total: int) -> Iterator[bytes]:
    """prefix + unit * n + suffix of about `total` bytes, generated a piece at a time."""
    yield prefix
    block = unit * max(1, CHUNK // len(unit))
    sent = len(prefix) + len(suffix)
    while sent + len(block) <= total:
        yield block
        sent += len(block)
    yield unit * ((total - sent) // len(unit))
    yield suffix


def sized(pieces: Callable[[], Iterator[bytes]], total: int, content_type: str = "application/json",
          chunked: bool = False) -> Route:
    def route(conn: Conn) -> None:
        conn.send(head(200, content_type, None if chunked else total, chunked=chunked))
        source = pieces()
        if chunked:
            conn.stream(b"%x\r\n%s\r\n" % (len(p), p) for p in source if p)
            conn.send(b"0\r\n\r\n")
        else:
            conn.stream(source)
    return route


def huge_tree(total: int = 28 << 20, windows: bool = True) -> Route:
    """`{"AT": "<desktop><a/><a/>..."}`: millions of tiny windows (or 28 MB of text and none)."""
    prefix, suffix = b'{"AT": "<desktop>', b'</desktop>"}'
    unit = b"<a/>" if windows else b"x"
    size = total - (total - len(prefix) - len(suffix)) % len(unit)
    return lambda conn: sized(lambda: repeated(prefix, unit, suffix, size), size)(conn)


def deep_tree(total: int = 16 << 20) -> Route:
    """`{"AT": "<a><a><a>...`: millions of open elements (a nesting bomb)."""
    return lambda conn: sized(lambda: repeated(b'{"AT": "<desktop>', b"<a>", b'"}', total), total)(conn)


def xml_bomb() -> Route:
    entities = '<!ENTITY a0 "<w/>">' + "".join(f'<!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 9))
    tree = f'<?xml version="1.0"?><!DOCTYPE desktop [{entities}]><desktop>&a8;</desktop>'
    return answer(200, {"AT": tree})


def png_of(width: int, height: int, black: bool = True) -> bytes:
    """An RGB PNG, compressed a row at a time (a 4000x4000 black one is a 48 MB zlib bomb of ~50 KB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    row = b"\x00" + (b"\x00\x00\x00" if black else b"\x00\x5a\x9e") * width
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def tar_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def huge_stream(total: int, content_type: str = "application/x-tar", chunked: bool = True) -> Route:
    """`total` bytes of zeros (a 300 MB 'screendump'), generated as they are sent."""
    return sized(lambda: repeated(b"", b"\x00" * 4096, b"", total), total, content_type, chunked=chunked)


def huge_inspect(total: int = 100 << 20) -> Route:
    prefix = b'{"State": {"Status": "running", "Running": true}, "Junk": "'
    return sized(lambda: repeated(prefix, b"x" * 4096, b'"}', total), total)


# -- QMP -------------------------------------------------------------------------------------------
def qmp_peer(mode: str = "ok", status: str = "running") -> Peer:
    """QEMU's QMP: "ok", "greet_then_stall", "silent", "garbage"."""
    def handler(conn: Conn) -> None:
        if mode == "silent":
            conn.silence()
            return
        if mode == "garbage":
            conn.stream(iter([b"{{{ not json at all " * 50] * 100))
            return
        conn.send(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
        if mode == "greet_then_stall":
            conn.silence()
            return
        reader = conn.sock.makefile("rb")
        for line in reader:
            name = json.loads(line).get("execute")
            reply = {"return": {"status": status, "running": status == "running"}} if name == "query-status" \
                else {"return": {}}
            if not conn.send(json.dumps(reply).encode() + b"\r\n"):
                return
    return Peer(handler)


# -- a whole host ------------------------------------------------------------------------------------
TREE = '<desktop><shell_traywnd name="Taskbar"/></desktop>'
CONTAINER = {"State": {"Status": "running", "Running": True, "Restarting": False, "OOMKilled": False,
                       "ExitCode": 0, "StartedAt": "2026-11-24T00:00:00.123456789Z"},
             "RestartCount": 0, "Config": {"Image": "waa-emulator:latest"}}


class HostileHost:
    """A healthy host (engine on a Unix socket, noVNC, QMP, WAA server); a case replaces routes
    (`engine`, `web`, `server` dicts) or the QMP mode before `start()`."""

    def __init__(self, name: str = "winarena") -> None:
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="waa-h-")
        self.socket = os.path.join(self.dir, "docker.sock")
        desktop = png_of(64, 40, black=False)
        self.engine: dict[str, Route] = {
            "/_ping": answer(200, "OK", "text/plain"),
            "/version": answer(200, {"Version": "20.10.24", "ApiVersion": "1.41"}),
            f"/containers/{name}/json": answer(200, CONTAINER),
            f"/containers/{name}/logs": answer(200, b"", "application/vnd.docker.raw-stream"),
            f"/containers/{name}/archive": answer(200, tar_of("waa-probe-screen.png", desktop), "application/x-tar"),
        }
        self.web: dict[str, Route] = {"/msg.html": answer(404, "not found", "text/html"),
                                      "/vnc.html": answer(200, "<html><title>noVNC</title></html>", "text/html")}
        self.server: dict[str, Route] = {
            "/probe": answer(200, {"status": "Probe successful", "message": "Service is operational"}),
            "/accessibility": answer(200, {"AT": TREE}),
            "/screenshot": answer(200, desktop, "image/png"),
        }
        self.qmp_mode = "ok"
        self.peers: list[Peer] = []

    def start(self) -> "HostileHost":
        self.engine_peer = http_peer(self.engine, unix_path=self.socket)
        self.web_peer = http_peer(self.web)
        self.server_peer = http_peer(self.server)
        self.qmp_peer = qmp_peer(self.qmp_mode)
        self.peers = [self.engine_peer, self.web_peer, self.server_peer, self.qmp_peer]
        return self

    def args(self, **extra: Any) -> dict[str, Any]:
        return {"docker_host": self.socket, "host": "127.0.0.1", "container_name": self.name,
                "ports": {"novnc": self.web_peer.port, "server": self.server_peer.port, "qmp": self.qmp_peer.port},
                "breaker_threshold": 0, "breaker_state_dir": os.path.join(self.dir, "breaker"), **extra}

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- running the module in a child process ---------------------------------------------------------------
HWM_PREFIX = "WAA_HOSTILE_VMHWM_KB="
def run_probe(args: dict[str, Any], kill_after_s: float = 60.0, code_root: str | None = None) -> dict[str, Any]:
    """The module's result in a child Python (what AnsiballZ runs), plus `_rc`, `_wall_s`,
    `_peak_rss_mb` (the child's own VmHWM) and `_killed` (it outlived `kill_after_s`).
    `code_root`: a directory holding another ansible_collections tree to import instead."""
    env = dict(os.environ, PYTHONPATH=str(REPO), WAA_HOSTILE_CODE_ROOT=code_root or str(REPO / "collections"))
    out = tempfile.TemporaryFile()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.hostile", "probe", json.dumps(args)],
                            cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT, env=env)
    killer = threading.Timer(kill_after_s, proc.kill)
    killer.daemon = True
    killer.start()
    _pid, status, rusage = os.wait4(proc.pid, 0)  # the child's own rusage (ru_maxrss = its VmHWM)
    killer.cancel()
    killed = time.monotonic() - started >= kill_after_s
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    out.seek(0)
    text = out.read().decode("utf-8", "replace")
    result: dict[str, Any] = {}
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except ValueError:
                continue
    peak_kb = float(rusage.ru_maxrss)  # counts the pre-exec fork of this (large) test process too
    for line in text.splitlines():
        if line.startswith(HWM_PREFIX):
            peak_kb = float(line[len(HWM_PREFIX):])
    result.update(_rc=proc.returncode, _wall_s=round(wall, 2), _peak_rss_mb=round(peak_kb / 1024, 1),
                  _killed=killed, _output=text[-2000:] if not result else "")
    return result


def _child(args_json: str) -> None:
    sys.path.insert(0, os.environ.get("WAA_HOSTILE_CODE_ROOT", str(REPO / "collections")))
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.openadapt.waa.plugins.modules import waa_health_probe

    try:
        with patch_module_args(json.loads(args_json)):
            waa_health_probe.main()  # type: ignore[no-untyped-call]  # the module is Python-2-style, untyped
    finally:  # the probe's own peak after exec (wait4's ru_maxrss also counts the forked test runner)
        sys.stdout.flush()
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                sys.stderr.write("%s%s\n" % (HWM_PREFIX, line.split()[1]))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        _child(sys.argv[2])
    else:
        raise SystemExit("usage: python -m tests.support.hostile probe '<module args as JSON>'")
