"""Deadlines that follow progress, end to end: the waa_health_probe module through real ansible
against the WAA emulator on the real engine (its install_stall and install_slow faults), and the
winarena_image role against a real registry behind a proxy that stops sending.

A stalled install ends "stalled" long before the cap; a slow install that keeps moving is allowed
to finish although it takes far longer than the stall timeout; a cap reached while the install
still moves says so; a pull whose registry stops sending ends "stalled at pull"."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_health_probe import FAST, TARGET_PYTHON, probe
from tests.integration.test_image_pull import REPOSITORY, forget, registries, registry, run_role  # noqa: F401
from tests.support.emulator import poll_until
from tests.support.registry import StallingProxy

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
STALL_S = 3
CAP_S = 120
SLACK_S = 6.0  # one backoff step, the last attempt's requests, ansible's start-up


def install_percent(handle) -> int | None:
    """The percent the emulated install shows on its status page (None when not installing)."""
    try:
        with urllib.request.urlopen(handle.url("novnc", "/msg.html"), timeout=2) as answer:
            text = answer.read(4096).decode()
    except OSError:
        return None
    found = re.search(r"Installing Windows \((\d+)%\)", text)
    return int(found.group(1)) if found else None


def probe_in_background(handle, tmp_path, **args) -> subprocess.Popen:
    params = {"container_name": handle.name, "host": handle.host, "breaker_state_dir": str(tmp_path / "breaker"),
              "request_timeout": 2, **args}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={TARGET_PYTHON}",
         "-m", "openadapt.waa.waa_health_probe", "-a", json.dumps(params), "-o"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=CAP_S + 60)
    assert "=>" in out, out + err
    result = json.loads(out.split("=>", 1)[1])
    result["_rc"] = proc.returncode
    return result


def test_a_stalled_install_ends_stalled_long_before_the_cap(emulator, tmp_path):
    """The install moves (the page counts up, data.img grows), then stops: the wait ends
    STALL_S seconds later, naming the step, with the disk it saw, far below the 120 s cap."""
    handle = emulator(env={**FAST, "WAA_EMU_FAULT": "install_slow", "WAA_EMU_SLOW_INSTALL_S": "30"})
    proc = probe_in_background(handle, tmp_path, wait=True, timeout=CAP_S, stall_timeout=STALL_S,
                               storage_path=str(handle.storage_dir))
    # 15% of 30 s: ~5.5 s after the start, when the wait (ansible's start-up ~2 s) has seen it move
    percent = poll_until(lambda: (install_percent(handle) or 0) >= 15 and install_percent(handle),
                         deadline_s=30, what="the install at 15%")
    handle.exec("waa-emu-fault", "install_stall")
    stalled_at = time.monotonic()
    result = result_of(proc)
    after_stall = time.monotonic() - stalled_at
    assert result["_rc"] != 0 and result["ready"] is False, result
    assert (result["failed_layer"], result["exit_code"], result["failure_class"]) == ("vm_boot", 5, "recoverable")
    match = re.match(r"vm_boot: stalled at Installing Windows \((\d+)%\) for 3 s \(no progress: disk (.+?) "
                     r"allocated of 64\.0 GiB in 1 file, ", result["message"])
    assert match, result["message"]
    assert int(match.group(1)) >= percent and match.group(2) != "0 B", result["message"]
    assert result["timed_out"] is False and "stalled" in result["hint"]
    progress = result["progress"]
    assert progress["stalled"] is True and progress["last_progress_s_ago"] >= STALL_S and progress["changes"] >= 1, \
        progress
    assert progress["signals"]["disk"]["allocated"] > 0 and progress["signals"]["layer"] == "vm_boot"
    assert result["waa_verdict"]["message"] == result["message"] and result["waa_verdict"]["exit_code"] == 5
    assert after_stall < STALL_S + SLACK_S, f"the stall was noticed {after_stall:.1f}s after it began: {result}"
    assert result["duration_s"] < CAP_S / 3, result["duration_s"]


def test_a_slow_install_that_keeps_moving_is_allowed_to_finish(emulator, tmp_path):
    """A first boot whose install takes 10 s (more than three stall timeouts) but moves all the
    time is waited for: ready, never stalled."""
    handle = emulator(env={**FAST, "WAA_EMU_FAULT": "install_slow", "WAA_EMU_SLOW_INSTALL_S": "10"})
    result = probe(handle, tmp_path, wait=True, timeout=60, stall_timeout=STALL_S, storage_path=str(handle.storage_dir))
    assert result["ready"] is True and result["exit_code"] == 0, result.get("msg")
    assert result["duration_s"] > 10 > 3 * STALL_S, result["duration_s"]
    progress = result["progress"]
    assert progress["stalled"] is False and progress["changes"] >= 10, progress
    assert progress["signals"]["layer"] == "ready" and progress["signals"]["disk"]["files"] == 2  # + windows.boot


def test_a_cap_reached_while_the_install_moves_says_still_progressing(emulator, tmp_path):
    handle = emulator(env={**FAST, "WAA_EMU_FAULT": "install_slow", "WAA_EMU_SLOW_INSTALL_S": "30"})
    result = probe(handle, tmp_path, wait=True, timeout=6, stall_timeout=STALL_S, storage_path=str(handle.storage_dir))
    assert result["ready"] is False and result["failed_layer"] == "vm_boot" and result["exit_code"] == 5
    assert result["message"].startswith("vm_boot: still progressing at the cap (deadline 6 s; last progress "), \
        result["message"]
    assert "Installing Windows (" in result["message"] and result["timed_out"] is True
    assert result["progress"]["stalled"] is False and result["progress"]["last_progress_s_ago"] < STALL_S
    assert result["duration_s"] < 6 + 2.0, result["duration_s"]


def test_a_pull_whose_registry_stops_sending_ends_stalled_at_pull(registry, tmp_path):  # noqa: F811
    stall_timeout = 4
    with StallingProxy(registry.port, stalls=10) as proxy:
        image = f"{proxy.address}/{REPOSITORY}:base"
        forget(image)
        started = time.monotonic()
        run = run_role(tmp_path, waa_image=image, waa_image_stall_timeout=stall_timeout, waa_image_pull_retries=1)
        elapsed = time.monotonic() - started
    forget(image)
    assert run.rc != 0
    final = run.final()
    assert proxy.stalled >= 1
    assert re.search(r"stalled at pull for 4 s \(\d+ bytes of \d+\)", final["msg"]), final["msg"]
    assert final["waa_verdict"]["exit_name"] == "image_pull" and "stalled at pull" in final["waa_verdict"]["message"]
    assert final["pull_progress"]["progress"]["stalled"] is True, final["pull_progress"]
    assert elapsed < 60, f"{elapsed:.0f}s"
