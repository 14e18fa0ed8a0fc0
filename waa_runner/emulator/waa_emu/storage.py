"""/storage: the sparse "Windows disk" (data.img) and the first-boot marker (windows.boot)."""
from __future__ import annotations

import os
import time
from typing import Callable

from .config import TICK_S
from .preconditions import iec_bytes
from .state import State


def disk_path(state: State) -> str:
    return os.path.join(state.settings.storage, "data.img")


def marker_path(state: State) -> str:
    return os.path.join(state.settings.storage, "windows.boot")


def ensure_disk(state: State) -> bool:
    """Create data.img of DISK_SIZE when missing (only its size is set); False: start_vm gives up."""
    disk_size = state.settings.disk_size
    try:
        size = iec_bytes(disk_size, default_unit="G")
    except ValueError:
        state.log.error(f"Invalid value for DISK_SIZE: {disk_size}")
        return False
    disk = disk_path(state)
    if os.path.exists(disk):
        return True  # later boots never open it again
    state.machine.step = "Creating a disk image..."
    state.log.info(f"Creating a {disk_size} growable disk image in raw format...")
    try:
        os.makedirs(state.settings.storage, exist_ok=True)
        with open(disk, "xb") as handle:  # sparse: no byte is written
            handle.truncate(size)
    except OSError as err:
        state.log.error(f"Could not create a growable raw disk image of {disk_size} ({disk}): {err.strerror}")
        return False
    return True


INSTALL_CHUNK = 4 << 10  # bytes (one block) the install writes into data.img per percent: it grows, stays sparse


def install_step(percent: int) -> str:
    """The status page during the install, as dockur's progress lines ("... (45%)...")."""
    return f"Installing Windows ({percent}%)..."


def write_progress(disk: str, percent: int) -> None:
    """Allocate one more chunk of the sparse disk: its allocated size grows, its size stays."""
    try:
        size = os.path.getsize(disk)
        with open(disk, "r+b") as handle:
            handle.seek(max(0, min(size - INSTALL_CHUNK, size * percent // 100)) // INSTALL_CHUNK * INSTALL_CHUNK)
            handle.write(b"\xa5" * INSTALL_CHUNK)
    except OSError:
        pass  # the status page still moves; the disk is only one of the signals


def install_windows(state: State, clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> None:
    """First boot only (no windows.boot): the install, behind the status page.

    It moves: every percent rewrites the status page and writes a chunk into data.img. With the
    fault install_slow it takes WAA_EMU_SLOW_INSTALL_S instead of WAA_EMU_INSTALL_S, still moving;
    with install_stall it stops where it is (no byte written, the page unchanged) and never ends
    until the fault is cleared.
    """
    marker = marker_path(state)
    if os.path.exists(marker):
        return
    timings, faults, disk = state.settings.timings, state.faults, disk_path(state)
    state.log.emu(f"first boot: no {marker}, installing Windows (WAA_EMU_INSTALL_S={timings.install:g}s)...")
    done, percent, stalled = 0.0, 0, False
    state.machine.step = install_step(0)
    last = clock()
    while done < 1.0:
        sleep(TICK_S)
        now, active = clock(), faults.current()
        elapsed, last = now - last, now
        if "install_stall" in active:
            if not stalled:
                state.log.emu(f"the install stalled at {percent}% (emulated fault 'install_stall')")
            stalled = True
            continue
        if stalled:
            state.log.emu(f"the install goes on from {percent}%")
            stalled = False
        length = timings.slow_install if "install_slow" in active else timings.install
        done = min(1.0, done + (elapsed / length if length > 0 else 1.0))
        while percent < int(done * 100):
            percent += 1
            write_progress(disk, percent)
        state.machine.step = install_step(percent)
    with open(marker, "w") as handle:
        handle.write("")
    state.log.emu(f"Windows installed: created {marker}")
