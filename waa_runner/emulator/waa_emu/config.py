"""Configuration: the emulator's constants and the settings read once from the environment.

Nothing here changes after start: `Settings.from_env` returns a frozen object that every other
module receives (through the one `State`), instead of reading globals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

EMULATOR_VERSION = "3"
ENTRY_FLAGS = (
    "prepare-image", "start-client", "agent", "model", "som-origin", "a11y-backend", "clean-results",
    "worker-id", "num-workers", "result-dir", "json-name",
)
ENTRY_DEFAULTS: Mapping[str, str] = MappingProxyType({
    "prepare-image": "false", "start-client": "true", "agent": "navi", "model": "gpt-4-vision-preview",
    "som-origin": "oss", "a11y-backend": "uia", "clean-results": "true", "worker-id": "0", "num-workers": "1",
    "result-dir": "./results", "json-name": "evaluation_examples_windows/test_all.json",
})
FAULTS = ("server_down", "server_hang", "empty_tree", "black_screen", "crash", "install_stall", "install_slow")
GUEST_PORT = 5000
PORTS: Mapping[str, int] = MappingProxyType({"web": 8006, "rdp": 3389, "qmp": 7200, "monitor": 7100})
SCREEN_W, SCREEN_H = 1440, 900
CAP_NET_ADMIN = 12
QEMU_VERSION = "8.2.2"
DOCKUR_VERSION = "0.0"
TICK_S = 0.1
TRUE_WORDS = ("1", "y", "yes", "true")
TIMING_DEFAULTS: Mapping[str, tuple[str, float]] = MappingProxyType({
    "boot": ("WAA_EMU_BOOT_S", 2.0), "install": ("WAA_EMU_INSTALL_S", 3.0), "server": ("WAA_EMU_SERVER_S", 2.0),
    "black": ("WAA_EMU_BLACK_S", 1.0), "wait_log": ("WAA_EMU_WAIT_LOG_S", 1.0),
    "prepare": ("WAA_EMU_PREPARE_S", 3.0), "slow_install": ("WAA_EMU_SLOW_INSTALL_S", 20.0),
})


class UsageError(Exception):
    """Bad flags or settings: main() logs the message and exits 2, as before the split."""


def flag(environ: Mapping[str, str], name: str, default: str = "0") -> bool:
    return environ.get(name, default).lower() in TRUE_WORDS


def seconds(environ: Mapping[str, str], name: str, default: float, warn: Callable[[str], None]) -> float:
    raw = environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        warn(f"{name}={raw!r} is not a number of seconds: using {default}")
        return default
    return max(0.0, value)


@dataclass(frozen=True)
class Timings:
    boot: float = 2.0
    install: float = 3.0
    server: float = 2.0
    black: float = 1.0
    wait_log: float = 1.0
    prepare: float = 3.0
    slow_install: float = 20.0  # the install with the install_slow fault

    def items(self) -> list[tuple[str, float]]:
        return [(name, getattr(self, name)) for name in TIMING_DEFAULTS]


@dataclass(frozen=True)
class Settings:
    """Everything the environment decides (docs/emulator.md, "Settings")."""

    timings: Timings = field(default_factory=Timings)
    fault_file: str = "/run/waa-emu/faults"
    storage: str = "/storage"
    guest_addr: str = "127.0.0.2"
    bind_addr: str = "0.0.0.0"  # the container's ports (8006, 3389, 7200, 7100)
    ports: Mapping[str, int] = field(default_factory=lambda: PORTS)
    guest_port: int = GUEST_PORT
    forward_addrs: tuple[str, ...] | None = None  # None: the container's own addresses (/proc/net/fib_trie)
    initial_faults: tuple[str, ...] = ()
    ignore_sigterm: bool = False
    novnc_redirect: bool = False
    kvm_cpu_flags: bool = False
    log_color: bool = False
    a11y_delay_s: float = 0.0
    ram_size: str = "4G"
    disk_size: str = "64G"
    kvm_check: bool = True
    ram_check: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str], warn: Callable[[str], None]) -> "Settings":
        values = {name: seconds(environ, var, default, warn) for name, (var, default) in TIMING_DEFAULTS.items()}
        values["wait_log"] = max(0.1, values["wait_log"])
        initial = tuple(f.strip() for f in environ.get("WAA_EMU_FAULT", "").split(",") if f.strip())
        unknown = [f for f in initial if f not in FAULTS]
        if unknown:
            raise UsageError(f"unknown WAA_EMU_FAULT {', '.join(unknown)} (known: {', '.join(FAULTS)})")
        return cls(
            timings=Timings(**values),
            fault_file=environ.get("WAA_EMU_FAULT_FILE", "/run/waa-emu/faults"),
            storage=environ.get("WAA_EMU_STORAGE", "/storage"),
            guest_addr=environ.get("WAA_EMU_GUEST_ADDR", "127.0.0.2"),
            initial_faults=initial,
            ignore_sigterm=flag(environ, "WAA_EMU_IGNORE_SIGTERM"),
            novnc_redirect=flag(environ, "WAA_EMU_NOVNC_REDIRECT"),
            kvm_cpu_flags=flag(environ, "WAA_EMU_KVM_CPU_FLAGS"),
            log_color=flag(environ, "WAA_EMU_LOG_COLOR"),
            a11y_delay_s=seconds(environ, "WAA_EMU_A11Y_S", 0.0, warn),
            ram_size=environ.get("RAM_SIZE", "4G"),
            disk_size=environ.get("DISK_SIZE", "64G"),
            kvm_check=environ.get("KVM", "Y")[:1] not in ("N", "n"),
            ram_check=environ.get("RAM_CHECK", "Y")[:1] not in ("N", "n"),
        )


def parse_flags(argv: list[str]) -> dict[str, str]:
    """entry.sh's flags, each with a value; an unknown flag or a missing value is a UsageError."""
    flags = dict(ENTRY_DEFAULTS)
    known = ", ".join("--" + f for f in ENTRY_FLAGS)
    index = 0
    while index < len(argv):
        arg = argv[index]
        name = arg[2:] if arg.startswith("--") else None
        if name is None or name not in ENTRY_FLAGS:
            raise UsageError(f"Unknown option: {arg} (known: {known})")
        if index + 1 >= len(argv):
            raise UsageError(f"Option {arg} needs a value (known: {known})")
        flags[name] = argv[index + 1]
        index += 2
    return flags


def describe(flags: Mapping[str, str], settings: Settings, faults: frozenset[str]) -> str:
    """The `[waa-emu] WAA emulator vN: ...` start line."""
    return (f"WAA emulator v{EMULATOR_VERSION}: flags " + " ".join(f"--{k} {flags[k]}" for k in ENTRY_FLAGS)
            + "; timings " + " ".join(f"{k}={v:g}s" for k, v in settings.timings.items())
            + f"; faults {','.join(sorted(faults)) or 'none'}")


__all__ = ["Settings", "Timings", "UsageError", "parse_flags", "describe"]
