"""Port 7200: QEMU's QMP (JSON lines): greeting, capabilities negotiation, status, screendump, events."""
from __future__ import annotations

import json
import socket
import socketserver
import threading
from typing import Any

from .httpbase import state_of
from .state import State

def version() -> dict[str, Any]:
    return {"qemu": {"micro": 2, "minor": 2, "major": 8}, "package": "Debian 1:8.2.2+ds-2"}


def greeting() -> dict[str, Any]:
    return {"QMP": {"version": version(), "capabilities": ["oob"]}}


COMMANDS = ("qmp_capabilities", "query-status", "query-version", "screendump", "stop", "cont", "system_powerdown",
            "system_reset", "quit")  # docs/emulator.md lists each (tests/unit/test_emulator_docs.py)


def qmp_error(cls: str, desc: str) -> dict[str, Any]:
    return {"error": {"class": cls, "desc": desc}}


def screendump(state: State, arguments: dict[str, Any]) -> dict[str, Any]:
    filename = arguments.get("filename")
    if not isinstance(filename, str) or not filename:
        return qmp_error("GenericError", "Parameter 'filename' is missing")
    fmt = arguments.get("format", "ppm")
    if fmt not in ("ppm", "png"):
        return qmp_error("GenericError", f"Parameter 'format' does not accept value '{fmt}'")
    try:
        with open(filename, "wb") as handle:
            handle.write(state.screen_image(fmt))
    except OSError as err:
        return qmp_error("GenericError", f"failed to open file '{filename}': {err.strerror}")
    return {"return": {}}


def execute(state: State, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The answer to one command after negotiation (side effects included)."""
    machine = state.machine
    if name == "query-status":
        status = "paused" if machine.paused else "running"
        return {"return": {"status": status, "singlestep": False, "running": not machine.paused}}
    if name == "query-version":
        return {"return": version()}
    if name == "screendump":
        return screendump(state, arguments)
    if name in ("stop", "cont", "system_powerdown", "system_reset", "quit"):
        return {"return": {}}
    return qmp_error("CommandNotFound", f"The command {name} has not been found")


def after_reply(state: State, name: str) -> None:
    """Events and state changes that follow the reply, as QEMU orders them."""
    if name in ("stop", "cont"):
        state.pause(name == "stop")
    elif name == "system_powerdown":
        state.powerdown()
    elif name == "system_reset":
        state.reset("host-qmp-system-reset")
    elif name == "quit":
        state.machine.schedule_power_off(0.0)


class QMPHandler(socketserver.BaseRequestHandler):
    def setup(self) -> None:
        self.send_lock = threading.Lock()
        self.state = state_of(self)

    def send(self, payload: Any) -> None:
        with self.send_lock:
            try:
                self.request.sendall((json.dumps(payload) + "\r\n").encode())
            except OSError:
                pass

    def handle(self) -> None:
        self.send(greeting())
        negotiated = False
        decoder = json.JSONDecoder()
        buffer = ""
        self.request.settimeout(0.5)
        try:
            while self.state.machine.qemu_running:
                try:
                    chunk = self.request.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                buffer += chunk.decode(errors="replace")
                if len(buffer) > 1 << 20:  # QEMU caps its JSON input too
                    self.send(qmp_error("GenericError", "JSON input too large"))
                    buffer = ""
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
            self.state.qmp_sessions.discard(self)

    def reply(self, command: dict[str, Any], payload: dict[str, Any]) -> None:
        if "id" in command:
            payload = {**payload, "id": command["id"]}
        self.send(payload)

    def answer(self, command: Any, negotiated: bool) -> bool:
        if not isinstance(command, dict):
            self.send(qmp_error("GenericError", "QMP input must be a JSON object"))
            return negotiated
        name = command.get("execute", command.get("exec-oob"))
        if name is None:
            self.reply(command, qmp_error("GenericError", "QMP input lacks member 'execute'"))
            return negotiated
        if name == "qmp_capabilities":
            if negotiated:
                self.reply(command, qmp_error("CommandNotFound",
                                              "Capabilities negotiation is already complete, command ignored"))
                return True
            self.reply(command, {"return": {}})
            self.state.qmp_sessions.add(self)
            return True
        if not negotiated:
            self.reply(command, qmp_error("CommandNotFound",
                                          "Expecting capabilities negotiation with 'qmp_capabilities'"))
            return False
        arguments = command.get("arguments") or {}
        self.reply(command, execute(self.state, str(name), arguments if isinstance(arguments, dict) else {}))
        after_reply(self.state, str(name))
        return True
