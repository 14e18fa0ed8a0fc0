#!/usr/bin/env python3
"""The WAA emulator: behaves like the windowsarena/winarena container, port for port and log line
for log line, without Windows or QEMU, so roles, probes and fleets can be tested for real in seconds.

One process (PID 1 of the container, exec'd by entry.sh) plays every part of the real image:
- WAA's entry.sh / entry_setup.sh: the flags, "Starting WinArena...", the poller that probes the
  guest's /probe and logs "Waiting for a response ..." until it answers, then the ready line;
- dockur/windows (start_vm.sh): the status page on 8006 (/msg.html 200) that becomes noVNC
  (/msg.html 404) when QEMU starts, the precondition checks with their real messages (KVM,
  RAM_SIZE, NET_ADMIN -> usermode networking), the first-boot install on /storage;
- QEMU: QMP on 7200, the text monitor on 7100, the screen (screendump);
- the Windows guest: the WAA server API on GUEST_ADDR:5000 (a loopback address inside the
  container), reachable from outside only through the port forward that exists when the
  container has NET_ADMIN, as the real image's NAT rule; 3389 accepts like the RDP forward.
Faults are injected at start (WAA_EMU_FAULT) or at run time (`waa-emu-fault NAME`); every server
reads the fault file on every request. docs/emulator.md lists every difference from the real image.
Standard library only.
"""
from __future__ import annotations

import http.client
import json
import os
import select
import shlex
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

EMULATOR_VERSION = "2"
ENTRY_FLAGS = (
    "prepare-image", "start-client", "agent", "model", "som-origin", "a11y-backend", "clean-results",
    "worker-id", "num-workers", "result-dir", "json-name",
)
ENTRY_DEFAULTS = {
    "prepare-image": "false", "start-client": "true", "agent": "navi", "model": "gpt-4-vision-preview",
    "som-origin": "oss", "a11y-backend": "uia", "clean-results": "true", "worker-id": "0", "num-workers": "1",
    "result-dir": "./results", "json-name": "evaluation_examples_windows/test_all.json",
}
FAULTS = ("server_down", "server_hang", "empty_tree", "black_screen", "crash")
FAULT_FILE = os.environ.get("WAA_EMU_FAULT_FILE", "/run/waa-emu/faults")
STORAGE = os.environ.get("WAA_EMU_STORAGE", "/storage")
GUEST_ADDR = os.environ.get("WAA_EMU_GUEST_ADDR", "127.0.0.2")
GUEST_PORT = 5000
PORTS = {"web": 8006, "rdp": 3389, "qmp": 7200, "monitor": 7100}
SCREEN_W, SCREEN_H = 1440, 900
CAP_NET_ADMIN = 12
QEMU_VERSION = "8.2.2"
DOCKUR_VERSION = "0.0"
TICK_S = 0.1

# ------------------------------------------------------------------------------------------ logs
_LOG_LOCK = threading.Lock()
_COLOR = os.environ.get("WAA_EMU_LOG_COLOR", "0").lower() in ("1", "y", "yes", "true")


def log(line: str) -> None:
    """One line on stdout (docker logs), flushed at once."""
    with _LOG_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def info(message: str) -> None:  # dockur's info(): "❯ message"
    log(f"\x1b[1;34m❯ \x1b[1;36m{message}\x1b[0m" if _COLOR else f"❯ {message}")


def error(message: str) -> None:  # dockur's error(): "❯ ERROR: message" (the real one writes stderr)
    log(f"\x1b[1;31m❯ ERROR: {message}\x1b[0m" if _COLOR else f"❯ ERROR: {message}")


def warn(message: str) -> None:  # dockur's warn(): "❯ Warning: message" (the real one writes stderr)
    log(f"\x1b[1;31m❯ Warning: {message}\x1b[0m" if _COLOR else f"❯ Warning: {message}")


def emu(message: str) -> None:
    """A line only the emulator writes: never mistaken for one of the real image's."""
    log(f"[waa-emu] {message}")


def seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        emu(f"{name}={raw!r} is not a number of seconds: using {default}")
        return default
    return max(0.0, value)


# ---------------------------------------------------------------------------------------- faults
def read_faults() -> frozenset:
    try:
        with open(FAULT_FILE) as handle:
            return frozenset(line.strip() for line in handle if line.strip())
    except OSError:
        return frozenset()


def has_fault(name: str) -> bool:
    return name in read_faults()


