"""The waa_health_probe module, run through real ansible, against the emulator on the real engine:
every fault and precondition is named by the right layer, class, exit code and hint, in time."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.emulator import poll_until

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
FAST = {"WAA_EMU_BOOT_S": "1", "WAA_EMU_INSTALL_S": "1", "WAA_EMU_SERVER_S": "1", "WAA_EMU_BLACK_S": "0.5"}


def probe(handle, tmp_path, **args) -> dict:
    params = {"container_name": handle.name, "host": handle.host, "breaker_state_dir": str(tmp_path / "breaker"),
              "request_timeout": 2, **args}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "openadapt.waa.waa_health_probe",
         "-a", json.dumps(params), "-o"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "=>" in proc.stdout, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.split("=>", 1)[1])
    result["_rc"] = proc.returncode
    return result


def wait_ready(handle, tmp_path) -> dict:
    result = probe(handle, tmp_path, wait=True, timeout=60)
    assert result["ready"], result["msg"] if "msg" in result else result
    return result


def test_ready_host_passes_all_layers_within_the_deadline(emulator, tmp_path):
    handle = emulator(env=FAST)
    started = time.monotonic()
    result = wait_ready(handle, tmp_path)
    assert time.monotonic() - started < 60
    assert result["_rc"] == 0 and result["exit_code"] == 0 and result["changed"] is False
    assert [layer["layer"] for layer in result["layers"]] == [
        "docker_daemon", "container", "vm_boot", "waa_server", "accessibility"]
    assert "qmp screendump" in result["layers"][2]["details"]["screen"]


@pytest.mark.parametrize("fault,layer,code,failure_class,hint_word", [
    ("server_down", "waa_server", 6, "recoverable", "restart the container"),
    ("server_hang", "waa_server", 6, "recoverable", "restart the container"),
    ("empty_tree", "accessibility", 7, "transient", "desktop may still be busy"),
    ("black_screen", "vm_boot", 5, "recoverable", "black"),
    ("crash", "container", 4, "recoverable", "server-start"),
])
def test_each_fault_is_named_by_its_layer(emulator, tmp_path, fault, layer, code, failure_class, hint_word):
    handle = emulator(env=FAST)
    wait_ready(handle, tmp_path)
    handle.exec("waa-emu-fault", fault)
    if fault == "crash":
        poll_until(lambda: not handle.inspect()["State"]["Running"], deadline_s=10, what="crash")
    started = time.monotonic()
    result = probe(handle, tmp_path, wait=True, timeout=6)
    elapsed = time.monotonic() - started
    assert result["_rc"] != 0 and result["ready"] is False
    assert (result["failed_layer"], result["exit_code"], result["failure_class"]) == (layer, code, failure_class)
    assert hint_word in result["hint"] and result["msg"].startswith(f"{layer}: ")
    assert elapsed < 6 + 2 + 5, f"the probe outlived its deadline: {elapsed:.1f}s"
    if fault == "crash":
        assert result["layers"][-1]["details"]["exit_code"] != 0
        assert any("QEMU crashed" in line for line in result["layers"][-1]["details"]["last_logs"])


def test_a_hung_server_never_stalls_the_probe_past_its_deadline(emulator, tmp_path):
    handle = emulator(env={**FAST, "WAA_EMU_FAULT": "server_hang"})
    started = time.monotonic()
    result = probe(handle, tmp_path, wait=True, timeout=8, request_timeout=30)
    elapsed = time.monotonic() - started
    assert result["failed_layer"] == "waa_server" and "no answer" in result["message"]
    assert elapsed < 8 + 3, f"{elapsed:.1f}s"


@pytest.mark.parametrize("setup,layer,code,hint_word", [
    ({"kvm": False}, "vm_boot", 1, "nested virtualization"),
    ({"ram_size": "4096G"}, "vm_boot", 1, "lower waa_ram_size"),
    ({"net_admin": False}, "waa_server", 6, "NET_ADMIN"),
])
def test_precondition_failures_fail_fast_with_the_fix(emulator, tmp_path, setup, layer, code, hint_word):
    handle = emulator(env=FAST, **setup)
    started = time.monotonic()
    result = probe(handle, tmp_path, wait=True, timeout=60)
    elapsed = time.monotonic() - started
    assert (result["failed_layer"], result["exit_code"], result["failure_class"]) == (layer, code, "permanent")
    assert hint_word in result["hint"]
    assert elapsed < 30, f"a permanent failure must end the wait early, took {elapsed:.1f}s of 60"


def test_breaker_stops_a_restart_storm(emulator, tmp_path):
    handle = emulator(env={**FAST, "WAA_EMU_FAULT": "server_down"})
    for _ in range(2):
        result = probe(handle, tmp_path, wait=True, timeout=3, breaker_threshold=2, breaker_reset=600)
        assert result["exit_code"] == 6
    assert result["breaker"]["state"] == "open"
    started = time.monotonic()
    result = probe(handle, tmp_path, wait=True, timeout=60, breaker_threshold=2)
    assert time.monotonic() - started < 5
    assert result["exit_code"] == 11 and "circuit open until" in result["msg"]
    handle.exec("waa-emu-fault", "clear")
    result = probe(handle, tmp_path, wait=True, timeout=30, breaker_threshold=2, force=True)
    assert result["ready"] and result["breaker"]["state"] == "closed"
