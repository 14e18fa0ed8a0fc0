"""A waa-run that is killed outright (kill -9, an OOM kill) leaves nothing of its run behind:
ansible-playbook, its workers and the health wait they run all end with it (waa_runner/orphan_guard.py).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import docker, free_loopback_address, poll_until
from waa_runner import processes

pytestmark = pytest.mark.docker
WAA_RUN = str(Path(sys.executable).parent / "waa-run")


def test_kill_9_of_waa_run_during_a_health_wait_leaves_no_process(tmp_path, emulator_image):
    name = f"waa-test-orphan-{uuid.uuid4().hex[:6]}"
    variables = {"waa_container_name": name, "waa_bind_address": free_loopback_address(),
                 "waa_storage_path": str(tmp_path / "storage"), "waa_ram_size": "1G", "waa_health_timeout": 600,
                 "waa_container_env": {"WAA_EMU_BOOT_S": 1, "WAA_EMU_INSTALL_S": 1, "WAA_EMU_SERVER_S": 600}}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    state = tmp_path / "state"
    run = subprocess.Popen([WAA_RUN, "up", "--local", "--emulator", "-e", f"@{tmp_path / 'vars.json'}",
                            "--state-dir", str(state), "--wait-lock", "600"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        def waiting() -> str | None:
            """The run's artifact directory once its health wait (a long module call) is under way."""
            runs = sorted((state / "runs").glob("*")) if (state / "runs").exists() else []
            if not runs:
                return None
            artifact_dir = str(runs[-1] / "artifacts" / "run")
            events = Path(artifact_dir) / "job_events"
            started = events.exists() and any("Wait for the WAA host to be ready" in path.read_text(errors="replace")
                                              for path in events.glob("*.json"))
            return artifact_dir if started and processes.leftovers(artifact_dir) else None

        artifact_dir = poll_until(waiting, deadline_s=240, what="the health wait to start", interval_s=0.5)
        assert len(processes.leftovers(artifact_dir)) >= 2  # ansible-playbook and its workers are working
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
        poll_until(lambda: processes.leftovers(artifact_dir) == [], deadline_s=15,
                   what="every process of the killed run to be gone")
    finally:
        if run.poll() is None:
            run.kill()
        docker("rm", "-f", "-v", name, check=False)