# --------------------------------------------------------------------------------------- machine
class Machine:
    """What the emulated VM is doing; every server reads it on every request."""

    def __init__(self, timings: dict) -> None:
        self.timings = timings
        self.lock = threading.Lock()
        self.step = "Starting Windows for Docker..."  # the text of /msg.html
        self.status_page = True  # dockur removes the status page right before QEMU starts
        self.qemu_at: float | None = None  # monotonic time QEMU started
        self.server_at: float | None = None  # the guest's WAA server starts listening
        self.off = False  # Windows shut down / QEMU quit
        self.off_at: float | None = None  # a shutdown in progress completes at this time
        self.paused = False  # QMP stop / cont
        self.networking = True  # False: usermode networking, the guest is unreachable
        self.qemu_servers: list = []  # QMP and monitor listeners: closed when QEMU exits

    @property
    def qemu_running(self) -> bool:
        return self.qemu_at is not None and not self.off

    def desktop_ready(self) -> bool:
        if not self.qemu_running or self.server_at is None:
            return False
        return time.monotonic() >= self.server_at + self.timings["black"]

    def server_should_listen(self) -> bool:
        return (self.qemu_running and self.networking and self.server_at is not None
                and time.monotonic() >= self.server_at and not has_fault("server_down"))

    def screen_black(self) -> bool:
        return not self.desktop_ready() or has_fault("black_screen")

    def schedule_power_off(self, delay_s: float) -> None:
        with self.lock:
            if not self.off and self.off_at is None:
                self.off_at = time.monotonic() + delay_s


MACHINE: Machine  # set in main()


# -------------------------------------------------------------------------------------- pictures
def png_bytes(width: int, height: int, rows: list) -> bytes:
    """A truecolour PNG (filter 0 on every row) from raw RGB rows."""
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _row(background: tuple, spans: list) -> bytes:
    """One row of the screen: a background colour with (x0, x1, colour) spans painted in order."""
    row = bytearray(bytes(background) * SCREEN_W)
    for x0, x1, colour in spans:
        x0, x1 = max(0, x0), min(SCREEN_W, x1)
        if x1 > x0:
            row[3 * x0:3 * x1] = bytes(colour) * (x1 - x0)
    return bytes(row)


def desktop_rows() -> list:
    """A Windows 11-ish desktop: blue wallpaper, a File Explorer window, the centred taskbar."""
    rows = []
    taskbar_top = SCREEN_H - 48
    win_x0, win_x1, win_y0, win_y1 = 320, 1120, 140, 640
    icons = [(640, (0, 103, 192)), (690, (255, 185, 0)), (740, (0, 120, 212)), (790, (16, 124, 16))]
    for y in range(SCREEN_H):
        if y >= taskbar_top:
            spans = [(0, SCREEN_W, (238, 238, 242))] if y == taskbar_top else []
            if taskbar_top + 12 <= y < taskbar_top + 36:
                spans += [(x, x + 24, colour) for x, colour in icons]
            rows.append(_row((243, 243, 243), spans))
            continue
        shade = 120 + (y * 80) // taskbar_top  # a vertical gradient
        background = (0, max(40, shade - 40), min(255, shade + 70))
        spans = [(40, 88, (255, 210, 80)) if 40 <= y < 84 else (0, 0, (0, 0, 0))]  # a desktop icon
        if win_y0 <= y < win_y1:
            if y < win_y0 + 32:
                spans.append((win_x0, win_x1, (243, 243, 243)))  # title bar
                if win_y0 + 10 <= y < win_y0 + 22:
                    spans.append((win_x0 + 12, win_x0 + 24, (255, 185, 0)))
            else:
                spans.append((win_x0, win_x1, (255, 255, 255)))
                spans.append((win_x0, win_x0 + 200, (249, 249, 249)))  # navigation pane
                if (y - win_y0) % 28 < 14 and y < win_y1 - 40:
                    spans.append((win_x0 + 230, win_x0 + 520, (220, 220, 225)))  # file rows
            spans.append((win_x0, win_x0 + 1, (200, 200, 200)))
            spans.append((win_x1 - 1, win_x1, (200, 200, 200)))
        rows.append(_row(background, spans))
    return rows


