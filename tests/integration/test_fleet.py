"""A fleet over real SSH (tests/support/fleet.py): every healthy host becomes ready while each
broken one fails with its own layer and exit code, the summary lists both, max_fail_percentage
stops a linear run early, host keys are checked, and a host lost mid-run is reported as
unreachable, not as a crash of the run."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.support.emulator import docker, poll_until
from tests.support.fleet import FAST_EMULATOR, start_fleet

pytestmark = [pytest.mark.docker, pytest.mark.slow]
WAA_RUN = str(Path(sys.executable).parent / "waa-run")
HEALTHY = {"pool-a-1", "pool-a-2", "pool-a-3"}


def waa_run(*args: str, timeout: float = 600) -> tuple[int, dict, str]:
    proc = subprocess.run([WAA_RUN, *args, "--json"], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert proc.stdout.strip(), f"waa-run {args[0]} printed no report (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def ansible_output(report: dict) -> str:
    """ansible-playbook's own output of a run, from its artifacts."""
    return "\n".join(path.read_text(errors="replace") for path in Path(report["artifact_dir"]).glob("artifacts/*/stdout"))


@pytest.fixture(scope="module")
def fleet(docker_engine, tmp_path_factory):
    started = time.monotonic()
    fleet = start_fleet(
        {"waa_pool_a": 3, "waa_pool_b": 3},
        no_kvm={"pool-b-1"},  # preflight: no /dev/kvm
        host_vars={
            # the emulator's WAA server never answers; short waits so the verdict comes quickly
            "pool-b-2": {"waa_container_env": {**FAST_EMULATOR, "WAA_EMU_FAULT": "server_down"},
                         "waa_health_timeout": 20, "waa_health_recovery_timeout": 5},
            # a tag the registry does not have
            "pool-b-3": {"waa_image": "waa-fleet-registry:5000/waa-emulator:no-such-tag",
                         "waa_image_pull_retries": 1},
        },
        directory=tmp_path_factory.mktemp("fleet"))
    print(f"fleet of 6 made in {time.monotonic() - started:.0f}s")
    yield fleet
    fleet.remove()


def test_each_host_has_its_own_host_key_recorded(fleet):
    lines = fleet.known_hosts.read_text().split("\n")
    entries = [line.split() for line in lines if line]
    assert [entry[0] for entry in entries] == [host.address for host in fleet.hosts]
    assert len({entry[2] for entry in entries}) == len(fleet.hosts), "hosts share a host key"
    assert fleet.ssh("pool-a-1", "sudo", "-n", "docker", "info", "--format", "{{.Driver}}").stdout.strip() == "overlay2"


