"""Waiting: backoff and deadline arithmetic with a fake clock (no real sleeping), the circuit
breaker's closed/open/half-open cycle persisted across instances, and the module's interface."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import Deadline, layer_result
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_wait import (
    CLOSED, HALF_OPEN, OPEN, Backoff, Breaker, probe,
)

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedProber:
    """Unhealthy (recoverable, vm_boot) until `ready_at` on the fake clock."""

    def __init__(self, clock: Clock, ready_at: float = float("inf"), failure_class: str = codes.RECOVERABLE):
        self.clock = clock
        self.ready_at = ready_at
        self.failure_class = failure_class
        self.calls = 0

    def evaluate(self, layers, deadline, attempt=1):
        self.calls += 1
        if self.clock() >= self.ready_at:
            return [layer_result(name, True, "ok", attempts=attempt) for name in layers]
        return [layer_result("vm_boot", False, "booting", failure_class=self.failure_class, hint="wait",
                             attempts=attempt)]


LAYERS = ["vm_boot"]


def test_backoff_grows_by_factor_with_jitter_and_cap():
    delays = Backoff(0.25, 2.0, 1.0, jitter=0.0)
    assert [delays.next() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    jittered = Backoff(1.0, 1.0, 1.0, jitter=0.2, rng=lambda: 1.0)
    assert jittered.next() == pytest.approx(0.8)


def test_deadline_bounds_every_request_timeout():
    clock = Clock()
    deadline = Deadline(10, clock)
    assert deadline.timeout(5) == 5
    clock.now = 8
    assert deadline.timeout(5) == 2
    clock.now = 11
    assert deadline.expired() and deadline.timeout(5) == 0.05


def test_wait_notices_readiness_soon_after_it_happens():
    clock = Clock()
    prober = ScriptedProber(clock, ready_at=3.0)
    report = probe(prober, LAYERS, wait=True, timeout=60, backoff=Backoff(0.25, 1.6, 5, 0), clock=clock,
                   sleep=clock.sleep)
    assert report["ready"]
    assert clock.now - 3.0 < 1.7, "noticed within one backoff step of becoming ready"


def test_wait_never_sleeps_past_the_deadline_and_says_it_timed_out():
    clock = Clock()
    report = probe(ScriptedProber(clock), LAYERS, wait=True, timeout=10, backoff=Backoff(1, 2, 8, 0), clock=clock,
                   sleep=clock.sleep)
    assert not report["ready"] and clock.now == pytest.approx(10)
    assert report["message"].startswith("vm_boot: not ready after 10s")
    assert report["exit_code"] == codes.VM_BOOT


def test_permanent_failure_stops_the_wait_at_once():
    clock = Clock()
    prober = ScriptedProber(clock, failure_class=codes.PERMANENT)
    report = probe(prober, LAYERS, wait=True, timeout=600, clock=clock, sleep=clock.sleep)
    assert prober.calls == 1 and clock.sleeps == [] and report["failure_class"] == codes.PERMANENT


def test_breaker_opens_after_threshold_failed_waits_then_half_opens_and_closes(tmp_path):
    clock = Clock()
    wall = {"t": 1_000_000.0}

    def breaker():
        return Breaker("winarena", threshold=2, reset_s=300, state_dir=str(tmp_path), now=lambda: wall["t"])

    def wait(prober):
        return probe(prober, LAYERS, wait=True, timeout=5, breaker=breaker(), clock=clock, sleep=clock.sleep,
                     backoff=Backoff(1, 1, 1, 0))

    failing = ScriptedProber(clock)
    assert wait(failing)["breaker"]["state"] == CLOSED
    second = wait(failing)
    assert second["breaker"]["state"] == OPEN
    # open: the next probe fails at once, without touching the host
    calls_before = failing.calls
    report = wait(failing)
    assert failing.calls == calls_before
    assert report["exit_code"] == codes.CIRCUIT_OPEN and report["failed_layer"] == "circuit_breaker"
    assert "circuit open until" in report["message"] and "after 2 failed waits" in report["message"]
    # force goes through (and a failure keeps it open)
    assert probe(failing, LAYERS, wait=False, breaker=breaker(), force=True, clock=clock)["exit_code"] == codes.VM_BOOT
    # after the reset time it is half-open: one wait may close it
    wall["t"] += 301
    assert breaker().state == HALF_OPEN
    healthy = ScriptedProber(clock, ready_at=0)
    report = wait(healthy)
    assert report["ready"] and report["breaker"]["state"] == CLOSED and report["breaker"]["consecutive_failures"] == 0


def test_breaker_half_open_failure_reopens(tmp_path):
    wall = {"t": 0.0}
    breaker = Breaker("w", threshold=1, reset_s=10, state_dir=str(tmp_path), now=lambda: wall["t"])
    breaker.record(False)
    breaker.save()
    wall["t"] = 11
    again = Breaker("w", threshold=1, reset_s=10, state_dir=str(tmp_path), now=lambda: wall["t"])
    assert again.state == HALF_OPEN
    again.record(False)
    assert again.state == OPEN


def test_single_probes_and_check_mode_leave_the_breaker_alone(tmp_path):
    clock = Clock()
    brk = Breaker("w", threshold=1, reset_s=10, state_dir=str(tmp_path))
    probe(ScriptedProber(clock), LAYERS, wait=False, breaker=brk, clock=clock)
    probe(ScriptedProber(clock), LAYERS, wait=True, timeout=1, breaker=brk, persist=False, clock=clock,
          sleep=clock.sleep)
    assert not Path(brk.path).exists()


def ansible_module(args: dict, *extra: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "openadapt.waa.waa_health_probe",
         "-a", json.dumps(args), "-o", *extra], cwd=REPO, capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads(proc.stdout.split("=>", 1)[1])


def test_module_reports_the_layer_code_and_hint_in_one_line(tmp_path):
    rc, result = ansible_module({"docker_host": str(tmp_path / "none.sock"), "breaker_state_dir": str(tmp_path)})
    assert rc != 0 and result["changed"] is False and result["ready"] is False
    assert result["exit_code"] == codes.DOCKER_DAEMON and result["failed_layer"] == "docker_daemon"
    assert result["msg"].startswith("docker_daemon: the Docker engine does not answer") and "(hint: " in result["msg"]
    assert "\n" not in result["msg"]


def test_module_only_reports_when_told_and_runs_in_check_mode(tmp_path):
    rc, result = ansible_module({"docker_host": str(tmp_path / "none.sock"), "fail_on_unhealthy": False,
                                 "wait": True, "timeout": 1, "breaker_state_dir": str(tmp_path)}, "--check")
    assert rc == 0 and result["ready"] is False and result["exit_code"] == codes.DOCKER_DAEMON
    assert not list(tmp_path.glob("breaker-*")), "check mode writes no breaker state"


def test_module_refuses_bad_arguments_by_name(tmp_path):
    rc, result = ansible_module({"layers": ["vm_boot", "bogus"]})
    assert rc != 0 and "bogus" in result["msg"] and "layers" in result["msg"]
    rc, result = ansible_module({"timeout": -1})
    assert rc != 0 and "timeout must be greater than 0" in result["msg"]


def test_ansible_doc_renders_every_module():
    for module in ("waa_health_probe", "waa_preflight", "waa_image", "waa_image_progress"):
        proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "module", f"openadapt.waa.{module}"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "EXAMPLES" in proc.stdout and "RETURN VALUES" in proc.stdout