class Screen:
    """The two pictures the emulated screen can show, built once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict = {}

    def _get(self, key: str):
        with self._lock:
            if key not in self._cache:
                black = key.startswith("black")
                rows = [bytes(3 * SCREEN_W)] * SCREEN_H if black else desktop_rows()
                self._cache["black_png" if black else "desktop_png"] = png_bytes(SCREEN_W, SCREEN_H, rows)
                self._cache["black_ppm" if black else "desktop_ppm"] = (
                    f"P6\n{SCREEN_W} {SCREEN_H}\n255\n".encode() + b"".join(rows))
            return self._cache[key]

    def current(self, fmt: str = "png") -> bytes:
        return self._get(("black_" if MACHINE.screen_black() else "desktop_") + fmt)


SCREEN = Screen()

# -------------------------------------------------------------------------------- accessibility
NAMESPACES = (
    ("st", "uri:deskat:state.at-spi.gnome.org"), ("attr", "uri:deskat:attributes.at-spi.gnome.org"),
    ("cp", "uri:deskat:component.at-spi.gnome.org"), ("doc", "uri:deskat:document.at-spi.gnome.org"),
    ("docattr", "uri:deskat:attributes.document.at-spi.gnome.org"), ("txt", "uri:deskat:text.at-spi.gnome.org"),
    ("val", "uri:deskat:value.at-spi.gnome.org"), ("act", "uri:deskat:action.at-spi.gnome.org"),
    ("win", "uri:deskat:uia.windows.microsoft.org"),
)


def _node(tag: str, name: str, x: int, y: int, w: int, h: int, backend: str, children: str = "",
          active: bool = False) -> str:
    wrapper = "pywinauto.controls.uiawrapper.UIAWrapper" if backend == "uia" else \
        "pywinauto.controls.hwndwrapper.HwndWrapper"
    attrs = (f'name="{name}" st:enabled="true" st:visible="true" st:active="{str(active).lower()}" '
             f'cp:screencoord="({x}, {y})" cp:size="({w}, {h})" win:class="&lt;class \'{wrapper}\'&gt;"')
    return f"<{tag} {attrs}>{children}</{tag}>" if children else f"<{tag} {attrs}/>"


def accessibility_tree(backend: str) -> str:
    """Like the WAA server's pywinauto tree: <desktop> with one child per top-level window."""
    declarations = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NAMESPACES)
    taskbar = _node("shell_traywnd", "Taskbar", 0, SCREEN_H - 48, SCREEN_W, 48, backend, children=(
        _node("start", "Start", 628, SCREEN_H - 48, 48, 48, backend)
        + _node("traynotifywnd", "", 1240, SCREEN_H - 48, 200, 48, backend)))
    explorer = _node("cabinetwclass", "File Explorer", 320, 140, 800, 500, backend, active=True, children=(
        _node("shelltabwindowclass", "Home", 320, 172, 800, 468, backend)))
    desktop_icons = _node("progman", "Program Manager", 0, 0, SCREEN_W, SCREEN_H, backend, children=(
        _node("shelldll_defview", "", 0, 0, SCREEN_W, SCREEN_H, backend, children=(
            _node("syslistview32", "FolderView", 0, 0, SCREEN_W, SCREEN_H, backend)))))
    return f"<desktop {declarations}>{taskbar}{explorer}{desktop_icons}</desktop>"


# -------------------------------------------------------------------------- 8006: status / noVNC
STATUS_PAGE = """<!DOCTYPE html>
<html>
    <head>
        <title>Windows</title>
        <meta http-equiv="Cache-Control" content="no-cache" />
        <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    </head>
    <body>
        <div id="page">
            <div id="content"><h1 id="info">{body}</h1></div>
            <footer id="footer">Windows for Docker v{version}<br />
                <a href="https://github.com/dockur/windows">https://github.com/dockur/windows</a></footer>
        </div>
        <script type="text/javascript">/* polls /msg.html; reloads into noVNC when it answers 404 */</script>
    </body>
</html>
"""
NOVNC_PAGE = """<!DOCTYPE html>
<html lang="en" class="noVNC_loading">
<head>
    <title>noVNC</title>
    <meta charset="utf-8">
</head>
<body>
    <div id="noVNC_container"><!-- the WAA emulator serves no VNC stream --></div>
</body>
</html>
"""
NGINX_404 = """<html>
<head><title>404 Not Found</title></head>
<body>
<center><h1>404 Not Found</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""


def html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def msg_html(step: str) -> str:
    """dockur's html(): a step ending in "..." is shown as a loading paragraph."""
    body = html_escape(step)
    if body.endswith("..."):
        body = f'<p class="loading">{body[:-3]}</p>'
    return body


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        pass


class WebHandler(BaseHTTPRequestHandler):
    server_version = "nginx"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # the real nginx logs to /dev/null
        pass

    def _send(self, status: int, body: str, content_type: str = "text/html", extra: dict | None = None,
              head: bool = False) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _route(self, head: bool = False) -> None:
        url = urlparse(self.path)
        if MACHINE.status_page:
            if url.path == "/msg.html":
                self._send(200, msg_html(MACHINE.step) + "\n", head=head)
            else:  # every other path: the status page titled like the app
                self._send(200, STATUS_PAGE.format(body=msg_html(MACHINE.step), version=DOCKUR_VERSION), head=head)
            return
        redirect = os.environ.get("WAA_EMU_NOVNC_REDIRECT", "0").lower() in ("1", "y", "yes", "true")
        if url.path == "/" and not url.query and redirect:  # nginx.conf of dockur/qemus since 2024-01
            self._send(301, "<html><head><title>301 Moved Permanently</title></head></html>\n",
                       extra={"Location": "/?resize=scale&autoconnect=true"}, head=head)
        elif url.path in ("/", "/vnc.html", "/vnc_lite.html"):
            self._send(200, NOVNC_PAGE, head=head)
        else:  # /msg.html included: dockur deleted it when QEMU started
            self._send(404, NGINX_404, head=head)

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route(head=True)


# --------------------------------------------------------------------- 5000: the guest (Flask)
WERKZEUG_404 = ("404 Not Found: The requested URL was not found on the server. If you entered the URL manually "
                "please check your spelling and try again.")