def test_broken_hosts_fail_precisely_and_the_others_become_ready(fleet, tmp_path):
    started = time.monotonic()
    rc, report, _err = waa_run("up", "-i", str(fleet.inventory), "--state-dir", str(tmp_path))
    elapsed = time.monotonic() - started
    hosts = report["hosts"]
    assert set(hosts) == {host.name for host in fleet.hosts}
    assert {name for name, host in hosts.items() if host["status"] == "ready"} == HEALTHY
    assert all(hosts[name]["exit_code"] == 0 for name in HEALTHY)
    assert (hosts["pool-b-1"]["exit_code"], hosts["pool-b-1"]["failed_layer"]) == (1, "nested_virt_check")
    assert "kvm" in hosts["pool-b-1"]["message"] and "Standard_D8ds_v5" in hosts["pool-b-1"]["hint"]
    assert (hosts["pool-b-2"]["exit_code"], hosts["pool-b-2"]["failed_layer"]) == (6, "waa_server")
    assert hosts["pool-b-2"]["hint"]
    assert hosts["pool-b-3"]["exit_code"] == 3 and "no-such-tag" in hosts["pool-b-3"]["message"]
    assert rc == report["exit_code"] == 13 and report["exit_name"] == "not_all_ready"
    print(f"fleet of 6 with 3 broken hosts: {elapsed:.0f}s")

    # the terminal summary lists both kinds, one line each (plus a hint line for failures)
    proc = subprocess.run([WAA_RUN, "probe", "-i", str(fleet.inventory), "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 13
    lines = proc.stdout.splitlines()
    for name in HEALTHY:
        assert any(line.startswith(name) and " ready " in line for line in lines), proc.stdout
    assert any(line.startswith("pool-b-2") and "waa_server" in line for line in lines), proc.stdout
    # probe is read-only: the hosts that never got a container say so (exit 4, "run vm_setup")
    assert all(any(line.startswith(name) and " not_ready " in line for line in lines)
               for name in ("pool-b-1", "pool-b-3")), proc.stdout


def test_a_pool_alone_and_second_runs_change_nothing(fleet, tmp_path):
    for command in ("vm-setup", "up"):
        rc, report, _ = waa_run(command, "-i", str(fleet.inventory), "-l", "waa_pool_a", "--state-dir", str(tmp_path))
        assert rc == 0 and set(report["hosts"]) == HEALTHY, (command, report["summary"])
        assert all(host["status"] == "ready" and host["changed"] == 0 for host in report["hosts"].values()), command


def test_max_fail_percentage_stops_a_linear_run_and_free_ignores_it(fleet, tmp_path):
    # strategy free asked for explicitly: every host goes its own way; Ansible warns that the
    # setting is not supported there, and the other broken hosts still reach their own verdicts.
    rc, report, _ = waa_run("vm-setup", "-i", str(fleet.inventory), "-l", "waa_pool_b", "--state-dir", str(tmp_path),
                            "-e", "waa_strategy=free", "-e", "waa_max_fail_percentage=10")
    codes = {name: host["exit_code"] for name, host in report["hosts"].items()}
    # pool-b-2: the server fails again (6), or its circuit breaker, opened by the first run's
    # recovery, now refuses another restart (11)
    assert (codes["pool-b-1"], codes["pool-b-3"]) == (1, 3) and codes["pool-b-2"] in (6, 11), codes
    assert rc == 13
    output = ansible_output(report)
    assert "max_fail_percentage with the free strategy is not supported" in output

    # waa_max_fail_percentage alone: the playbooks switch to strategy linear, where after the
    # failure that fails on more than 10% of the hosts the play stops for every host: the setup
    # stage's rescue (publish, release the lock, fail again) ends before the container stage
    # starts anywhere, so no host of the pool gets as far as creating or starting a container.
    rc, report, _ = waa_run("vm-setup", "-i", str(fleet.inventory), "-l", "waa_pool_b", "--state-dir", str(tmp_path),
                            "-e", "waa_max_fail_percentage=10")
    hosts = report["hosts"]
    tasks = {name: [step["task"] for step in host["steps"]] for name, host in hosts.items()}
    assert rc != 0 and hosts["pool-b-1"]["exit_code"] == 1
    assert all(host["exit_code"] != 0 for host in hosts.values())
    tasks = {name: [step["task"] for step in host["steps"]] for name, host in hosts.items()}
    assert all(not any(task.startswith(("Ensure the container runs", "Start the container"))
                       for task in host_tasks) for host_tasks in tasks.values()), tasks
    assert "waa_server" not in {host["failed_layer"] for host in hosts.values()}
    output = ansible_output(report)
    assert "NO MORE HOSTS LEFT" in output and "not supported" not in output


def test_a_host_with_an_unexpected_key_is_refused(fleet, tmp_path):
    # known_hosts where pool-a-1's address carries pool-a-2's key: a swapped or impostor host
    known = tmp_path / "known_hosts"
    entries = [line.split() for line in fleet.known_hosts.read_text().splitlines() if line]
    by_address = {entry[0]: entry for entry in entries}
    first, second = fleet.host("pool-a-1").address, fleet.host("pool-a-2").address
    by_address[first] = [first, *by_address[second][1:]]
    known.write_text("\n".join(" ".join(entry) for entry in by_address.values()) + "\n")
    # its own ControlPath: a live master connection would be reused without a new key check
    control = Path(tempfile.mkdtemp(prefix="waa-cp-"))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(fleet.inventory.read_text().replace(str(fleet.known_hosts), str(known))
                         .replace(str(fleet.control_dir), str(control)))
    try:
        rc, report, _ = waa_run("probe", "-i", str(inventory), "-l", "pool-a-1,pool-a-2", "--state-dir", str(tmp_path))
    finally:
        shutil.rmtree(control, ignore_errors=True)
    hosts = report["hosts"]
    assert hosts["pool-a-1"]["status"] == "unreachable" and hosts["pool-a-1"]["exit_code"] == 10, hosts["pool-a-1"]
    assert hosts["pool-a-2"]["status"] == "ready"
    assert rc == 10
    output = ansible_output(report)
    assert "Host key verification failed" in output


def test_a_host_lost_mid_run_is_unreachable_not_a_crash(fleet, tmp_path):
    import waa_runner

    victim = fleet.host("pool-a-3")
    docker("exec", victim.container, "docker", "rm", "-f", "winarena")  # up creates it again: a real boot
    waiting = threading.Event()
    outcome: dict = {}

    def on_event(event) -> None:
        if event.host == victim.name and event.kind == "phase" and event.phase == "waa_health":
            waiting.set()

    def run() -> None:
        try:
            outcome["result"] = waa_runner.up(
                inventory=fleet.inventory, limit="pool-a-3,pool-a-1", state_dir=tmp_path, on_event=on_event,
                extra_vars={"waa_container_env": {**FAST_EMULATOR, "WAA_EMU_SERVER_S": 90}, "waa_health_timeout": 150})
        except BaseException as err:  # the test fails below with this instead of a hang
            outcome["error"] = err

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    assert waiting.wait(timeout=240), "the victim never reached the health wait"
    # the health wait is under way (the emulator's server needs 90 s): the VM vanishes, no orderly shutdown
    def server_wait_logged() -> bool:
        logs = docker("exec", victim.container, "docker", "logs", "winarena", check=False)
        return "Waiting for a response" in logs.stdout + logs.stderr

    poll_until(server_wait_logged, deadline_s=60, what="the emulator's server wait", interval_s=0.5)
    docker("kill", victim.container)
    runner.join(timeout=300)
    assert not runner.is_alive(), "the run did not end after its host vanished"
    assert "error" not in outcome, outcome.get("error")
    report = outcome["result"].to_dict()
    hosts = report["hosts"]
    assert hosts["pool-a-3"]["status"] == "unreachable" and hosts["pool-a-3"]["exit_code"] == 10, hosts["pool-a-3"]
    assert hosts["pool-a-3"]["phase"] == "waa_health"
    assert hosts["pool-a-1"]["status"] == "ready"
    assert report["exit_code"] == 10 and report["exit_name"] == "unreachable"
