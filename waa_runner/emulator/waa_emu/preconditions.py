"""dockur's precondition checks with their real messages: KVM, NET_ADMIN, memory (waa-facts §2).
Each takes the paths it reads, so tests can point them at files of their own."""
from __future__ import annotations

import os

from .config import CAP_NET_ADMIN, Settings

GIB = 1 << 30


def kvm_error(settings: Settings, device: str = "/dev/kvm", cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """dockur's proc.sh: device missing, not writable (it tries `echo -n > /dev/kvm`), no vmx/svm
    in /proc/cpuinfo (that last check only with WAA_EMU_KVM_CPU_FLAGS=1)."""
    if not settings.kvm_check:
        return None
    if not os.path.exists(device):
        return "(device file missing)"
    try:
        os.close(os.open(device, os.O_WRONLY))
    except OSError:
        return "(no write access)"
    if not settings.kvm_cpu_flags:
        return None  # off by default: machines that pass /dev/kvm through may hide vmx/svm in cpuinfo
    try:
        with open(cpuinfo) as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "vmx" not in flags and "svm" not in flags:
        return "(vmx/svm disabled)"
    return None


def has_net_admin(status: str = "/proc/self/status") -> bool:
    try:
        with open(status) as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return False


def iec_bytes(text: str, default_unit: str = "") -> int:
    """numfmt --from=iec: 8G, 512M, 1.5T, plain bytes (or default_unit when given)."""
    value = text.strip().upper().replace("B", "")
    if value and value[-1].isdigit() and default_unit:
        value += default_unit
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
    if value and value[-1] in units:
        return int(float(value[:-1]) * units[value[-1]])
    return int(float(value))


def mem_available(meminfo: str = "/proc/meminfo") -> int:
    with open(meminfo) as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def ram_error(settings: Settings, meminfo: str = "/proc/meminfo") -> str | None:
    """dockur's reset.sh memory check, same arithmetic and wording."""
    if not settings.ram_check:
        return None
    raw = settings.ram_size
    try:
        wanted = iec_bytes(raw)
    except ValueError:
        return f"Invalid RAM_SIZE value: {raw}"
    available = mem_available(meminfo)
    if wanted + 500_000_000 > available:
        wanted_gb = (wanted + GIB - 1) // GIB
        return (f"Your configured RAM_SIZE of {wanted_gb} GB is too high for the {available // GIB} GB of memory "
                "available, please set a lower value.")
    return None
