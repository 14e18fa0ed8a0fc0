#!/usr/bin/env python3
"""The WAA emulator: behaves like the windowsarena/winarena container, port for port and log line
for log line, without Windows, so roles, probes and fleets can be tested for real in seconds.

What it reproduces (see docs/emulator.md for the differences from the real image):
- entry.sh flags, the boot log lines, the 8006 status page (/msg.html 200) that turns into noVNC
  (/msg.html 404) when "QEMU" starts, QMP on 7200, the monitor on 7100, RDP on 3389;
- the WAA server API on port 5000, served by a "guest" on a loopback address inside the
  container and reachable from outside only through a port forward that exists when the
  container has NET_ADMIN (as the real image's NAT does);
- the real preconditions (KVM device, NET_ADMIN, free memory) with the real messages: a host
  that fails one never becomes ready, and the container keeps running, as the real one does;
- /storage: the first boot "installs Windows" (sparse data.img, then windows.boot), later boots
  reuse it;
- faults, at start (WAA_EMU_FAULT) or at run time (`waa-emu-fault NAME`).
Standard library only.
"""
from __future__ import annotations

import json
import os
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

ENTRY_FLAGS = (
    "prepare-image", "start-client", "agent", "model", "som-origin", "a11y-backend", "clean-results",
    "worker-id", "num-workers", "result-dir", "json-name",
)
FAULTS = ("server_down", "server_hang", "empty_tree", "black_screen", "crash")
FAULT_FILE = os.environ.get("WAA_EMU_FAULT_FILE", "/run/waa-emu/faults")
STORAGE = os.environ.get("WAA_EMU_STORAGE", "/storage")
GUEST_ADDR = os.environ.get("WAA_EMU_GUEST_ADDR", "127.0.0.2")
SCREEN_W, SCREEN_H = 1440, 900
CAP_NET_ADMIN = 12

LOG_LOCK = threading.Lock()


