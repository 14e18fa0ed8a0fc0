"""An AWX/AAP execution environment built by ansible-builder from this collection, running the
`openadapt.waa.probe` playbook against the emulator and giving the right verdict.

No registry is reachable, so the EE's base image is made here, FROM the local waa-base image
(debootstrap, waa_runner.images): python3-pip from Debian, then ansible-core and ansible-runner from
wheels that pip downloaded on this machine beforehand (the build itself needs no index; the wheels
are fetched with this machine's pip settings, through its cache). Then, as an AWX admin would:
`ansible-galaxy collection build`, `ansible-builder create` with an execution-environment.yml like
the one in docs/awx.md, and `docker build` of the context it writes. Docker's layer cache keys every
step on the bytes it copies, so an unchanged collection rebuilds nothing.

The EE container runs `ansible-playbook openadapt.waa.probe` with a local connection; it reaches the
emulator on its 127.x loopback address (`--network host`: no engine runs inside) and the engine
through its socket, as the probe's docker_daemon and container layers need.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_cli import FAST_ENV
from tests.support.emulator import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EE_BASE_IMAGE = "waa-ee-base:bookworm"
EE_IMAGE = "waa-ee-test:latest"
ANSIBLE_COLLECTIONS = Path(metadata.distribution("ansible").locate_file("ansible_collections"))  # type: ignore[arg-type]
BASE_CONTAINERFILE = """\
# The EE base: what ansible-builder's stages expect (python3 with pip, ansible-core, ansible-runner),
# on the project's own Debian base. pip installs only from the wheels copied in (no index).
FROM waa-base:bookworm
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/ee-wheels \\
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# The package lists stay: the final stage installs bindep.txt's packages with apt-get.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
COPY wheels /opt/ee-wheels
RUN python3 -m pip install -q {core} {runner}
"""
MEASURED: dict[str, float] = {}


def run(argv: list[str], cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _wheels(dest: Path, tmp: Path) -> tuple[str, str]:
    """Every wheel the EE build installs: the base's ansible-core and ansible-runner (the versions
    this venv runs), ansible-builder's helpers, and what the collections' requirements name."""
    core = f"ansible-core=={metadata.version('ansible-core')}"
    runner = f"ansible-runner=={metadata.version('ansible-runner')}"
    docker_reqs = ANSIBLE_COLLECTIONS / "community" / "docker" / "meta" / "ee-requirements.txt"
    run([str(BIN / "python"), "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(dest), core, runner,
         "bindep", "PyYAML", "packaging", "dumb-init==1.2.5", "-r", str(REPO / "requirements.txt"),
         "-r", str(docker_reqs)], tmp)
    return core, runner


def _build_base(tmp: Path) -> None:
    from waa_runner import images

    images.ensure_base(lambda message: None)
    context = tmp / "ee-base"
    (context / "wheels").mkdir(parents=True)
    core, runner = _wheels(context / "wheels", tmp)
    (context / "Containerfile").write_text(BASE_CONTAINERFILE.format(core=core, runner=runner))
    run(["docker", "build", "-q", "-f", str(context / "Containerfile"), "-t", EE_BASE_IMAGE, str(context)], tmp)


def _definition(tmp: Path) -> Path:
    """An execution-environment.yml like docs/awx.md's, on the local base and local collections."""
    run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(tmp / "dist"), str(REPO)],
        tmp)
    tarball = next((tmp / "dist").glob("openadapt-waa-*.tar.gz"))
    collections = tmp / "collections"
    collections.mkdir()
    shutil.copy2(tarball, collections / "openadapt-waa.tar.gz")
    # Galaxy is unreachable: community.docker comes from the `ansible` package installed here.
    shutil.copytree(ANSIBLE_COLLECTIONS / "community" / "docker", collections / "community.docker",
                    ignore=shutil.ignore_patterns("__pycache__", "tests"))
    (tmp / "requirements.yml").write_text(yaml.safe_dump({"collections": [
        {"name": "/build/collections/openadapt-waa.tar.gz", "type": "file"},
        {"name": "/build/collections/community.docker", "type": "dir"},
    ]}))
    definition = {
        "version": 3,
        "images": {"base_image": {"name": EE_BASE_IMAGE}},
        "dependencies": {
            "python_interpreter": {"python_path": "/usr/bin/python3"},
            "galaxy": "requirements.yml",
        },
        # pip comes from Debian (python3-pip) in the base: no ensurepip.
        "options": {"package_manager_path": "/usr/bin/apt-get", "user": "root", "skip_pip_install": True},
        "build_arg_defaults": {"ANSIBLE_GALAXY_CLI_COLLECTION_OPTS": "--offline --no-deps"},
        # Copied into the build context as _build/collections/ (/build/collections/ in the build).
        "additional_build_files": [{"src": str(collections), "dest": "collections"}],
    }
    path = tmp / "execution-environment.yml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def ee_image(docker_engine, tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("ee")
    started = time.monotonic()
    _build_base(tmp)
    definition = _definition(tmp)
    run([str(BIN / "ansible-builder"), "create", "-f", str(definition), "-c", str(tmp / "context"),
         "--output-filename", "Containerfile"], tmp)
    run(["docker", "build", "-q", "-f", str(tmp / "context" / "Containerfile"), "-t", EE_IMAGE,
         str(tmp / "context")], tmp, timeout=1800)
    MEASURED["build_s"] = time.monotonic() - started
    MEASURED["size_mb"] = int(docker("image", "inspect", "-f", "{{.Size}}", EE_IMAGE).stdout.strip()) / 1e6
    print(f"\nEE image {EE_IMAGE}: built in {MEASURED['build_s']:.0f} s, {MEASURED['size_mb']:.0f} MB")
    return EE_IMAGE


