"""Where the Ansible collection lives, whether waa_runner runs from a clone or from a wheel.

- A clone: the repository root is the collection (galaxy.yml beside waa_runner/), and
  collections/ansible_collections/openadapt/waa links back to it, so ANSIBLE_COLLECTIONS_PATH is
  <repo>/collections.
- A wheel: setup.py's build step copies the collection to
  site-packages/ansible_collections/openadapt/waa, so ANSIBLE_COLLECTIONS_PATH is site-packages.

Nothing here imports ansible: `waa-run --help` and the exit-code table stay fast.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

NAMESPACE, NAME = "openadapt", "waa"
_PACKAGE_DIR = Path(__file__).resolve().parent


class CollectionNotFound(RuntimeError):
    """Neither a clone nor an installed copy of the openadapt.waa collection was found."""


def _is_collection(path: Path) -> bool:
    return (path / "galaxy.yml").is_file() and (path / "playbooks").is_dir()


@lru_cache(maxsize=1)
def collection_root() -> Path:
    """The directory that holds galaxy.yml, playbooks/, roles/, plugins/ and inventory/."""
    clone = _PACKAGE_DIR.parent
    if _is_collection(clone):
        return clone
    for entry in sys.path:
        candidate = Path(entry or ".").resolve() / "ansible_collections" / NAMESPACE / NAME
        if _is_collection(candidate):
            return candidate
    raise CollectionNotFound("the openadapt.waa collection was not found next to waa_runner nor under "
                             "ansible_collections/openadapt/waa on sys.path: reinstall openadapt-waa")


def collections_path(fallback_dir: Path | None = None) -> str:
    """The ANSIBLE_COLLECTIONS_PATH entry under which ansible finds this very copy of the collection.

    A clone whose collections/ link is missing (e.g. an archive that dropped symlinks) gets a link
    made under `fallback_dir` (the state directory) instead.
    """
    root = collection_root()
    if root.parent.name == NAMESPACE and root.parent.parent.name == "ansible_collections":
        return str(root.parent.parent.parent)  # installed: site-packages (or any ansible collections dir)
    link_dir = root / "collections"
    if (link_dir / "ansible_collections" / NAMESPACE / NAME / "galaxy.yml").is_file():
        return str(link_dir)
    if fallback_dir is None:
        raise CollectionNotFound(f"{link_dir}/ansible_collections/{NAMESPACE}/{NAME} is missing")
    link = Path(fallback_dir) / "collections" / "ansible_collections" / NAMESPACE / NAME
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() or link.resolve() != root:
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(root, link, target_is_directory=True)
    return str(Path(fallback_dir) / "collections")


def playbook_path(name: str) -> Path:
    return collection_root() / "playbooks" / f"{name}.yml"


def local_inventory() -> Path:
    """inventory/local.yml: this machine as the only host of group `waa`."""
    return collection_root() / "inventory" / "local.yml"


@lru_cache(maxsize=None)
def load_module_util(name: str) -> ModuleType:
    """Load one of the collection's stdlib-only module_utils by file path (no ansible import).

    The same file is what the modules import on the target host as
    ansible_collections.openadapt.waa.plugins.module_utils.<name>.
    """
    path = collection_root() / "plugins" / "module_utils" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_waa_module_utils_{name}", path)
    if spec is None or spec.loader is None:
        raise CollectionNotFound(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