WERKZEUG_405 = "405 Method Not Allowed: The method is not allowed for the requested URL."
WERKZEUG_400 = "400 Bad Request: The browser (or proxy) sent a request that this server could not understand."
WERKZEUG_415 = ("415 Unsupported Media Type: Did not attempt to load JSON data because the request Content-Type "
                "was not 'application/json'.")


class GuestError(Exception):
    """Raised inside a route: the server's errorhandler(Exception) answers 500 with its message."""


def flask_json(payload) -> bytes:
    """Flask's jsonify: sorted keys, compact separators, a trailing newline."""
    return (json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n").encode()


def wait_while_hung(sock: socket.socket) -> bool:
    """server_hang: hold the connection without answering. False when the client went away."""
    while has_fault("server_hang"):
        try:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable and sock.recv(1, socket.MSG_PEEK) == b"":
                return False
        except OSError:
            return False
    return True


def emulate_command(command, shell: bool) -> dict:
    """What /execute answers. Nothing is run: echo/Write-Output print, `exit N` returns N."""
    if isinstance(command, str):
        if shell:
            try:
                tokens = shlex.split(command, posix=False)
            except ValueError:
                tokens = command.split()
        else:
            tokens = shlex.split(command)  # as the real server: a bad quote is an error (500)
    elif isinstance(command, list):
        tokens = [str(part) for part in command]
    else:
        raise GuestError(f"expected str, bytes or os.PathLike object, not {type(command).__name__}")
    if not shell and not tokens:
        raise GuestError("[WinError 87] The parameter is incorrect")
    output, returncode = "", 0
    lowered = [os.path.basename(t.strip("\"'")).lower() for t in tokens]
    for index, word in enumerate(lowered):
        if word in ("echo", "echo.", "write-output", "write-host"):
            output = " ".join(t.strip("\"'") for t in tokens[index + 1:]) + "\r\n"
            break
        if word == "exit" and index + 1 < len(tokens) and tokens[index + 1].lstrip("-").isdigit():
            returncode = int(tokens[index + 1])
            break
    return {"status": "success", "output": output, "error": "", "returncode": returncode}


class GuestHandler(BaseHTTPRequestHandler):
    server_version = "Werkzeug/3.0.3"
    sys_version = "Python/3.9.13"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload) -> None:
        self._send(status, flask_json(payload), "application/json")

    def _dispatch(self) -> None:
        if has_fault("server_down"):  # the server died: the connection closes without an answer
            self.close_connection = True
            return
        if has_fault("server_hang") and not wait_while_hung(self.connection):
            self.close_connection = True
            return
        try:
            routes = {"GET": self._get, "HEAD": self._get, "POST": self._post}
            handler = routes.get(self.command)
            if handler is None:
                raise GuestError(WERKZEUG_405)
            handler(urlparse(self.path))
        except Exception as err:  # the real server: @app.errorhandler(Exception) -> 500 with this shape
            self._json(500, {"status": "error", "message": str(err)})

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = _dispatch

    def _get(self, url) -> None:
        if url.path == "/probe":
            self._json(200, {"status": "Probe successful", "message": "Service is operational"})
        elif url.path == "/platform":
            self._send(200, b"Windows", "text/html; charset=utf-8")
        elif url.path == "/screenshot":
            self._send(200, SCREEN.current("png"), "image/png")
        elif url.path == "/accessibility":
            backend = parse_qs(url.query).get("backend", ["win32"])[0]
            if backend not in ("win32", "uia"):
                self._send(400, b"Invalid backend specified", "text/html; charset=utf-8")
                return
            delay = seconds("WAA_EMU_A11Y_S", 0.0)
            if delay:
                time.sleep(delay)
            tree = "" if has_fault("empty_tree") else accessibility_tree(backend)
            self._json(200, {"AT": tree})
        elif url.path in ("/execute", "/setup/execute", "/shutdown"):
            raise GuestError(WERKZEUG_405)
        else:
            raise GuestError(WERKZEUG_404)

    def _body_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if "json" not in (self.headers.get("Content-Type") or "").lower():
            raise GuestError(WERKZEUG_415)
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise GuestError(WERKZEUG_400)

    def _post(self, url) -> None:
        if url.path in ("/execute", "/setup/execute"):
            data = self._body_json()
            if not isinstance(data, dict):
                raise GuestError(f"'{type(data).__name__}' object has no attribute 'get'")
            shell = bool(data.get("shell", False))
            self._json(200, emulate_command(data.get("command", "" if shell else []), shell))
        elif url.path == "/shutdown":
            MACHINE.schedule_power_off(2.0)  # `shutdown /s /t 2`
            self._json(200, {"status": "Shutdown started successfully", "message": "Shutdown started successfully"})
        elif url.path in ("/probe", "/platform", "/screenshot", "/accessibility"):
            raise GuestError(WERKZEUG_405)
        else:
            raise GuestError(WERKZEUG_404)


