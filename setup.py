"""Ship the Ansible collection inside the wheel, where ansible finds it.

ansible-core scans sys.path for `ansible_collections/` (the `ansible` package installs its
collections that way), so the collection's files are copied to
`ansible_collections/openadapt/waa/` in the build. A plain, non-editable `pip install .` then
makes `ansible-doc openadapt.waa.<module>` and `ansible-playbook openadapt.waa.<playbook>` work
without copying anything by hand.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
COLLECTION_ITEMS = ["galaxy.yml", "meta", "plugins", "roles", "playbooks", "inventory", "docs", "changelogs",
                    "README.md", "LICENSE", "CHANGELOG.rst", "requirements.txt", "bindep.txt"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "fragments")


class BuildPyWithCollection(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "ansible_collections" / "openadapt" / "waa"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for item in COLLECTION_ITEMS:
            source = ROOT / item
            if source.is_dir():
                shutil.copytree(source, target / item, ignore=IGNORED)
            elif source.is_file():
                shutil.copy2(source, target / item)


setup(cmdclass={"build_py": BuildPyWithCollection})
