"""waa-run as users run it: real ansible-runner runs of the real playbooks against this machine
(--local) with the emulator (--emulator) on the real engine.

Each test gives the run its own container name, loopback address, storage directory and state
directory (-e @vars.json, --state-dir), so tests never touch the default `winarena` container on
127.0.0.1 nor each other; every container made is removed at the end (`waa-run down --remove`,
then `docker rm -f`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import docker, free_loopback_address, poll_until
from waa_runner import processes

pytestmark = pytest.mark.docker
WAA_RUN = str(Path(sys.executable).parent / "waa-run")
FAST_ENV = {"WAA_EMU_BOOT_S": 1, "WAA_EMU_INSTALL_S": 1, "WAA_EMU_SERVER_S": 1, "WAA_EMU_BLACK_S": 0.5}
LAYERS = ["docker_daemon", "container", "vm_boot", "waa_server", "accessibility"]


@pytest.fixture
def target(tmp_path, emulator_image):
    """Extra vars that give this test its own container, address, storage and state dir."""
    name = f"waa-test-cli-{uuid.uuid4().hex[:6]}"
    vars_file = tmp_path / "vars.json"
    storage = tmp_path / "storage"
    variables = {"waa_container_name": name, "waa_bind_address": free_loopback_address(),
                 "waa_storage_path": str(storage), "waa_ram_size": "1G", "waa_container_env": FAST_ENV,
                 "waa_health_timeout": 60, "waa_health_recovery_timeout": 30, "waa_health_breaker_threshold": 0}
    vars_file.write_text(json.dumps(variables))
    info = {"name": name, "vars": vars_file, "variables": variables, "storage": storage, "state": tmp_path / "state"}
    yield info
    subprocess.run([WAA_RUN, "down", "--local", "--remove", "-e", f"@{vars_file}", "--state-dir", str(info["state"])],
                   capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    docker("rm", "-f", "-v", name, check=False)


def waa_run(target, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [WAA_RUN, *args, "--local", "-e", f"@{target['vars']}", "--state-dir", str(target["state"])]
    if args[0] in ("up", "vm-setup", "server-start"):
        argv.append("--emulator")
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def report(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def inspect(name: str) -> dict:
    return json.loads(docker("inspect", name).stdout)[0]


def test_up_from_nothing_then_again_changes_nothing(target):
    started = time.monotonic()
    first = waa_run(target, "up", "--json")
    first_s = time.monotonic() - started
    data = report(first)
    assert first.returncode == 0 and data["ok"] and data["exit_code"] == 0, first.stdout + first.stderr
    assert first.stderr == "", "--json into a pipe: the report only, no progress"
    host = data["hosts"]["localhost"]
    assert host["status"] == "ready" and [layer["layer"] for layer in host["layers"]] == LAYERS
    assert all(layer["healthy"] for layer in host["layers"])
    assert host["changed"] >= 1 and {"nested_virt_check", "docker_daemon", "winarena_image", "winarena_container",
                                     "waa_health"} <= {step["role"] for step in host["steps"]}
    assert data["schema_version"] == 1 and Path(data["artifact_dir"], "report.json").is_file()
    container = inspect(target["name"])
    assert container["HostConfig"]["Privileged"] is False
    assert all(b["HostIp"] == target["variables"]["waa_bind_address"]
               for bindings in container["HostConfig"]["PortBindings"].values() for b in bindings)

    started = time.monotonic()
    second = waa_run(target, "up", "--json")
    second_s = time.monotonic() - started
    data = report(second)
    assert second.returncode == 0 and data["hosts"]["localhost"]["status"] == "ready"
    assert data["hosts"]["localhost"]["changed"] == 0, [s for s in data["hosts"]["localhost"]["steps"]
                                                        if s["status"] == "changed"]
    assert inspect(target["name"])["Id"] == container["Id"], "the container was not recreated"
    assert second_s < first_s, (first_s, second_s)  # figures: benchmarks/up_latency.py


def test_probe_names_the_fault_with_code_and_hint_in_plain_lines(target):
    assert waa_run(target, "up").returncode == 0
    docker("exec", target["name"], "waa-emu-fault", "server_down")
    proc = waa_run(target, "probe")
    assert proc.returncode == 6, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("localhost"))
    assert "not_ready" in line and "  6  " in line and "waa_server:" in line and "hint: restart the container" in line
    assert "exit 6 (waa_server)" in proc.stdout and "run artifacts: " in proc.stdout
    assert "\x1b[" not in proc.stderr + proc.stdout, "not a terminal: plain lines, no redraws"
    assert "localhost: phase waa_health" in proc.stderr.splitlines()
    assert any(line.startswith("localhost: not ready: waa_server") for line in proc.stderr.splitlines())
    data = report(waa_run(target, "probe", "--json"))
    assert (data["exit_code"], data["hosts"]["localhost"]["failed_layer"]) == (6, "waa_server")
    assert data["hosts"]["localhost"]["failure_class"] == "recoverable" and data["hosts"]["localhost"]["changed"] == 0
    docker("exec", target["name"], "waa-emu-fault", "clear")
    assert waa_run(target, "probe").returncode == 0


def test_down_then_up_keeps_the_windows_disk(target):
    assert waa_run(target, "up").returncode == 0
    disk = target["storage"] / "data.img"
    with open(disk, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"keep-me")
    down = waa_run(target, "down", "--json")
    data = report(down)
    assert down.returncode == 0 and data["hosts"]["localhost"]["status"] == "stopped", down.stdout
    assert inspect(target["name"])["State"]["Running"] is False
    up = waa_run(target, "up", "--json")
    assert up.returncode == 0 and report(up)["hosts"]["localhost"]["status"] == "ready"
    assert waa_run(target, "down", "--remove").returncode == 0
    assert docker("inspect", target["name"], check=False).returncode != 0
    up = waa_run(target, "up", "--json")
    assert up.returncode == 0, up.stdout
    with open(disk, "rb") as handle:
        handle.seek(4096)
        assert handle.read(7) == b"keep-me"
    assert "installing Windows" not in docker("logs", target["name"]).stdout


def test_server_start_without_a_container_says_run_vm_setup(target):
    proc = waa_run(target, "server-start", "--json")
    data = report(proc)
    host = data["hosts"]["localhost"]
    assert proc.returncode == 4 and (host["exit_code"], host["exit_name"]) == (4, "container")
    assert "does not exist" in host["message"] and "vm_setup" in host["hint"]


def test_up_recovers_a_dead_server_once_by_restarting(target):
    assert waa_run(target, "up").returncode == 0
    docker("exec", target["name"], "waa-emu-fault", "server_down")  # the fault is gone after a restart
    # the deadline bounds the whole wait: a first wait of 18 s leaves 6 s (a quarter) for the restart and boot
    target["vars"].write_text(json.dumps({**target["variables"], "waa_health_timeout": 24}))
    proc = waa_run(target, "up", "--json")
    data = report(proc)
    assert proc.returncode == 0, proc.stdout
    tasks = [step["task"] for step in data["hosts"]["localhost"]["steps"]]
    assert any("restart the container once" in task.lower() for task in tasks), tasks


def test_the_overall_deadline_gives_8_and_leaves_nothing_running(target):
    slow = {**target["variables"], "waa_container_env": {**FAST_ENV, "WAA_EMU_SERVER_S": 300},
            "waa_health_timeout": 600}
    target["vars"].write_text(json.dumps(slow))
    started = time.monotonic()
    proc = waa_run(target, "up", "--json", "--timeout", "45")
    elapsed = time.monotonic() - started
    data = report(proc)
    host = data["hosts"]["localhost"]
    assert proc.returncode == 8 and data["exit_name"] == "deadline" and data["runner_status"] == "timeout", proc.stdout
    assert host["status"] == "unfinished" and "the overall deadline (--timeout) passed while in" in host["message"]
    assert host["phase"] in ("winarena_container", "waa_health")  # the server never answers within 45 s
    assert elapsed < 90
    # ansible's workers (own sessions since ansible-core 2.19) must be stopped too
    run = str(Path(data["artifact_dir"]) / "artifacts" / "run")
    poll_until(lambda: processes.leftovers(run) == [], deadline_s=10, what="ansible's processes to be gone")


@pytest.mark.parametrize("args,needle", [
    (["up", "--forks", "0"], "at least 1"),
    (["up", "--timeout", "-5"], "greater than 0"),
    (["up", "-i", "/nonexistent/inventory.yml"], "/nonexistent/inventory.yml"),
    (["up", "-e", "novalue"], "KEY=VALUE"),
    (["up", "--limit", "a b"], "not a host pattern"),
    (["explode"], "invalid choice"),
])
def test_bad_arguments_exit_64_and_change_nothing(tmp_path, args, needle):
    before = docker("ps", "-aq", "--no-trunc").stdout
    proc = subprocess.run([WAA_RUN, *args, "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 64, proc.stdout + proc.stderr
    assert needle in proc.stderr and proc.stdout == ""
    assert docker("ps", "-aq", "--no-trunc").stdout == before
    assert not (tmp_path / "runs").exists()


def test_a_limit_matching_no_host_is_a_usage_error(target):
    proc = waa_run(target, "probe", "--limit", "no-such-host", "--json")
    assert proc.returncode == 64 and "no host matched" in report(proc)["summary"]


def test_secrets_never_reach_the_artifacts_or_the_output(target, tmp_path):
    secret = "s3cr3t-" + uuid.uuid4().hex
    secrets = tmp_path / "secrets.yml"
    secrets.write_text(f"waa_registry_password: {secret}\n")
    proc = waa_run(target, "up", "-e", f"@{secrets}", "-vvv")
    assert proc.returncode == 0, proc.stdout
    hits = [str(p) for p in Path(target["state"]).rglob("*") if p.is_file() and secret in p.read_text(errors="replace")]
    assert hits == []
    assert secret not in proc.stdout + proc.stderr


def test_two_runs_on_the_same_hosts_do_not_race(target):
    argv = [WAA_RUN, "up", "--local", "--emulator", "-e", f"@{target['vars']}", "--state-dir", str(target["state"])]
    lock_dir = Path(target["state"]) / "locks"  # locks are keyed by host, whatever --state-dir says
    env = {**os.environ, "WAA_LOCK_DIR": str(lock_dir)}
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    poll_until(lambda: lock_dir.exists() and any(p.read_text() for p in lock_dir.iterdir()), deadline_s=60,
               what="the first run holds its lock")
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert second.returncode == 12, second.stdout + second.stderr
    assert f"busy: pid {first.pid} (waa-run up, started " in second.stderr and "--wait-lock" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    poll_until(lambda: any(p.read_text() for p in lock_dir.iterdir()), deadline_s=60, what="the lock again")
    waited = subprocess.run([*argv, "--wait-lock", "240"], capture_output=True, text=True, timeout=300, env=env)
    first.communicate(timeout=300)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "waa-run: waiting up to 240s for pid" in waited.stderr