class GuestServer:
    """The guest's WAA server socket: listening only while the guest server is up."""

    def __init__(self) -> None:
        self.server: QuietHTTPServer | None = None
        self.failed = False

    def reconcile(self) -> None:
        want = MACHINE.server_should_listen()
        if want and self.server is None and not self.failed:
            try:
                self.server = QuietHTTPServer((GUEST_ADDR, GUEST_PORT), GuestHandler)
            except OSError as err:
                self.failed = True
                emu(f"cannot listen on the guest address {GUEST_ADDR}:{GUEST_PORT}: {err} (WAA_EMU_GUEST_ADDR)")
                return
            threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": TICK_S},
                             daemon=True).start()
        elif not want and self.server is not None:
            server, self.server = self.server, None
            server.shutdown()
            server.server_close()


# ------------------------------------------------------------------- 5000: the port forward (NAT)
class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        pass


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    try:
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class ForwardHandler(socketserver.BaseRequestHandler):
    """Port 5000 of the container -> the guest, like the real image's DNAT rule."""

    def handle(self) -> None:
        client = self.request
        try:
            upstream = socket.create_connection((GUEST_ADDR, GUEST_PORT), timeout=3)
        except OSError:  # nothing listens in the guest: reset the client's connection
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        upstream.close()


def container_addresses() -> list:
    """The container's own non-loopback IPv4 addresses: where Docker's published ports arrive."""
    addresses: list = []
    try:
        with open("/proc/net/fib_trie") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return addresses
    for previous, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line:
            address = previous.strip().lstrip("|-+ ").strip()
            if not address.startswith("127.") and address not in addresses:
                addresses.append(address)
    return addresses


def start_forward() -> None:
    addresses = container_addresses()
    if not addresses:
        emu("no container address found: the port forward to the guest is missing")
    for address in addresses:
        try:
            serve(TCPServer((address, GUEST_PORT), ForwardHandler))
        except OSError as err:
            emu(f"cannot forward {address}:{GUEST_PORT} to the guest: {err}")


