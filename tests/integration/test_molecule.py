"""Every role's Molecule scenario, run for real: systemd test hosts, an engine installed by the
docker_daemon role inside them, a real local registry, converge + idempotence + verify."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ["nested_virt_check", "docker_daemon", "winarena_image", "winarena_container", "fleet"]


@pytest.fixture(scope="module")
def molecule_env(docker_engine):
    from waa_runner import images

    images.ensure_testhost(lambda message: None)
    images.ensure_fleethost(lambda message: None)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PY_COLORS"] = "0"
    return env


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(molecule_env, scenario):
    started = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "molecule"), "test", "-s", scenario], cwd=REPO,
                          env=molecule_env, capture_output=True, text=True, timeout=900)
    output = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, output[-6000:]
    for step in ("converge", "idempotence", "verify"):
        # "➜" on a terminal, ">" otherwise
        assert re.search(rf"{scenario} [>➜] {step}: Executed: Successful", output), f"step {step} did not succeed"
    print(f"molecule {scenario}: {time.monotonic() - started:.0f}s")
