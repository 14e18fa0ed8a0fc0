"""The boot sequence: dockur's start_vm (status page, checks, disk, install, QEMU) and WAA's
entry_setup.sh (the poller of the guest's /probe, the ready line, --prepare-image, --start-client)."""
from __future__ import annotations

import http.client
import os
import threading
import time
from typing import Callable, Mapping

from .config import DOCKUR_VERSION, QEMU_VERSION, TICK_S
from .forward import start_forward
from .httpbase import QuietTCPServer, serve
from .monitor import MonitorHandler
from .preconditions import has_net_admin, kvm_error, ram_error
from .qmp import QMPHandler
from .state import State
from .storage import ensure_disk, install_windows


def start_qemu(state: State) -> None:
    """config.sh removes the status page; QEMU starts with QMP and the monitor; the NAT forward."""
    machine, settings = state.machine, state.settings
    machine.status_page = False
    state.log.info(f"Booting Windows using QEMU v{QEMU_VERSION}...")
    machine.qemu_servers = [
        serve(QuietTCPServer((settings.bind_addr, settings.ports["qmp"]), QMPHandler, state)),
        serve(QuietTCPServer((settings.bind_addr, settings.ports["monitor"]), MonitorHandler, state)),
    ]
    machine.start_qemu()
    if machine.networking:
        start_forward(state, None if settings.forward_addrs is None else list(settings.forward_addrs))


def start_vm(state: State, net_admin: Callable[[], bool] = has_net_admin) -> None:
    """The dockur/windows boot. A failed check returns: nothing else happens, the container stays up."""
    machine, log, timings = state.machine, state.log, state.settings.timings
    log.info(f"Starting Windows for Docker v{DOCKUR_VERSION}...")
    log.info("For support visit https://github.com/dockur/windows")
    machine.step = "Starting Windows for Docker..."
    problem = ram_error(state.settings)
    if problem:
        log.error(problem)
        return  # start_vm.sh exits 17
    time.sleep(timings.boot / 2)
    if not ensure_disk(state):
        return

    machine.step = "Initializing network..."
    machine.networking = net_admin()
    if not machine.networking:
        log.error("Failed to create bridge. Please add the following setting to your container: --cap-add NET_ADMIN")
        log.warn("falling back to usermode networking (slow)!")
    machine.step = "Initialized network successfully..."
    time.sleep(timings.boot / 2)

    problem = kvm_error(state.settings)
    if problem:
        log.error(f"KVM acceleration not available {problem}, this will cause a major loss of performance.")
        log.error("See the FAQ on how to enable it, or continue without KVM by setting KVM=N (not recommended).")
        return  # start_vm.sh exits 88

    install_windows(state)
    start_qemu(state)
    time.sleep(timings.server / 2)
    if machine.qemu_running:
        log.info("Windows started succesfully, visit http://localhost:8006/ to view the screen...")


def guest_probe_ok(state: State) -> bool:
    """entry_setup.sh's `curl <guest>:5000/probe` (no timeout: a hung server blocks it, as curl)."""
    conn = http.client.HTTPConnection(state.settings.guest_addr, state.settings.guest_port, timeout=None)
    try:
        conn.request("GET", "/probe")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def guest_post(state: State, path: str) -> int:
    conn = http.client.HTTPConnection(state.settings.guest_addr, state.settings.guest_port, timeout=30)
    try:
        conn.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def entry_setup(state: State, flags: Mapping[str, str], exit: Callable[[int], None] = os._exit) -> None:
    """WAA's entry_setup.sh and the rest of entry.sh, in a thread next to start_vm."""
    log, timings = state.log, state.settings.timings
    log.line("Starting WinArena VM...")
    threading.Thread(target=start_vm, args=(state,), daemon=True).start()
    next_log = 0.0
    while not guest_probe_ok(state):
        now = time.monotonic()
        if now >= next_log:
            log.line("Waiting for a response from the windows server. This might take a while...")
            next_log = now + timings.wait_log
        time.sleep(TICK_S)
    log.line("VM is up and running, and the Windows Arena Server is ready to use!")
    log.line("VM started, server ready")
    if flags["prepare-image"] == "true":
        log.line("Preparing Arena image by gracefully shutting down the Windows VM...")
        if guest_post(state, "/shutdown") == 200:
            log.line("Windows VM is shutting down...")
            time.sleep(timings.prepare)  # the real entry.sh sleeps 180 s
        else:
            log.line("Failed to shut down the Windows VM. Exiting...")
        # The real entry.sh then runs `wait -n` without children and exits with its 127.
        log.emu("entry.sh ends: `wait -n` has no child to wait for (exit 127)")
        exit(127)
        return
    log.line("Skipping image preparation...")
    if flags["start-client"] == "true":
        log.line("Starting client...")
        log.emu(f"the emulator has no WAA client (agent {flags['agent']}, model {flags['model']}): "
                "keeping the container alive instead")
    else:
        log.line("Keeping container alive")