# ----------------------------------------------------------------------------------- 7200: QMP
class QMPSessions:
    """Negotiated QMP sessions, to broadcast events to."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: set = set()

    def broadcast(self, event: str, data: dict | None = None) -> None:
        now = time.time()
        payload = {"timestamp": {"seconds": int(now), "microseconds": int((now % 1) * 1e6)}, "event": event}
        if data is not None:
            payload["data"] = data
        with self.lock:
            sessions = list(self.sessions)
        for session in sessions:
            session.send(payload)


QMP_SESSIONS = QMPSessions()


def qmp_error(cls: str, desc: str) -> dict:
    return {"error": {"class": cls, "desc": desc}}


class QMPHandler(socketserver.BaseRequestHandler):
    GREETING = {"QMP": {"version": {"qemu": {"micro": 2, "minor": 2, "major": 8}, "package": "Debian 1:8.2.2+ds-2"},
                        "capabilities": ["oob"]}}

    def setup(self) -> None:
        self.send_lock = threading.Lock()

    def send(self, payload) -> None:
        with self.send_lock:
            try:
                self.request.sendall((json.dumps(payload) + "\r\n").encode())
            except OSError:
                pass

    def handle(self) -> None:
        self.send(self.GREETING)
        negotiated = False
        decoder = json.JSONDecoder()
        buffer = ""
        self.request.settimeout(0.5)
        try:
            while MACHINE.qemu_running:
                try:
                    chunk = self.request.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                buffer += chunk.decode(errors="replace")
                while buffer.strip():
                    text = buffer.lstrip()
                    try:
                        command, end = decoder.raw_decode(text)
                    except ValueError:
                        if "\n" not in text:
                            break  # wait for the rest of the object
                        bad, buffer = text.split("\n", 1)
                        self.send(qmp_error("GenericError", f"JSON parse error, invalid input: {bad.strip()[:40]}"))
                        continue
                    buffer = text[end:]
                    negotiated = self.answer(command, negotiated)
        except OSError:
            return
        finally:
            with QMP_SESSIONS.lock:
                QMP_SESSIONS.sessions.discard(self)

    def reply(self, command: dict, payload: dict) -> None:
        if "id" in command:
            payload = {**payload, "id": command["id"]}
        self.send(payload)

    def answer(self, command, negotiated: bool) -> bool:
        if not isinstance(command, dict):
            self.send(qmp_error("GenericError", "QMP input must be a JSON object"))
            return negotiated
        name = command.get("execute", command.get("exec-oob"))
        if name is None:
            self.reply(command, qmp_error("GenericError", "QMP input lacks member 'execute'"))
            return negotiated
        arguments = command.get("arguments") or {}
        if name == "qmp_capabilities":
            if negotiated:
                self.reply(command, qmp_error("CommandNotFound",
                                              "Capabilities negotiation is already complete, command ignored"))
                return True
            self.reply(command, {"return": {}})
            with QMP_SESSIONS.lock:
                QMP_SESSIONS.sessions.add(self)
            return True
        if not negotiated:
            self.reply(command, qmp_error("CommandNotFound",
                                          "Expecting capabilities negotiation with 'qmp_capabilities'"))
            return False
        if name == "query-status":
            status = "paused" if MACHINE.paused else "running"
            self.reply(command, {"return": {"status": status, "singlestep": False, "running": not MACHINE.paused}})
        elif name == "query-version":
            self.reply(command, {"return": self.GREETING["QMP"]["version"]})
        elif name == "screendump":
            self.reply(command, screendump(arguments))
        elif name in ("stop", "cont"):
            MACHINE.paused = name == "stop"
            self.reply(command, {"return": {}})
            QMP_SESSIONS.broadcast("STOP" if name == "stop" else "RESUME")
        elif name == "system_powerdown":
            self.reply(command, {"return": {}})
            QMP_SESSIONS.broadcast("POWERDOWN")
            MACHINE.schedule_power_off(1.0)
        elif name == "quit":
            self.reply(command, {"return": {}})
            MACHINE.schedule_power_off(0.0)
        else:
            self.reply(command, qmp_error("CommandNotFound", f"The command {name} has not been found"))
        return True


def screendump(arguments: dict) -> dict:
    filename = arguments.get("filename")
    if not isinstance(filename, str) or not filename:
        return qmp_error("GenericError", "Parameter 'filename' is missing")
    fmt = arguments.get("format", "ppm")
    if fmt not in ("ppm", "png"):
        return qmp_error("GenericError", f"Parameter 'format' does not accept value '{fmt}'")
    try:
        with open(filename, "wb") as handle:
            handle.write(SCREEN.current(fmt))
    except OSError as err:
        return qmp_error("GenericError", f"failed to open file '{filename}': {err.strerror}")
    return {"return": {}}


# ------------------------------------------------------------------------------ 7100: monitor
class MonitorHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock = self.request
        sock.settimeout(0.5)
        try:
            sock.sendall(f"QEMU {QEMU_VERSION} monitor - type 'help' for more information\r\n(qemu) ".encode())
            buffer = b""
            while MACHINE.qemu_running:
                try:
                    chunk = sock.recv(4096)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    reply = self.answer(raw.decode(errors="replace").strip())
                    if reply is None:
                        return
                    sock.sendall(reply.encode() + b"(qemu) ")
        except OSError:
            return

    @staticmethod
    def answer(line: str):
        words = line.split()
        if not words:
            return ""
        if line == "info status":
            return f"VM status: {'paused' if MACHINE.paused else 'running'}\r\n"
        if line == "info version":
            return f"{QEMU_VERSION}\r\n"
        if words[0] in ("stop", "cont", "c"):
            MACHINE.paused = words[0] == "stop"
            QMP_SESSIONS.broadcast("STOP" if MACHINE.paused else "RESUME")
            return ""
        if words[0] == "system_powerdown":
            QMP_SESSIONS.broadcast("POWERDOWN")
            MACHINE.schedule_power_off(1.0)
            return ""
        if words[0] in ("quit", "q"):
            MACHINE.schedule_power_off(0.0)
            return None
        if words[0] == "help":
            return ("cont|c  -- resume emulation\r\ninfo status  -- show the current VM status\r\n"
                    "info version  -- show the version of QEMU\r\nquit|q  -- quit the emulator\r\n"
                    "stop  -- stop emulation\r\nsystem_powerdown  -- send system power down event\r\n")
        return f"unknown command: '{words[0]}'\r\n"


class HoldHandler(socketserver.BaseRequestHandler):
    """3389: accepts like the RDP forward and waits for the client to go away."""

    def handle(self) -> None:
        self.request.settimeout(600)
        try:
            while self.request.recv(4096):
                pass
        except OSError:
            pass


def serve(server: socketserver.BaseServer) -> socketserver.BaseServer:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return server


# --------------------------------------------------------------------------------- preconditions
def kvm_error() -> str | None:
    """dockur's proc.sh: device missing, not writable (it tries `echo -n > /dev/kvm`), no vmx/svm
    in /proc/cpuinfo (that last check only with WAA_EMU_KVM_CPU_FLAGS=1)."""
    if os.environ.get("KVM", "Y")[:1] in ("N", "n"):
        return None
    if not os.path.exists("/dev/kvm"):
        return "(device file missing)"
    try:
        os.close(os.open("/dev/kvm", os.O_WRONLY))
    except OSError:
        return "(no write access)"
    if os.environ.get("WAA_EMU_KVM_CPU_FLAGS", "0").lower() not in ("1", "y", "yes", "true"):
        return None  # off by default: machines that pass /dev/kvm through may hide vmx/svm in cpuinfo
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "vmx" not in flags and "svm" not in flags:
        return "(vmx/svm disabled)"
    return None


def has_net_admin() -> bool:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return False


GIB = 1 << 30


def iec_bytes(text: str, default_unit: str = "") -> int:
    """numfmt --from=iec: 8G, 512M, 1.5T, plain bytes (or default_unit when given)."""
    value = text.strip().upper().replace("B", "")
    if value and value[-1].isdigit() and default_unit:
        value += default_unit
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
    if value and value[-1] in units:
        return int(float(value[:-1]) * units[value[-1]])
    return int(float(value))


def mem_available() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def ram_error() -> str | None:
    """dockur's reset.sh memory check, same arithmetic and wording."""
    if os.environ.get("RAM_CHECK", "Y")[:1] in ("N", "n"):
        return None
    raw = os.environ.get("RAM_SIZE", "4G")
    try:
        wanted = iec_bytes(raw)
    except ValueError:
        return f"Invalid RAM_SIZE value: {raw}"
    available = mem_available()
    if wanted + 500_000_000 > available:
        wanted_gb = (wanted + GIB - 1) // GIB
        return (f"Your configured RAM_SIZE of {wanted_gb} GB is too high for the {available // GIB} GB of memory "
                "available, please set a lower value.")
    return None


