"""The lifecycle: flags and settings, the servers of the container's ports, the boot thread, and
the loop that applies faults, power-offs and the guest server's socket (every TICK_S)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Callable, Mapping

from .boot import entry_setup
from .config import TICK_S, Settings, UsageError, describe, parse_flags
from .guest_api import GuestServer
from .guest_routes import ROUTES
from .httpbase import QuietHTTPServer, QuietTCPServer, serve
from .logs import Log
from .monitor import HoldHandler
from .state import State
from .web import WebHandler


def install_signals(state: State) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        state.log.emu(f"received {signal.Signals(signum).name}: exiting at once "
                      "(the real container ignores SIGTERM; WAA_EMU_IGNORE_SIGTERM=1 does too)")
        os._exit(0)

    if state.settings.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the real PID 1 (bash) ignores it
    else:
        signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def start(argv: list[str], environ: Mapping[str, str], log: Log) -> tuple[State, dict[str, str], frozenset[str]]:
    """Everything before the loop; UsageError for bad flags or settings."""
    log.line("Starting WinArena...")
    flags = parse_flags(argv)
    settings = Settings.from_env(environ, log.emu)
    log.color = settings.log_color
    state = State.create(settings, log)
    faults = state.faults.reset(settings.initial_faults)
    log.emu(describe(flags, settings, faults))
    return state, flags, faults


def tick(state: State, guest: GuestServer, faults: frozenset[str], exit: Callable[[int], None]) -> frozenset[str]:
    """One turn of the loop; returns the faults now active."""
    current = state.faults.current()
    if current != faults:
        state.log.emu(f"faults now: {','.join(sorted(current)) or 'none'}")
    if "crash" in current and state.machine.qemu_running:
        state.log.error("QEMU crashed: qemu-system-x86_64 was killed by signal 11 (emulated fault 'crash'), exiting.")
        exit(1)
    if state.machine.power_off_due():
        state.power_off()
    guest.reconcile()
    return current


def main(argv: list[str], environ: Mapping[str, str] | None = None) -> None:
    log = Log()
    try:
        state, flags, faults = start(argv, os.environ if environ is None else environ, log)
    except UsageError as err:
        (log.line if str(err).startswith(("Unknown option", "Option ")) else log.emu)(str(err))
        sys.exit(2)
    install_signals(state)
    settings = state.settings
    serve(QuietHTTPServer((settings.bind_addr, settings.ports["web"]), WebHandler, state))
    serve(QuietTCPServer((settings.bind_addr, settings.ports["rdp"]), HoldHandler, state))
    log.line("Starting VM...")
    threading.Thread(target=entry_setup, args=(state, flags), daemon=True).start()
    guest = GuestServer(state, ROUTES)
    while True:
        faults = tick(state, guest, faults, os._exit)
        time.sleep(TICK_S)