def probe_in_ee(image: str, handle, tmp_path: Path, **extra) -> subprocess.CompletedProcess[str]:
    variables = {"waa_target": "all", "waa_container_name": handle.name, "waa_bind_address": handle.host,
                 "waa_health_timeout": 90, "waa_health_breaker_threshold": 0,
                 "ansible_python_interpreter": "/usr/bin/python3", **extra}
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(variables))
    argv = ["docker", "run", "--rm", "--network", "host", "-v", "/var/run/docker.sock:/var/run/docker.sock",
            "-v", f"{vars_file}:/runner/vars.json:ro", "-e", "ANSIBLE_NOCOLOR=1",
            # The set_stats data AWX keeps as job artifacts, printed by the default callback.
            "-e", "ANSIBLE_SHOW_CUSTOM_STATS=1", image,
            "ansible-playbook", "openadapt.waa.probe", "-i", "localhost,", "-c", "local", "-e", "@/runner/vars.json"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def published_verdicts(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The `waa_verdicts` custom stats of the run (set_stats, aggregated): host -> verdict."""
    marker = "\tRUN: "
    assert marker in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
    stats, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index(marker) + len(marker):])
    return dict(stats["waa_verdicts"])


def test_the_ee_holds_the_collection_and_its_python_needs(ee_image):
    proc = docker("run", "--rm", ee_image, "ansible-doc", "-t", "module", "openadapt.waa.waa_health_probe")
    assert "openadapt.waa.waa_health_probe" in proc.stdout
    docker("run", "--rm", ee_image, "python3", "-c", "import requests")
    listing = docker("run", "--rm", ee_image, "ansible-galaxy", "collection", "list").stdout
    assert "openadapt.waa" in listing and "community.docker" in listing


def test_probe_playbook_in_the_ee_says_ready(ee_image, emulator, tmp_path):
    handle = emulator(env=FAST_ENV)
    proc = probe_in_ee(ee_image, handle, tmp_path, waa_probe_wait=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    verdict = published_verdicts(proc)["localhost"]
    assert (verdict["exit_code"], verdict["exit_name"]) == (0, "ready"), verdict


def test_probe_playbook_in_the_ee_names_the_waa_server_layer_and_exit_code_6(ee_image, emulator, tmp_path):
    handle = emulator(env=FAST_ENV)
    ready = probe_in_ee(ee_image, handle, tmp_path, waa_probe_wait=True)
    assert ready.returncode == 0, ready.stdout[-4000:]
    handle.exec("waa-emu-fault", "server_down")
    # A report, not a failure (the playbook's default): the published verdict names layer and code.
    report = probe_in_ee(ee_image, handle, tmp_path)
    assert report.returncode == 0, report.stdout[-4000:]
    verdict = published_verdicts(report)["localhost"]
    assert (verdict["exit_code"], verdict["layer"]) == (6, "waa_server"), verdict
    assert verdict["message"] and verdict["hint"]
    # Asked to fail (waa_probe_fail=true), the host fails, and publishes the same verdict.
    failed = probe_in_ee(ee_image, handle, tmp_path, waa_probe_fail=True)
    assert failed.returncode == 2, failed.stdout[-4000:]
    verdict = published_verdicts(failed)["localhost"]
    assert (verdict["exit_code"], verdict["layer"]) == (6, "waa_server"), verdict