def log(line: str) -> None:
    with LOG_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def seconds(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        log(f"WARNING: {name}={os.environ.get(name)!r} is not a number of seconds; using {default}")
        return default


# ---------------------------------------------------------------------------------------- state
class State:
    """What the emulated machine is doing; read by every server on every request."""

    def __init__(self) -> None:
        self.step = "Starting WinArena..."
        self.qemu_up = False
        self.server_up = False
        self.desktop_ready = False
        self.lock = threading.Lock()

    def faults(self) -> set[str]:
        try:
            with open(FAULT_FILE) as handle:
                return {line.strip() for line in handle if line.strip()}
        except OSError:
            return set()

    def has(self, fault: str) -> bool:
        return fault in self.faults()


STATE = State()


# ------------------------------------------------------------------------------------- pictures
def png(width: int, height: int, row_for) -> bytes:
    raw = b"".join(b"\x00" + row_for(y) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _desktop_row(y: int) -> bytes:
    if y >= SCREEN_H - 48:  # the taskbar
        return bytes((32, 32, 40)) * SCREEN_W
    return bytes((0, 90, 158)) * SCREEN_W  # a Windows-blue wallpaper


BLACK_PNG = png(SCREEN_W, SCREEN_H, lambda y: bytes(3 * SCREEN_W))
DESKTOP_PNG = png(SCREEN_W, SCREEN_H, _desktop_row)


def screen_png() -> bytes:
    if STATE.desktop_ready and not STATE.has("black_screen"):
        return DESKTOP_PNG
    return BLACK_PNG


ACCESSIBILITY_TREE = (
    '<desktop name="Desktop 1" class_name="#32769">'
    '<shell_traywnd name="Taskbar" class_name="Shell_TrayWnd" visible="True" enabled="True"'
    ' coords="(0, 852, 1440, 900)">'
    '<button name="Start" class_name="Start" visible="True" enabled="True"/>'
    '</shell_traywnd>'
    '<progman name="Program Manager" class_name="Progman" visible="True" enabled="True"'
    ' coords="(0, 0, 1440, 900)"/>'
    '</desktop>'
)


# ------------------------------------------------------------------------------- 8006: web/noVNC
STATUS_PAGE = """<!DOCTYPE html>
<html><head><title>Windows</title><meta http-equiv="refresh" content="5"></head>
<body><h1>Windows</h1><p id="info">{step}</p></body></html>
"""
NOVNC_PAGE = """<!DOCTYPE html>
<html><head><title>noVNC</title></head>
<body><div id="noVNC_container">noVNC - Windows desktop (emulated)</div></body></html>
"""


class WebHandler(BaseHTTPRequestHandler):
    server_version = "nginx"
    sys_version = ""

    def log_message(self, *args) -> None:  # keep the container log to the real lines
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if not STATE.qemu_up:
            if path == "/msg.html":
                self._send(200, STATE.step.encode(), "text/html")
            else:
                self._send(200, STATUS_PAGE.format(step=STATE.step).encode(), "text/html")
            return
        if path in ("/", "/index.html", "/vnc.html"):
            self._send(200, NOVNC_PAGE.encode(), "text/html")
        else:
            self._send(404, b"<html><head><title>404 Not Found</title></head></html>", "text/html")


# -------------------------------------------------------------------------------- 5000: the guest
class GuestHandler(BaseHTTPRequestHandler):
    server_version = "Werkzeug/3.0.1"
    sys_version = "Python/3.10"

    def log_message(self, *args) -> None:
        pass

    def _json(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _guard(self, handler) -> None:
        try:
            handler()
        except Exception as err:  # the real server answers 500 with this shape for any exception
            self._json(500, {"status": "error", "message": str(err)})

    def do_GET(self) -> None:
        self._guard(self._get)

    def do_POST(self) -> None:
        self._guard(self._post)

    def _get(self) -> None:
        url = urlparse(self.path)
        if url.path == "/probe":
            self._json(200, {"status": "Probe successful", "message": "Service is operational"})
        elif url.path == "/platform":
            body = b"Windows"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif url.path == "/screenshot":
            body = screen_png()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif url.path == "/accessibility":
            backend = parse_qs(url.query).get("backend", ["win32"])[0]
            if backend not in ("win32", "uia"):
                self._json(400, {"status": "error", "message": f"Invalid backend: {backend}"})
            elif STATE.has("empty_tree"):
                self._json(200, {"AT": ""})
            else:
                self._json(200, {"AT": ACCESSIBILITY_TREE})
        else:
            self._json(404, {"status": "error", "message": f"Not found: {url.path}"})

    def _post(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        data = json.loads(self.rfile.read(length) or b"{}") if length else {}
        if url.path == "/execute":
            command = data.get("command")
            if command is None:
                self._json(500, {"status": "error", "message": "'command' is required"})
                return
            shown = command if isinstance(command, str) else " ".join(str(part) for part in command)
            # Nothing is executed: the emulator has no Windows to run it on.
            self._json(200, {"status": "success", "output": f"(emulated) {shown}\n", "error": "", "returncode": 0})
        elif url.path == "/shutdown":
            self._json(200, {"status": "Shutdown started successfully", "message": "shutdown /s /t 0 (emulated)"})
        else:
            self._json(404, {"status": "error", "message": f"Not found: {url.path}"})


class QuietThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        pass


# ---------------------------------------------------------------------- 5000: the port forward
class ForwardHandler(socketserver.BaseRequestHandler):
    """The container's port forward to the guest; the place where server faults show."""

    def handle(self) -> None:
        client = self.request
        if STATE.has("server_hang"):
            # Accepts, never answers: only the client's own timeout ends this.
            while STATE.has("server_hang"):
                time.sleep(0.2)
            return
        if STATE.has("server_down") or not STATE.server_up:
            return  # the guest is not listening: the connection is closed at once
        try:
            upstream = socket.create_connection((GUEST_ADDR, 5000), timeout=5)
        except OSError:
            return
        upstream.settimeout(None)
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)


def pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ThreadingTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        pass


# ---------------------------------------------------------------------------------- 7200: QMP
class QMPHandler(socketserver.StreamRequestHandler):
    GREETING = {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": "Debian 1:8.2"},
                        "capabilities": ["oob"]}}

    def send(self, payload) -> None:
        self.wfile.write((json.dumps(payload) + "\r\n").encode())
        self.wfile.flush()

    def handle(self) -> None:
        self.send(self.GREETING)
        negotiated = False
        decoder = json.JSONDecoder()
        buffer = ""
        while True:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            buffer += chunk.decode(errors="replace")
            while buffer.strip():
                try:
                    command, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                negotiated = self.answer(command, negotiated)

    def answer(self, command, negotiated: bool) -> bool:
        name = command.get("execute") if isinstance(command, dict) else None
        if name == "qmp_capabilities":
            self.send({"return": {}})
            return True
        if not negotiated:
            self.send({"error": {"class": "CommandNotFound",
                                 "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}})
            return False
        if name == "query-status":
            self.send({"return": {"status": "running", "singlestep": False, "running": True}})
        elif name == "screendump":
            arguments = command.get("arguments") or {}
            filename = arguments.get("filename")
            if not filename:
                self.send({"error": {"class": "GenericError", "desc": "Parameter 'filename' is missing"}})
            elif arguments.get("format", "ppm") != "png":
                self.send({"error": {"class": "GenericError", "desc": "only png is emulated"}})
            else:
                try:
                    with open(filename, "wb") as handle:
                        handle.write(screen_png())
                    self.send({"return": {}})
                except OSError as err:
                    self.send({"error": {"class": "GenericError", "desc": f"Could not open '{filename}': {err.strerror}"}})
        else:
            self.send({"error": {"class": "CommandNotFound", "desc": f"The command {name} has not been found"}})
        return True


# ------------------------------------------------------------------------------ 7100: monitor
class MonitorHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"QEMU 8.2.0 monitor - type 'help' for more information\r\n(qemu) ")
        for raw in self.rfile:
            line = raw.decode(errors="replace").strip()
            if line == "info status":
                self.wfile.write(b"VM status: running\r\n")
            elif line in ("quit", "q"):
                return
            elif line:
                self.wfile.write(f"unknown command: '{line}'\r\n".encode())
            self.wfile.write(b"(qemu) ")


class HoldHandler(socketserver.BaseRequestHandler):
    """3389: accepts the connection like the RDP forward does, and waits for the client."""

    def handle(self) -> None:
        try:
            self.request.recv(1024)
        except OSError:
            pass


def container_addresses() -> list[str]:
    """The container's own non-loopback IPv4 addresses (where Docker's port forward arrives).

    The forward binds these, not 0.0.0.0, so the guest can own port 5000 on its loopback address.
    """
    addresses: list[str] = []
    try:
        with open("/proc/net/fib_trie") as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    for previous, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line:
            address = previous.strip().lstrip("|-+ ").strip()
            if not address.startswith("127.") and address not in addresses:
                addresses.append(address)
    return addresses


def serve(server: socketserver.BaseServer) -> socketserver.BaseServer:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --------------------------------------------------------------------------------- preconditions
def kvm_error() -> str | None:
    if not os.path.exists("/dev/kvm"):
        return "(device file missing)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "(no write access)"
    return None


def has_net_admin() -> bool:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return False


def ram_error() -> str | None:
    text = os.environ.get("RAM_SIZE", "4G").strip().upper().rstrip("B")
    units = {"G": 1.0, "M": 1 / 1024, "T": 1024.0}
    try:
        wanted = float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        return f"Invalid RAM_SIZE value: {os.environ.get('RAM_SIZE')}"
    available = 0.0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) / 1024 / 1024
    if wanted + 0.5 > available:
        return (f"Your configured RAM_SIZE of {wanted:g} GB is too high for the {available:.0f} GB of memory "
                "available, please set a lower value.")
    return None


def parse_size_bytes(text: str) -> int:
    text = text.strip().upper().rstrip("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


# ------------------------------------------------------------------------------------ lifecycle
def parse_flags(argv: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        name = arg[2:] if arg.startswith("--") else None
        if name not in ENTRY_FLAGS:
            log(f"ERROR: Unknown option: {arg} (known: {', '.join('--' + f for f in ENTRY_FLAGS)})")
            sys.exit(2)
        if index + 1 >= len(argv):
            log(f"ERROR: Option {arg} needs a value")
            sys.exit(2)
        flags[name] = argv[index + 1]
        index += 2
    return flags


def wait_forever(reason: str) -> None:
    """A failed precondition: the real container neither exits nor becomes ready."""
    STATE.step = reason
    while True:
        check_crash()
        time.sleep(0.2)


def check_crash() -> None:
    if STATE.has("crash"):
        log("ERROR: QEMU crashed (emulated fault 'crash'), exiting.")
        os._exit(1)


def pause(duration: float) -> None:
    end = time.monotonic() + duration
    while time.monotonic() < end:
        check_crash()
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))


def install_windows(install_s: float) -> None:
    marker = os.path.join(STORAGE, "windows.boot")
    disk = os.path.join(STORAGE, "data.img")
    if os.path.exists(marker):
        return
    STATE.step = "Installing Windows..."
    log("Windows is not installed yet (no /storage/windows.boot): installing, this takes a while...")
    os.makedirs(STORAGE, exist_ok=True)
    if not os.path.exists(disk):
        with open(disk, "wb") as handle:  # sparse, as the real data.img
            handle.truncate(parse_size_bytes(os.environ.get("DISK_SIZE", "64G")))
    pause(install_s)
    with open(marker, "w") as handle:
        handle.write(f"installed by the WAA emulator at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    log("Windows installation completed.")


def main(argv: list[str]) -> None:
    flags = parse_flags(argv)
    os.makedirs(os.path.dirname(FAULT_FILE), exist_ok=True)
    initial = [f.strip() for f in os.environ.get("WAA_EMU_FAULT", "").split(",") if f.strip()]
    unknown = [f for f in initial if f not in FAULTS]
    if unknown:
        log(f"ERROR: unknown WAA_EMU_FAULT {', '.join(unknown)} (known: {', '.join(FAULTS)})")
        sys.exit(2)
    with open(FAULT_FILE, "w") as handle:
        handle.write("".join(f + "\n" for f in initial))

    if os.environ.get("WAA_EMU_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the real PID 1 does this
    else:
        signal.signal(signal.SIGTERM, lambda *_: (log("Received SIGTERM, shutting down (emulated)."), os._exit(0)))

    log("Starting WinArena...")
    log(f"Entry flags: {' '.join(f'--{k} {v}' for k, v in flags.items())}")
    serve(QuietThreadingHTTPServer(("0.0.0.0", 8006), WebHandler))
    serve(ThreadingTCPServer(("0.0.0.0", 3389), HoldHandler))

    log("Starting VM...")
    STATE.step = "Starting VM..."
    error = kvm_error()
    if error:
        log(f"ERROR: KVM acceleration not available {error}, this will cause a major loss of performance.")
        log("ERROR: See the FAQ on how to diagnose the cause, or continue without KVM by setting KVM=N (not recommended).")
        wait_forever("KVM acceleration not available")
    error = ram_error()
    if error:
        log(f"ERROR: {error}")
        wait_forever("RAM_SIZE too high")
    networking = has_net_admin()
    if not networking:
        log("WARNING: NET_ADMIN capability is missing: falling back to usermode networking! "
            "Performance will be bad and port mapping will not work.")

    pause(seconds("WAA_EMU_BOOT_S", 2))
    install_windows(seconds("WAA_EMU_INSTALL_S", 3))

    log("Booting Windows using QEMU")
    serve(ThreadingTCPServer(("0.0.0.0", 7200), QMPHandler))
    serve(ThreadingTCPServer(("0.0.0.0", 7100), MonitorHandler))
    STATE.qemu_up = True
    STATE.step = "Booting Windows"
    serve(QuietThreadingHTTPServer((GUEST_ADDR, 5000), GuestHandler))
    if networking:
        for address in container_addresses():
            serve(ThreadingTCPServer((address, 5000), ForwardHandler))

    server_at = time.monotonic() + seconds("WAA_EMU_SERVER_S", 2)
    wait_log_every = min(5.0, max(0.5, seconds("WAA_EMU_SERVER_S", 2) / 4))
    while time.monotonic() < server_at:
        log("Waiting for a response from the windows server. This might take a while...")
        pause(min(wait_log_every, max(0.0, server_at - time.monotonic())))
    STATE.server_up = True
    log("VM is up and running, and the Windows Arena Server is ready to use!")

    pause(seconds("WAA_EMU_BLACK_S", 1))
    STATE.desktop_ready = True
    while True:
        check_crash()
        time.sleep(0.2)


if __name__ == "__main__":
    main(sys.argv[1:])
