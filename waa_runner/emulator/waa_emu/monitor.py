"""Port 7100: QEMU's text monitor; port 3389: the RDP forward (it accepts and holds)."""
from __future__ import annotations

import socket
import socketserver

from .config import QEMU_VERSION
from .httpbase import state_of
from .state import State

COMMANDS = ("info status", "info version", "stop", "cont", "c", "system_powerdown", "system_reset", "quit", "q",
            "help")  # docs/emulator.md lists each (tests/unit/test_emulator_docs.py)
HELP = ("cont|c  -- resume emulation\r\ninfo status  -- show the current VM status\r\n"
        "info version  -- show the version of QEMU\r\nquit|q  -- quit the emulator\r\n"
        "stop  -- stop emulation\r\nsystem_powerdown  -- send system power down event\r\n"
        "system_reset  -- reset the system\r\n")


def answer(state: State, line: str) -> str | None:
    """The monitor's reply to one line; None: QEMU quits (the connection closes)."""
    words = line.split()
    if not words:
        return ""
    if line == "info status":
        return f"VM status: {'paused' if state.machine.paused else 'running'}\r\n"
    if line == "info version":
        return f"{QEMU_VERSION}\r\n"
    if words[0] in ("stop", "cont", "c"):
        state.pause(words[0] == "stop")
        return ""
    if words[0] == "system_reset":
        state.reset("host-qmp-system-reset")
        return ""
    if words[0] == "system_powerdown":
        state.powerdown()
        return ""
    if words[0] in ("quit", "q"):
        state.machine.schedule_power_off(0.0)
        return None
    if words[0] == "help":
        return HELP
    return f"unknown command: '{words[0]}'\r\n"


class MonitorHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        state = state_of(self)
        sock = self.request
        sock.settimeout(0.5)
        try:
            sock.sendall(f"QEMU {QEMU_VERSION} monitor - type 'help' for more information\r\n(qemu) ".encode())
            buffer = b""
            while state.machine.qemu_running:
                try:
                    chunk = sock.recv(4096)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                buffer = (buffer + chunk)[-65536:]
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    reply = answer(state, raw.decode(errors="replace").strip())
                    if reply is None:
                        return
                    sock.sendall(reply.encode() + b"(qemu) ")
        except OSError:
            return


class HoldHandler(socketserver.BaseRequestHandler):
    """3389: accepts like the RDP forward and waits for the client to go away."""

    def handle(self) -> None:
        self.request.settimeout(600)
        try:
            while self.request.recv(4096):
                pass
        except OSError:
            pass
