"""Where the Ansible collection lives, whether waa_runner runs from a clone or from a wheel.

A clone holds the collection at the repository root (galaxy.yml beside waa_runner/) and a link
collections/ansible_collections/openadapt/waa back to it; a wheel installs it at
site-packages/ansible_collections/openadapt/waa (setup.py's build step), which ansible finds on
sys.path by itself.
"""
from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

_PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def collection_root() -> Path:
    clone = _PACKAGE_DIR.parent
    if (clone / "galaxy.yml").is_file() and (clone / "playbooks").is_dir():
        return clone
    for entry in map(Path, sys.path):
        candidate = entry / "ansible_collections" / "openadapt" / "waa"
        if (candidate / "playbooks").is_dir():
            return candidate
    raise RuntimeError("the openadapt.waa collection was not found: reinstall the package (pip install openadapt-waa)")


def collections_path() -> str | None:
    """A value for ANSIBLE_COLLECTIONS_PATH when running from a clone; None when installed."""
    root = collection_root()
    link = root / "collections"
    if (link / "ansible_collections" / "openadapt" / "waa").exists():
        return str(link)
    return None


def playbook_path(name: str) -> Path:
    return collection_root() / "playbooks" / f"{name}.yml"


def local_inventory() -> Path:
    return collection_root() / "inventory" / "local.yml"


@lru_cache(maxsize=None)
def load_module_util(name: str) -> ModuleType:
    """Load one of the collection's stdlib-only module_utils by file path (no ansible import)."""
    path = collection_root() / "plugins" / "module_utils" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_waa_module_utils_{name}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
