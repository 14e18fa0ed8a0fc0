"""The collection is found by ansible from a plain clone, from the wheel `python -m build` makes
(installed into a fresh virtual environment without the test extras, as `pip install openadapt-waa`
would), and from the tarball `ansible-galaxy collection build` makes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
ROLES = sorted(p.parent.parent.name for p in (REPO / "roles").glob("*/meta/argument_specs.yml"))
PLAYBOOKS = ["vm_setup", "server_start", "up", "probe", "down"]
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache",
                                     ".mypy_cache", ".ruff_cache", "output", ".state")


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
    for role in ROLES:
        doc = run([str(bin_dir / "ansible-doc"), "-t", "role", f"openadapt.waa.{role}"], cwd, env)
        assert f"openadapt.waa.{role}" in doc.stdout and "ENTRY POINT" in doc.stdout
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
    assert not any(n.startswith(("tests/", "waa_runner/", "collections/", "changelogs/fragments/")) for n in names)
    assert {"LICENSE", "meta/runtime.yml", "meta/execution-environment.yml", "requirements.txt", "bindep.txt",
            "changelogs/changelog.yaml", "plugins/action/waa_fail.py"} <= set(names)
    collections = tmp_path / "collections"
    # Galaxy is unreachable here; community.docker and azure.azcollection come with the `ansible` package.
    # --force: a copy installed by `pip install .` in this venv's site-packages would otherwise count as
    # "already installed" and nothing would land in the fresh path.
    install = run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "--force",
                   "-p", str(collections), str(tarballs[0])], tmp_path, clean_env())
    assert "was installed successfully" in install.stdout
    assert (collections / "ansible_collections" / "openadapt" / "waa" / "MANIFEST.json").is_file()
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = clean_env(ANSIBLE_COLLECTIONS_PATH=str(collections))
    where = run([str(VENV_BIN / "ansible-doc"), "-t", "module", "openadapt.waa.waa_fail"], workdir, env)
    assert str(collections) in where.stdout, "ansible found another copy of the collection first"
    assert_collection_usable(VENV_BIN, workdir, env)


@pytest.mark.slow
def test_the_wheel_from_python_m_build_carries_the_collection_and_works_in_a_fresh_venv(tmp_path):
    source = tmp_path / "src"
    # A copy without the virtual environment and caches: what a user's clone holds.
    shutil.copytree(REPO, source, symlinks=True, ignore=COPY_IGNORE)
    dist = tmp_path / "dist"
    build = run([str(VENV_BIN / "python"), "-m", "build", "--outdir", str(dist), str(source)], tmp_path, clean_env(),
                timeout=900)
    assert "SetuptoolsDeprecationWarning" not in build.stdout + build.stderr
    wheels, sdists = list(dist.glob("openadapt_waa-*.whl")), list(dist.glob("openadapt_waa-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1

    prefix = "ansible_collections/openadapt/waa/"
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    tracked = subprocess.run(["git", "ls-files", "galaxy.yml", "meta", "plugins", "roles", "playbooks", "inventory",
                              "docs", "README.md", "LICENSE"], cwd=REPO, capture_output=True, text=True, check=True)
    wanted = {prefix + path for path in tracked.stdout.split() if (REPO / path).is_file()}
    assert wanted - names == set(), f"the wheel lacks collection files: {sorted(wanted - names)[:20]}"
    assert prefix + "plugins/action/waa_fail.py" in names and "waa_runner/py.typed" in names
    sdist_names = tarfile.open(sdists[0]).getnames()
    assert any(n.endswith("/roles/winarena_container/tasks/main.yml") for n in sdist_names)
    assert any(n.endswith("/plugins/action/waa_fail.py") for n in sdist_names)
    metadata = zipfile.ZipFile(wheels[0]).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: GPL-3.0-or-later" in metadata and "Requires-Python: >=3.11" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, clean_env())
    # The wheel, not the source tree, and no extras: what `pip install openadapt-waa` gives a user.
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])], tmp_path, clean_env(),
        timeout=900)
    shutil.rmtree(source)  # nothing may still point into the source tree
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    assert_collection_usable(venv / "bin", workdir, clean_env())
    run([str(venv / "bin" / "ansible-playbook"), "openadapt.waa.up", "--syntax-check", "-i", "localhost,"],
        workdir, clean_env())
    help_proc = run([str(venv / "bin" / "waa-run"), "--help"], workdir, clean_env())
    assert "up" in help_proc.stdout
    # community.docker's modules import requests on the target Python: for --local runs, this one.
    run([str(venv / "bin" / "python"), "-c", "import requests, rich"], workdir, clean_env())
