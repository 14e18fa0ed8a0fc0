"""The collection is found by ansible from a plain clone, from a normal (non-editable) pip install
into a fresh virtual environment, and from the tarball `ansible-galaxy collection build` makes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MODULES = ["waa_health_probe", "waa_preflight", "waa_image", "waa_image_progress"]
PLAYBOOKS = ["vm_setup", "server_start", "up", "probe", "down"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(extra)
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def assert_collection_usable(bin_dir: Path, cwd: Path, env: dict[str, str]) -> None:
    for module in MODULES:
        doc = run([str(bin_dir / "ansible-doc"), "-t", "module", f"openadapt.waa.{module}"], cwd, env)
        assert f"openadapt.waa.{module}" in doc.stdout and "EXAMPLES" in doc.stdout
    inventory = cwd / "hosts.yml"
    inventory.write_text("waa:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    for playbook in PLAYBOOKS:
        run([str(bin_dir / "ansible-playbook"), f"openadapt.waa.{playbook}", "-i", str(inventory), "--syntax-check"],
            cwd, env)


def test_found_from_a_clone(tmp_path):
    # ansible.cfg at the repository root points at collections/, which links back to the root.
    assert_collection_usable(VENV_BIN, REPO, clean_env())


def test_galaxy_build_makes_an_installable_tarball(tmp_path):
    out = tmp_path / "dist"
    run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out)], REPO, clean_env())
    tarballs = list(out.glob("openadapt-waa-*.tar.gz"))
    assert len(tarballs) == 1
    names = tarfile.open(tarballs[0]).getnames()
    assert "plugins/modules/waa_health_probe.py" in names and "roles/winarena_container/tasks/main.yml" in names
    assert not any(n.startswith(("tests/", "waa_runner/", "collections/")) for n in names)
    collections = tmp_path / "collections"
    run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p", str(collections),
         str(tarballs[0])], tmp_path, clean_env())
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    assert_collection_usable(VENV_BIN, workdir, clean_env(ANSIBLE_COLLECTIONS_PATH=str(collections)))


@pytest.mark.slow
def test_found_after_a_non_editable_pip_install_into_a_fresh_venv(tmp_path):
    source = tmp_path / "src"
    # A copy without the virtual environment and caches: what a user's clone holds.
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", ".pytest_cache"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, clean_env())
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(source)], tmp_path, clean_env(), timeout=900)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    shutil.rmtree(source)  # nothing may still point into the source tree
    assert_collection_usable(venv / "bin", workdir, clean_env())
    help_proc = run([str(venv / "bin" / "waa-run"), "--help"], workdir, clean_env())
    assert "up" in help_proc.stdout