# ------------------------------------------------------------------------- dockur (start_vm.sh)
def set_step(step: str) -> None:
    MACHINE.step = step


def start_vm(timings: dict) -> None:
    """The dockur/windows boot: status page, checks, disk, first-boot install, QEMU."""
    info(f"Starting Windows for Docker v{DOCKUR_VERSION}...")
    info("For support visit https://github.com/dockur/windows")
    set_step("Starting Windows for Docker...")
    problem = ram_error()
    if problem:
        error(problem)
        return  # start_vm.sh exits 17; nothing else happens, the container keeps running
    time.sleep(timings["boot"] / 2)

    disk = os.path.join(STORAGE, "data.img")
    marker = os.path.join(STORAGE, "windows.boot")
    disk_size = os.environ.get("DISK_SIZE", "64G")
    try:
        size = iec_bytes(disk_size, default_unit="G")
    except ValueError:
        error(f"Invalid value for DISK_SIZE: {disk_size}")
        return
    if not os.path.exists(disk):
        set_step("Creating a disk image...")
        info(f"Creating a {disk_size} growable disk image in raw format...")
        try:
            os.makedirs(STORAGE, exist_ok=True)
            with open(disk, "xb") as handle:  # sparse: only the size is set, no byte is written
                handle.truncate(size)
        except OSError as err:
            error(f"Could not create a growable raw disk image of {disk_size} ({disk}): {err.strerror}")
            return

    set_step("Initializing network...")
    MACHINE.networking = has_net_admin()
    if not MACHINE.networking:
        error("Failed to create bridge. Please add the following setting to your container: --cap-add NET_ADMIN")
        warn("falling back to usermode networking (slow)!")
    set_step("Initialized network successfully...")
    time.sleep(timings["boot"] / 2)

    problem = kvm_error()
    if problem:
        error(f"KVM acceleration not available {problem}, this will cause a major loss of performance.")
        error("See the FAQ on how to enable it, or continue without KVM by setting KVM=N (not recommended).")
        return  # start_vm.sh exits 88

    if not os.path.exists(marker):
        set_step("Installing Windows...")
        emu(f"first boot: no {marker}, installing Windows (WAA_EMU_INSTALL_S={timings['install']:g}s)...")
        time.sleep(timings["install"])
        with open(marker, "w") as handle:
            handle.write("")
        emu(f"Windows installed: created {marker}")

    MACHINE.status_page = False  # config.sh removes msg.html and index.html: nginx serves noVNC
    info(f"Booting Windows using QEMU v{QEMU_VERSION}...")
    MACHINE.qemu_servers = [serve(TCPServer(("0.0.0.0", PORTS["qmp"]), QMPHandler)),
                            serve(TCPServer(("0.0.0.0", PORTS["monitor"]), MonitorHandler))]
    now = time.monotonic()
    MACHINE.server_at = now + timings["server"]
    MACHINE.qemu_at = now
    if MACHINE.networking:
        start_forward()
    time.sleep(timings["server"] / 2)
    if MACHINE.qemu_running:
        info("Windows started succesfully, visit http://localhost:8006/ to view the screen...")


# ------------------------------------------------------------- WAA entry.sh / entry_setup.sh
def guest_probe_ok() -> bool:
    """entry_setup.sh's `curl <guest>:5000/probe` (no timeout: a hung server blocks it, as curl)."""
    conn = http.client.HTTPConnection(GUEST_ADDR, GUEST_PORT, timeout=None)
    try:
        conn.request("GET", "/probe")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def guest_post(path: str) -> int:
    conn = http.client.HTTPConnection(GUEST_ADDR, GUEST_PORT, timeout=30)
    try:
        conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def entry_setup(flags: dict, timings: dict) -> None:
    """WAA's entry_setup.sh and the rest of entry.sh, in a thread next to start_vm."""
    log("Starting WinArena VM...")
    threading.Thread(target=start_vm, args=(timings,), daemon=True).start()
    next_log = 0.0
    while not guest_probe_ok():
        now = time.monotonic()
        if now >= next_log:
            log("Waiting for a response from the windows server. This might take a while...")
            next_log = now + timings["wait_log"]
        time.sleep(TICK_S)
    log("VM is up and running, and the Windows Arena Server is ready to use!")
    log("VM started, server ready")
    if flags["prepare-image"] == "true":
        log("Preparing Arena image by gracefully shutting down the Windows VM...")
        if guest_post("/shutdown") == 200:
            log("Windows VM is shutting down...")
            time.sleep(timings["prepare"])  # the real entry.sh sleeps 180 s
        else:
            log("Failed to shut down the Windows VM. Exiting...")
        # The real entry.sh then runs `wait -n` without children and exits with its 127.
        emu("entry.sh ends: `wait -n` has no child to wait for (exit 127)")
        os._exit(127)
    log("Skipping image preparation...")
    if flags["start-client"] == "true":
        log("Starting client...")
        emu(f"the emulator has no WAA client (agent {flags['agent']}, model {flags['model']}): "
            "keeping the container alive instead")
    else:
        log("Keeping container alive")


