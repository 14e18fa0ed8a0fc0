"""/storage: the sparse "Windows disk" (data.img) and the first-boot marker (windows.boot)."""
from __future__ import annotations

import os
import time

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


def install_windows(state: State) -> None:
    """First boot only (no windows.boot): the install, behind the status page."""
    marker = marker_path(state)
    if os.path.exists(marker):
        return
    state.machine.step = "Installing Windows..."
    state.log.emu(f"first boot: no {marker}, installing Windows (WAA_EMU_INSTALL_S={state.settings.timings.install:g}s)...")
    time.sleep(state.settings.timings.install)
    with open(marker, "w") as handle:
        handle.write("")
    state.log.emu(f"Windows installed: created {marker}")
