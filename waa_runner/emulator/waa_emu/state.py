"""The one state object every part of the emulator receives: settings, log, faults, the emulated
machine (what the VM is doing), the screen, the desktop, the guest's files, the QMP sessions."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import Settings
from .desktop import Desktop
from .faults import Faults
from .guest_files import GuestFiles
from .logs import Log
from .pictures import Screen


class Closable(Protocol):
    def shutdown(self) -> None: ...

    def server_close(self) -> None: ...


class Session(Protocol):
    def send(self, payload: Any) -> None: ...


class Machine:
    """What the emulated VM is doing; every server reads it on every request."""

    def __init__(self, settings: Settings, faults: Faults) -> None:
        self.settings = settings
        self.faults = faults
        self.lock = threading.Lock()
        self.step = "Starting Windows for Docker..."  # the text of /msg.html
        self.status_page = True  # dockur removes the status page right before QEMU starts
        self.qemu_at: float | None = None  # monotonic time QEMU started
        self.server_at: float | None = None  # the guest's WAA server starts listening
        self.off = False  # Windows shut down / QEMU quit
        self.off_at: float | None = None  # a shutdown in progress completes at this time
        self.paused = False  # QMP stop / cont
        self.networking = True  # False: usermode networking, the guest is unreachable
        self.qemu_servers: list[Closable] = []  # QMP and monitor listeners: closed when QEMU exits

    @property
    def qemu_running(self) -> bool:
        return self.qemu_at is not None and not self.off

    def start_qemu(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.server_at = now + self.settings.timings.server
        self.qemu_at = now

    def desktop_ready(self) -> bool:
        if not self.qemu_running or self.server_at is None:
            return False
        return time.monotonic() >= self.server_at + self.settings.timings.black

    def server_should_listen(self) -> bool:
        return (self.qemu_running and self.networking and self.server_at is not None
                and time.monotonic() >= self.server_at and not self.faults.has("server_down"))

    def screen_black(self) -> bool:
        return not self.desktop_ready() or self.faults.has("black_screen")

    def schedule_power_off(self, delay_s: float) -> None:
        with self.lock:
            if not self.off and self.off_at is None:
                self.off_at = time.monotonic() + delay_s

    def power_off_due(self) -> bool:
        return self.off_at is not None and not self.off and time.monotonic() >= self.off_at


class QMPSessions:
    """Negotiated QMP sessions, to broadcast events to."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: set[Session] = set()

    def add(self, session: Session) -> None:
        with self.lock:
            self.sessions.add(session)

    def discard(self, session: Session) -> None:
        with self.lock:
            self.sessions.discard(session)

    def broadcast(self, event: str, data: dict[str, Any] | None = None) -> None:
        now = time.time()
        payload: dict[str, Any] = {"timestamp": {"seconds": int(now), "microseconds": int((now % 1) * 1e6)},
                                   "event": event}
        if data is not None:
            payload["data"] = data
        with self.lock:
            sessions = list(self.sessions)
        for session in sessions:
            session.send(payload)


@dataclass
class State:
    settings: Settings
    log: Log
    faults: Faults
    machine: Machine
    screen: Screen = field(default_factory=Screen)
    desktop: Desktop = field(default_factory=Desktop)
    files: GuestFiles = field(default_factory=GuestFiles)
    qmp_sessions: QMPSessions = field(default_factory=QMPSessions)

    @classmethod
    def create(cls, settings: Settings, log: Log | None = None) -> "State":
        faults = Faults(settings.fault_file)
        return cls(settings=settings, log=log or Log(color=settings.log_color), faults=faults,
                   machine=Machine(settings, faults))

    def screen_image(self, fmt: str = "png") -> bytes:
        return self.screen.image(self.machine.screen_black(), fmt)

    def pause(self, paused: bool) -> None:
        self.machine.paused = paused
        self.qmp_sessions.broadcast("STOP" if paused else "RESUME")

    def powerdown(self) -> None:
        self.qmp_sessions.broadcast("POWERDOWN")
        self.machine.schedule_power_off(1.0)

    def reset(self, reason: str) -> None:
        """system_reset: Windows reboots; its server and desktop come back as after QEMU's start."""
        self.qmp_sessions.broadcast("RESET", {"guest": False, "reason": reason})
        if self.machine.qemu_running:
            self.machine.start_qemu()

    def power_off(self) -> None:
        """Windows is off, QEMU exited: its sockets are gone; the container keeps running."""
        self.machine.off = True
        self.machine.paused = False
        self.qmp_sessions.broadcast("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
        for server in self.machine.qemu_servers:
            server.shutdown()
            server.server_close()
        self.log.info("Shutdown completed!")

