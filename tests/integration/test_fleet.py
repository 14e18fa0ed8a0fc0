"""A fleet over real SSH: every healthy host becomes ready while each broken one fails with its
own layer and exit code, the summary lists both, and an unreachable host is reported as such."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.emulator import docker, poll_until
from tests.support.fleet import FAST_EMULATOR, start_fleet

pytestmark = [pytest.mark.docker, pytest.mark.slow]
WAA_RUN = str(Path(sys.executable).parent / "waa-run")


def waa_run(*args: str, timeout: float = 600) -> tuple[int, dict, str]:
    proc = subprocess.run([WAA_RUN, *args, "--json"], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


@pytest.fixture(scope="module")
def fleet(docker_engine, tmp_path_factory):
    fleet = start_fleet(
        {"waa_pool_a": 3, "waa_pool_b": 3},
        no_kvm={"pool-b-1"},
        host_vars={
            "pool-b-2": {"waa_container_env": {**FAST_EMULATOR, "WAA_EMU_FAULT": "server_down"},
                         "waa_health_timeout": 5, "waa_health_recovery_timeout": 5},
            "pool-b-3": {"waa_image": "waa-fleet-registry:5000/waa-emulator:no-such-tag",
                         "waa_image_pull_retries": 1},
        },
        directory=tmp_path_factory.mktemp("fleet"))
    yield fleet
    fleet.remove()


def test_broken_hosts_fail_precisely_and_the_others_become_ready(fleet, tmp_path):
    started = time.monotonic()
    rc, report, _err = waa_run("up", "-i", str(fleet.inventory), "--state-dir", str(tmp_path))
    elapsed = time.monotonic() - started
    hosts = report["hosts"]
    assert {name for name, host in hosts.items() if host["status"] == "ready"} == {"pool-a-1", "pool-a-2", "pool-a-3"}
    assert (hosts["pool-b-1"]["exit_code"], hosts["pool-b-1"]["failed_layer"]) == (1, "nested_virt_check")
    assert "kvm" in hosts["pool-b-1"]["message"] and "Standard_D8ds_v5" in hosts["pool-b-1"]["message"]
    assert (hosts["pool-b-2"]["exit_code"], hosts["pool-b-2"]["failed_layer"]) == (6, "waa_server")
    assert hosts["pool-b-2"]["hint"]
    assert hosts["pool-b-3"]["exit_code"] == 3 and "no-such-tag" in hosts["pool-b-3"]["message"]
    assert rc == report["exit_code"] == 13 and report["exit_name"] == "not_all_ready"
    print(f"fleet of 6 with 3 broken hosts: {elapsed:.0f}s")

    # the terminal summary lists both kinds, one line each (plus a hint line for failures)
    proc = subprocess.run([WAA_RUN, "probe", "-i", str(fleet.inventory), "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 13
    for name in ("pool-a-1", "pool-a-2", "pool-a-3"):
        assert any(line.startswith(name) and " ready " in line for line in proc.stdout.splitlines())
    assert any(line.startswith("pool-b-2") and "waa_server" in line for line in proc.stdout.splitlines())


def test_limit_to_a_pool_and_a_second_up_changes_nothing(fleet, tmp_path):
    rc, report, _ = waa_run("up", "-i", str(fleet.inventory), "-l", "waa_pool_a", "--state-dir", str(tmp_path))
    assert rc == 0 and set(report["hosts"]) == {"pool-a-1", "pool-a-2", "pool-a-3"}
    assert all(host["changed"] == 0 for host in report["hosts"].values())


def test_max_fail_percentage_stops_early(fleet, tmp_path):
    rc, report, _ = waa_run("vm-setup", "-i", str(fleet.inventory), "-l", "waa_pool_b", "--state-dir", str(tmp_path),
                            "-e", "waa_strategy=linear", "-e", "waa_max_fail_percentage=10")
    assert rc != 0
    tasks = {name: [s["task"] for s in host["steps"]] for name, host in report["hosts"].items()}
    # pool-b-1 fails its preflight; with linear strategy and 10% the play stops for every host there,
    # so no host of the pool gets as far as pulling the image or creating the container
    assert all(not any(t.startswith(("Ensure the container runs", "Start the pull")) for t in host_tasks)
               for host_tasks in tasks.values()), tasks


def test_a_host_lost_mid_run_is_unreachable_not_a_crash(fleet, tmp_path):
    victim = fleet.host("pool-a-3")
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps({"waa_container_env": {**FAST_EMULATOR, "WAA_EMU_SERVER_S": 60},
                                "waa_health_timeout": 120}))
    docker("exec", victim.container, "docker", "rm", "-f", "winarena")
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(zip(("rc", "report", "err"), waa_run(
        "up", "-i", str(fleet.inventory), "-l", "pool-a-3,pool-a-1", "-e", f"@{slow}", "--state-dir", str(tmp_path)))))
    runner.start()
    poll_until(lambda: docker("exec", victim.container, "docker", "ps", "-q", "--filter", "name=winarena",
                              check=False).stdout.strip(), deadline_s=120, what="the victim's container starts")
    docker("kill", victim.container)  # the VM vanishes: no orderly shutdown of its services
    runner.join(timeout=400)
    hosts = result["report"]["hosts"]
    assert hosts["pool-a-3"]["status"] == "unreachable" and hosts["pool-a-3"]["exit_code"] == 10
    assert hosts["pool-a-1"]["status"] == "ready"
    assert result["rc"] == 10
