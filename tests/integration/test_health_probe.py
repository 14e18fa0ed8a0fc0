"""The waa_health_probe module, run through real ansible (`ansible -i localhost, -c local`, with
the host's own /usr/bin/python3), against the WAA emulator on the real engine: readiness, every fault and every
precondition is named by the right layer, class, exit code and hint, within its deadline."""
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
LAYERS = ["docker_daemon", "container", "vm_boot", "waa_server", "accessibility"]
# The module runs with the host's own python3, outside any virtualenv: standard library only.
TARGET_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
SLACK_S = 2.0  # what a probe may overrun its deadline by: the last request's teardown, the log fetch


def probe(handle, tmp_path, **args) -> dict:
    params = {"container_name": handle.name, "host": handle.host, "breaker_state_dir": str(tmp_path / "breaker"),
              "request_timeout": 2, **args}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={TARGET_PYTHON}",
         "-m", "openadapt.waa.waa_health_probe", "-a", json.dumps(params), "-o"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "=>" in proc.stdout, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.split("=>", 1)[1])
    result["_rc"] = proc.returncode
    return result


def wait_ready(handle, tmp_path) -> dict:
    result = probe(handle, tmp_path, wait=True, timeout=60)
    assert result["ready"], result.get("msg", result)
    return result


def assert_verdict(result, layer, code, failure_class, hint_word):
    assert result["_rc"] != 0 and result["ready"] is False and result["changed"] is False
    assert (result["failed_layer"], result["exit_code"], result["failure_class"]) == (layer, code, failure_class), \
        result["msg"]
    assert hint_word in result["hint"], result["hint"]
    assert result["msg"].startswith(f"{layer}: ") and result["msg"].endswith(f"(hint: {result['hint']})")
    assert "\n" not in result["msg"]


def test_ready_host_passes_all_layers_within_the_deadline(emulator, tmp_path):
    handle = emulator(env=FAST)
    started = time.monotonic()
    result = wait_ready(handle, tmp_path)
    assert time.monotonic() - started < 60
    assert result["_rc"] == 0 and result["exit_code"] == 0 and result["changed"] is False
    assert [layer["layer"] for layer in result["layers"]] == LAYERS
    assert result["layers"][2]["details"]["screen"].startswith("qmp screendump, 1440x900")
    assert result["breaker"]["state"] == "closed" and result["timed_out"] is False
    once = probe(handle, tmp_path, a11y_backend="uia")
    assert once["ready"] and once["attempts"] == 1 and once["duration_s"] < 5


def test_novnc_behind_the_real_nginx_redirect_is_ready(emulator, tmp_path):
    """The real nginx answers `GET /` on 8006 with a 301; the probe asks for /vnc.html instead."""
    handle = emulator(env={**FAST, "WAA_EMU_NOVNC_REDIRECT": "1"})
    result = wait_ready(handle, tmp_path)
    assert result["layers"][2]["layer"] == "vm_boot" and result["layers"][2]["healthy"]


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
    result = probe(handle, tmp_path, wait=True, timeout=4)
    assert_verdict(result, layer, code, failure_class, hint_word)
    assert result["duration_s"] < 4 + SLACK_S, f"the probe outlived its deadline: {result['duration_s']}s"
    if fault == "crash":  # a stopped container ends the wait at once: waiting will not start it
        assert result["attempts"] == 1 and result["timed_out"] is False
        details = result["layers"][-1]["details"]
        assert details["exit_code"] != 0 and details["running"] is False and details["last_logs"]
    else:
        assert result["timed_out"] is True and result["message"].startswith(f"{layer}: timed out after 4 s: ")


def test_a_hung_server_never_stalls_the_probe_past_its_deadline(emulator, tmp_path):
    handle = emulator(env={**FAST, "WAA_EMU_FAULT": "server_hang"})
    started = time.monotonic()
    result = probe(handle, tmp_path, wait=True, timeout=8, request_timeout=30)
    elapsed = time.monotonic() - started
    assert result["failed_layer"] == "waa_server" and "no answer" in result["message"]
    assert result["duration_s"] < 8 + SLACK_S, result["duration_s"]
    assert elapsed < 8 + SLACK_S + 5, f"{elapsed:.1f}s (ansible's start-up included)"


@pytest.mark.parametrize("setup,layer,code,hint_word", [
    ({"kvm": False, "env": {**FAST, "WAA_EMU_LOG_COLOR": "1"}}, "vm_boot", 1, "nested virtualization"),
    ({"ram_size": "4096G"}, "vm_boot", 1, "lower waa_ram_size"),
    ({"net_admin": False}, "waa_server", 6, "NET_ADMIN"),
])
def test_precondition_failures_fail_fast_with_the_fix(emulator, tmp_path, setup, layer, code, hint_word):
    handle = emulator(**{"env": FAST, **setup})
    result = probe(handle, tmp_path, wait=True, timeout=60)
    assert_verdict(result, layer, code, "permanent", hint_word)
    assert result["duration_s"] < 20, f"a permanent failure must end the wait early, took {result['duration_s']}s of 60"
    assert result["timed_out"] is False and "the container logged: " in result["message"]
    assert "\x1b" not in result["msg"] and result["layers"][-1]["details"]["log_line"] in result["message"]


def test_breaker_stops_a_restart_storm(emulator, tmp_path):
    handle = emulator(env={**FAST, "WAA_EMU_FAULT": "server_down"})
    # Booted first: a screen still black at the deadline is vm_boot's failure (5), not the server's.
    booted = probe(handle, tmp_path, wait=True, timeout=30, layers=["vm_boot"], breaker_threshold=2)
    assert booted["ready"] and booted["breaker"]["consecutive_failures"] == 0, booted["message"]
    for failures in (1, 2):
        result = probe(handle, tmp_path, wait=True, timeout=3, breaker_threshold=2, breaker_reset=600)
        assert result["exit_code"] == 6 and result["breaker"]["consecutive_failures"] == failures
    assert result["breaker"]["state"] == "open"
    result = probe(handle, tmp_path, wait=True, timeout=60, breaker_threshold=2)
    assert result["exit_code"] == 11 and result["failed_layer"] == "circuit_breaker"
    assert result["duration_s"] < 0.5 and result["layers"] == []
    assert result["msg"].startswith("circuit_breaker: circuit open until ") and "after 2 failed waits" in result["msg"]
    handle.exec("waa-emu-fault", "clear")
    result = probe(handle, tmp_path, wait=True, timeout=30, breaker_threshold=2, force=True)
    assert result["ready"] and result["breaker"]["state"] == "closed"
    assert probe(handle, tmp_path, breaker_threshold=2)["ready"], "closed again: probes run"