# ------------------------------------------------------------------------------------ lifecycle
def parse_flags(argv: list) -> dict:
    flags = dict(ENTRY_DEFAULTS)
    known = ", ".join("--" + f for f in ENTRY_FLAGS)
    index = 0
    while index < len(argv):
        arg = argv[index]
        name = arg[2:] if arg.startswith("--") else None
        if name not in ENTRY_FLAGS:
            log(f"Unknown option: {arg} (known: {known})")
            sys.exit(2)
        if index + 1 >= len(argv):
            log(f"Option {arg} needs a value (known: {known})")
            sys.exit(2)
        flags[name] = argv[index + 1]
        index += 2
    return flags


def init_faults() -> frozenset:
    initial = [f.strip() for f in os.environ.get("WAA_EMU_FAULT", "").split(",") if f.strip()]
    unknown = [f for f in initial if f not in FAULTS]
    if unknown:
        emu(f"unknown WAA_EMU_FAULT {', '.join(unknown)} (known: {', '.join(FAULTS)})")
        sys.exit(2)
    os.makedirs(os.path.dirname(FAULT_FILE), exist_ok=True)
    with open(FAULT_FILE, "w") as handle:  # a restart starts from WAA_EMU_FAULT again
        handle.write("".join(f + "\n" for f in initial))
    return frozenset(initial)


def on_sigterm(signum, frame) -> None:
    emu(f"received {signal.Signals(signum).name}: exiting at once "
        "(the real container ignores SIGTERM; WAA_EMU_IGNORE_SIGTERM=1 does too)")
    os._exit(0)


def power_off() -> None:
    MACHINE.off = True
    MACHINE.paused = False
    QMP_SESSIONS.broadcast("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
    for server in MACHINE.qemu_servers:  # QEMU exited: its sockets are gone
        server.shutdown()
        server.server_close()
    info("Shutdown completed!")


def main(argv: list) -> None:
    log("Starting WinArena...")
    flags = parse_flags(argv)
    faults = init_faults()
    timings = {
        "boot": seconds("WAA_EMU_BOOT_S", 2.0), "install": seconds("WAA_EMU_INSTALL_S", 3.0),
        "server": seconds("WAA_EMU_SERVER_S", 2.0), "black": seconds("WAA_EMU_BLACK_S", 1.0),
        "wait_log": max(0.1, seconds("WAA_EMU_WAIT_LOG_S", 1.0)), "prepare": seconds("WAA_EMU_PREPARE_S", 3.0),
    }
    global MACHINE
    MACHINE = Machine(timings)
    if os.environ.get("WAA_EMU_IGNORE_SIGTERM", "0").lower() in ("1", "y", "yes", "true"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the real PID 1 (bash) ignores it
    else:
        signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    emu(f"WAA emulator v{EMULATOR_VERSION}: flags " + " ".join(f"--{k} {flags[k]}" for k in ENTRY_FLAGS)
        + "; timings " + " ".join(f"{k}={v:g}s" for k, v in timings.items())
        + f"; faults {','.join(sorted(faults)) or 'none'}")

    serve(QuietHTTPServer(("0.0.0.0", PORTS["web"]), WebHandler))
    serve(TCPServer(("0.0.0.0", PORTS["rdp"]), HoldHandler))
    log("Starting VM...")
    threading.Thread(target=entry_setup, args=(flags, timings), daemon=True).start()

    guest = GuestServer()
    while True:
        current = read_faults()
        if current != faults:
            emu(f"faults now: {','.join(sorted(current)) or 'none'}")
            faults = current
        if "crash" in current and MACHINE.qemu_running:
            error("QEMU crashed: qemu-system-x86_64 was killed by signal 11 (emulated fault 'crash'), exiting.")
            os._exit(1)
        if MACHINE.off_at is not None and not MACHINE.off and time.monotonic() >= MACHINE.off_at:
            power_off()
        guest.reconcile()
        time.sleep(TICK_S)


if __name__ == "__main__":
    main(sys.argv[1:])
