"""waa-run and the Python API, as real ansible-runner runs of the real playbooks against this
machine and the emulator on the real engine. Each test has its own container name, loopback
address and storage directory, so it never touches anything it did not create."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import TEST_LABEL, docker, free_loopback_address, poll_until

pytestmark = pytest.mark.docker
WAA_RUN = str(Path(sys.executable).parent / "waa-run")
FAST_ENV = {"WAA_EMU_BOOT_S": 1, "WAA_EMU_INSTALL_S": 1, "WAA_EMU_SERVER_S": 1, "WAA_EMU_BLACK_S": 0.5}


@pytest.fixture
def target(tmp_path, emulator_image):
    """Extra vars that give this test its own container, address, storage and state dir."""
    name = f"waa-test-cli-{uuid.uuid4().hex[:6]}"
    vars_file = tmp_path / "vars.json"
    storage = tmp_path / "storage"
    vars_file.write_text(json.dumps({
        "waa_container_name": name, "waa_bind_address": free_loopback_address(),
        "waa_storage_path": str(storage), "waa_ram_size": "1G", "waa_container_env": FAST_ENV,
        "waa_health_timeout": 60, "waa_health_recovery_timeout": 30,
        "waa_health_breaker_threshold": 0}))
    info = {"name": name, "vars": vars_file, "storage": storage, "state": tmp_path / "state"}
    yield info
    docker("rm", "-f", "-v", name, check=False)


def waa_run(target, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [WAA_RUN, *args]
    if args and args[0] not in ("emulator", "--help"):
        argv += ["--local", "--emulator", "-e", f"@{target['vars']}", "--state-dir", str(target["state"])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def report(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def test_up_from_nothing_then_again_changes_nothing(target):
    started = time.monotonic()
    first = waa_run(target, "up", "--json")
    first_s = time.monotonic() - started
    data = report(first)
    assert first.returncode == 0 and data["ok"] and data["exit_code"] == 0, first.stdout + first.stderr
    host = data["hosts"]["localhost"]
    assert host["status"] == "ready" and [l["layer"] for l in host["layers"]] == [
        "docker_daemon", "container", "vm_boot", "waa_server", "accessibility"]
    assert host["changed"] >= 1 and {s["role"] for s in host["steps"]} >= {
        "nested_virt_check", "docker_daemon", "winarena_image", "winarena_container", "waa_health"}
    assert data["schema_version"] == 1 and "artifact_dir" in data
    inspect = json.loads(docker("inspect", target["name"]).stdout)[0]
    assert inspect["HostConfig"]["Privileged"] is False
    assert all(b["HostIp"].startswith("127.") for p in inspect["HostConfig"]["PortBindings"].values() for b in p)

    started = time.monotonic()
    second = waa_run(target, "up", "--json")
    second_s = time.monotonic() - started
    data = report(second)
    assert second.returncode == 0 and data["hosts"]["localhost"]["changed"] == 0
    assert second_s < first_s + 5  # measured properly by benchmarks/up_latency.py


def test_server_start_after_a_stop_and_down_then_up_keeps_storage(target):
    assert waa_run(target, "up").returncode == 0
    marker = target["storage"] / "data.img"
    with open(marker, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"keep-me")
    down = waa_run(target, "down", "--json")
    assert down.returncode == 0 and report(down)["hosts"]["localhost"]["status"] == "done"
    assert json.loads(docker("inspect", target["name"]).stdout)[0]["State"]["Running"] is False
    start = waa_run(target, "server-start", "--json")
    assert start.returncode == 0 and report(start)["hosts"]["localhost"]["status"] == "ready"
    assert waa_run(target, "down", "--remove").returncode == 0
    assert docker("inspect", target["name"], check=False).returncode != 0
    up = waa_run(target, "up", "--json")
    assert up.returncode == 0
    with open(marker, "rb") as handle:
        handle.seek(4096)
        assert handle.read(7) == b"keep-me"
    assert "installing" not in docker("logs", target["name"]).stdout


def test_server_start_without_a_container_says_run_vm_setup(target):
    proc = waa_run(target, "server-start", "--json")
    data = report(proc)
    assert proc.returncode == 4 and data["hosts"]["localhost"]["exit_code"] == 4
    assert "run vm_setup" in data["hosts"]["localhost"]["message"]


def test_probe_names_the_fault_with_code_and_hint_in_plain_lines(target):
    assert waa_run(target, "up").returncode == 0
    docker("exec", target["name"], "waa-emu-fault", "server_down")
    proc = waa_run(target, "probe")
    assert proc.returncode == 6
    assert "localhost" in proc.stdout and "waa_server" in proc.stdout and "hint: restart the container" in proc.stdout
    assert "\x1b[" not in proc.stderr, "not a terminal: plain lines, no redraws"
    assert "localhost: waa_health" in proc.stderr
    assert "run artifacts:" in proc.stdout
    docker("exec", target["name"], "waa-emu-fault", "clear")
    assert waa_run(target, "probe").returncode == 0


def test_up_recovers_a_hung_server_once_by_restarting(target):
    assert waa_run(target, "up").returncode == 0
    docker("exec", target["name"], "waa-emu-fault", "server_down")  # the fault file is lost on restart
    vars_data = json.loads(target["vars"].read_text())
    vars_data["waa_health_timeout"] = 4
    target["vars"].write_text(json.dumps(vars_data))
    proc = waa_run(target, "up", "--json")
    data = report(proc)
    assert proc.returncode == 0, proc.stdout
    tasks = [s["task"] for s in data["hosts"]["localhost"]["steps"]]
    assert any("Restart the container once" in t for t in tasks)


@pytest.mark.parametrize("args,needle", [
    (["up", "--forks", "0"], "forks"),
    (["up", "--timeout", "-5"], "greater than 0"),
    (["up", "-i", "/nonexistent/inventory.yml"], "/nonexistent/inventory.yml"),
    (["up", "-e", "novalue"], "KEY=VALUE"),
    (["up", "--limit", "   "], "limit"),
    (["explode"], "invalid choice"),
])
def test_bad_arguments_exit_64_and_change_nothing(tmp_path, args, needle):
    before = docker("ps", "-aq").stdout
    proc = subprocess.run([WAA_RUN, *args, "--state-dir", str(tmp_path)] if args[0] != "explode" else [WAA_RUN, *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 64, proc.stdout + proc.stderr
    assert needle in proc.stderr
    assert docker("ps", "-aq").stdout == before
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_python_api_returns_typed_results(target):
    import waa_runner
    from waa_runner.results import HostResult, LayerResult, RunResult

    events = []
    result = waa_runner.up(local=True, emulator=True, extra_vars=json.loads(target["vars"].read_text()),
                           state_dir=target["state"], on_event=events.append)
    assert isinstance(result, RunResult) and result.ok and result.exit_code == 0
    host = result.hosts["localhost"]
    assert isinstance(host, HostResult) and host.status == "ready"
    assert all(isinstance(layer, LayerResult) for layer in host.layers) and len(host.layers) == 5
    assert [e.phase for e in events if e.kind == "phase"][:1] == ["validate"]
    assert any(e.kind == "phase" and e.phase == "waa_health" for e in events)
    assert json.loads(json.dumps(result.to_dict()))["hosts"]["localhost"]["status"] == "ready"


def test_secrets_never_reach_the_artifacts(target):
    secret = "s3cr3t-" + uuid.uuid4().hex
    proc = waa_run(target, "up", "-e", f"waa_registry_password={secret}", "-v")
    assert proc.returncode == 0, proc.stdout
    hits = []
    for path in Path(target["state"]).rglob("*"):
        if path.is_file() and secret in path.read_text(errors="replace"):
            hits.append(str(path))
    assert not hits
    assert secret not in proc.stdout + proc.stderr


def test_two_runs_on_the_same_hosts_do_not_race(target):
    argv = [WAA_RUN, "up", "--local", "--emulator", "-e", f"@{target['vars']}", "--state-dir", str(target["state"])]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock_dir = Path(target["state"]) / "locks"
    poll_until(lambda: lock_dir.exists() and any(p.read_text() for p in lock_dir.iterdir()), deadline_s=60,
               what="the first run holds its lock")
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert second.returncode == 12 and "busy: pid" in second.stderr and "--wait-lock" in second.stderr
    waited = subprocess.run([*argv, "--wait-lock", "120"], capture_output=True, text=True, timeout=300)
    assert waited.returncode == 0
