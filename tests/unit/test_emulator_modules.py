"""The emulator's shape: one concern per module, none over ~300 lines, no module-level mutable
state, every module importable on its own (each is tested alone in tests/unit/test_emulator_*)."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType, ModuleType

import pytest

import waa_runner.emulator.waa_emu as package

PACKAGE_DIR = Path(package.__file__).parent
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)]))
MUTABLE = (dict, list, set, bytearray)


def test_the_modules_of_the_split():
    assert set(MODULES) >= {"config", "boot", "web", "qmp", "monitor", "guest_api", "guest_routes", "preconditions",
                            "storage", "faults", "httpbase", "state", "execute", "main"}


@pytest.mark.parametrize("name", MODULES)
def test_module_is_small(name):
    lines = (PACKAGE_DIR / f"{name}.py").read_text().count("\n")
    assert lines <= 310, f"{name}.py has {lines} lines"


@pytest.mark.parametrize("name", MODULES)
def test_no_module_level_mutable_state(name):
    module: ModuleType = importlib.import_module(f"{package.__name__}.{name}")
    mutable = [key for key, value in vars(module).items()
               if not key.startswith("__") and isinstance(value, MUTABLE) and not isinstance(value, MappingProxyType)]
    assert not mutable, f"{name}: module-level mutable objects {mutable}"
    source = (PACKAGE_DIR / f"{name}.py").read_text()
    assert "\nglobal " not in source and "    global " not in source


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_alone_with_the_image_s_layout(name, tmp_path):
    """As the image runs it (`python3 -m waa_emu`, the package at the top level), in a fresh interpreter."""
    if name == "__main__":
        pytest.skip("running __main__ starts the emulator")
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(PACKAGE_DIR.parent)!r}); "
                           f"import waa_emu.{name}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_standard_library_only():
    allowed_prefixes = ("waa_emu", ".")
    for path in PACKAGE_DIR.glob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from") and not line.startswith(" "):
                top = words[1].split(".")[0]
                assert words[1].startswith(allowed_prefixes) or top in sys.stdlib_module_names, (path.name, line)
