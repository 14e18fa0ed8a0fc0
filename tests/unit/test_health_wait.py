"""Waiting: backoff and deadline arithmetic with a fake clock (no real sleeping), and the circuit
breaker's closed/open/half-open cycle persisted across instances."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import (
    Deadline, DeadlineReached, layer_result, layers_to_run,
)
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_wait import (
    CLOSED, DISABLED, HALF_OPEN, OPEN, Backoff, Breaker, default_state_dir, probe,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedProber:
    """vm_boot unhealthy until `ready_at` on the fake clock; each evaluation costs `cost` seconds."""

    def __init__(self, clock: Clock, ready_at: float = float("inf"), failure_class: str = codes.RECOVERABLE,
                 cost: float = 0.0):
        self.clock = clock
        self.ready_at = ready_at
        self.failure_class = failure_class
        self.cost = cost
        self.calls = 0

    def evaluate(self, layers, deadline, attempt=1):
        self.calls += 1
        self.clock.now += min(self.cost, deadline.remaining())
        healthy = [layer_result(name, True, "ok", attempts=attempt) for name in layers_to_run(layers)]
        if self.clock() >= self.ready_at:
            return healthy
        return healthy[:2] + [layer_result("vm_boot", False, "booting", failure_class=self.failure_class,
                                           hint="wait", attempts=attempt)]


LAYERS = ["vm_boot"]


def wait(prober, clock, **kw):
    kw.setdefault("backoff", Backoff(0.25, 1.6, 1.0, 0))
    return probe(prober, LAYERS, wait=True, clock=clock, sleep=clock.sleep, **kw)


# -- backoff and deadline ---------------------------------------------------------------------------
def test_backoff_grows_by_factor_with_jitter_and_cap():
    delays = Backoff(0.25, 2.0, 1.0, jitter=0.0)
    assert [delays.next() for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert Backoff(1.0, 1.0, 1.0, jitter=0.2, rng=lambda: 1.0).next() == pytest.approx(0.8)
    assert Backoff(1.0, 1.0, 1.0, jitter=0.2, rng=lambda: 0.0).next() == pytest.approx(1.0)
    for bad in ({"initial": 0}, {"factor": 0.5}, {"jitter": 1.0}, {"maximum": -1}):
        with pytest.raises(ValueError):
            Backoff(**bad)


def test_deadline_bounds_every_request_timeout():
    clock = Clock()
    deadline = Deadline(10, clock)
    assert deadline.timeout(5) == 5
    clock.now = 8
    assert deadline.timeout(5) == 2
    clock.now = 9.5
    assert deadline.floor(5) == 1.0 and deadline.floor(0.3) == 0.3
    with pytest.raises(DeadlineReached, match="the deadline ended before the screen could be checked"):
        deadline.timeout(5, "the screen")  # 0.5 s left: less than the 1 s floor, not made
    assert deadline.timeout(0.3) == 0.3
    clock.now = 11
    with pytest.raises(DeadlineReached):
        deadline.timeout(5)
    assert Deadline(0.6, clock).floor(30) == 0.15, "a short deadline has a proportionally short floor"


def test_wait_notices_readiness_within_one_capped_step():
    clock = Clock()
    report = wait(ScriptedProber(clock, ready_at=3.0), clock, timeout=60)
    assert report["ready"] and report["exit_code"] == 0
    assert clock.sleeps[:4] == pytest.approx([0.25, 0.4, 0.64, 1.0])
    assert clock.now - 3.0 <= 1.0, "noticed within one backoff cap of becoming ready"


def test_wait_never_sleeps_past_the_deadline_and_says_it_timed_out():
    clock = Clock()
    prober = ScriptedProber(clock, cost=0.3)
    report = wait(prober, clock, timeout=10, backoff=Backoff(1, 2, 8, 0))
    assert not report["ready"] and clock.now == pytest.approx(10)
    assert all(s <= 8 for s in clock.sleeps) and clock.sleeps[-1] < 8, "the last sleep is cut at the deadline"
    assert report["message"] == "vm_boot: timed out after 10 s: booting" and report["timed_out"] is True
    assert report["exit_code"] == codes.VM_BOOT and report["attempts"] == prober.calls
    assert report["layers"][-1]["layer"] == "vm_boot", "the report is the last evaluation"


def test_jittered_wait_stays_inside_the_deadline():
    clock = Clock()
    rng = iter([0.9, 0.1] * 1000)
    report = wait(ScriptedProber(clock), clock, timeout=7.5, backoff=Backoff(0.5, 1.6, 2, 0.5, rng=lambda: next(rng)))
    assert clock.now == pytest.approx(7.5) and report["timed_out"]


def test_permanent_failure_stops_the_wait_at_once():
    clock = Clock()
    prober = ScriptedProber(clock, failure_class=codes.PERMANENT)
    report = wait(prober, clock, timeout=600)
    assert prober.calls == 1 and clock.sleeps == [] and report["failure_class"] == codes.PERMANENT
    assert report["timed_out"] is False


def test_a_single_probe_evaluates_once():
    clock = Clock()
    prober = ScriptedProber(clock)
    report = probe(prober, LAYERS, wait=False, clock=clock, sleep=clock.sleep)
    assert prober.calls == 1 and not report["ready"] and report["message"] == "vm_boot: booting"


# -- circuit breaker -------------------------------------------------------------------------------
class Wall:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def test_breaker_closed_open_half_open_closed_across_instances(tmp_path):
    clock, wall = Clock(), Wall()

    def breaker():  # a new instance each time: the state lives in the file
        return Breaker("winarena", threshold=2, reset_s=300, state_dir=str(tmp_path), now=wall)

    failing = ScriptedProber(clock)
    first = wait(failing, clock, timeout=2, breaker=breaker())
    assert first["breaker"]["state"] == CLOSED and first["breaker"]["consecutive_failures"] == 1
    # single probes are not waits: they never count
    probe(failing, LAYERS, wait=False, breaker=breaker(), clock=clock)
    assert breaker().describe()["consecutive_failures"] == 1
    second = wait(failing, clock, timeout=2, breaker=breaker())
    assert second["breaker"]["state"] == OPEN and second["exit_code"] == codes.VM_BOOT
    assert second["breaker"]["open_until"] == "1970-01-12T13:51:40Z"
    # open: the next probe fails at once, without touching the host
    calls = failing.calls
    report = wait(failing, clock, timeout=600, breaker=breaker())
    assert failing.calls == calls and report["duration_s"] == 0
    assert (report["exit_code"], report["failed_layer"], report["ready"]) == (codes.CIRCUIT_OPEN, "circuit_breaker", False)
    assert report["message"] == "circuit_breaker: circuit open until 1970-01-12T13:51:40Z after 2 failed waits"
    assert report["hint"] == codes.EXIT_CODES[codes.CIRCUIT_OPEN].hint and report["layers"] == []
    # force goes through; a forced failure keeps it open
    forced = probe(failing, LAYERS, wait=False, breaker=breaker(), force=True, clock=clock)
    assert forced["exit_code"] == codes.VM_BOOT and breaker().state == OPEN
    # after the reset time it is half-open: one wait runs; its failure re-opens the breaker
    wall.t += 301
    assert breaker().state == HALF_OPEN
    assert wait(failing, clock, timeout=2, breaker=breaker())["breaker"]["state"] == OPEN
    wall.t += 301
    healthy = ScriptedProber(clock, ready_at=0)
    report = wait(healthy, clock, timeout=2, breaker=breaker())
    assert report["ready"] and report["breaker"]["state"] == CLOSED and report["breaker"]["consecutive_failures"] == 0
    assert json.loads(Path(breaker().path).read_text()) == {"consecutive_failures": 0, "open_until": None}


def test_a_forced_success_closes_an_open_breaker(tmp_path):
    clock, wall = Clock(), Wall()
    brk = Breaker("w", threshold=1, reset_s=600, state_dir=str(tmp_path), now=wall)
    wait(ScriptedProber(clock), clock, timeout=1, breaker=brk)
    assert Breaker("w", threshold=1, state_dir=str(tmp_path), now=wall).state == OPEN
    report = probe(ScriptedProber(clock, ready_at=0), LAYERS, breaker=brk, force=True, clock=clock)
    assert report["ready"] and Breaker("w", threshold=1, state_dir=str(tmp_path), now=wall).state == CLOSED


def test_check_mode_and_report_only_leave_the_breaker_file_alone(tmp_path):
    clock = Clock()
    brk = Breaker("w", threshold=1, reset_s=10, state_dir=str(tmp_path / "state"))
    probe(ScriptedProber(clock), LAYERS, wait=False, breaker=brk, clock=clock)
    wait(ScriptedProber(clock), clock, timeout=1, breaker=brk, persist=False)
    probe(ScriptedProber(clock, ready_at=0), LAYERS, breaker=brk, force=True, persist=False, clock=clock)
    assert not (tmp_path / "state").exists(), "not even the directory is created"


def test_breaker_files_are_per_container_and_survive_garbage(tmp_path):
    a = Breaker("winarena", state_dir=str(tmp_path))
    b = Breaker("other/name", state_dir=str(tmp_path))
    assert a.path != b.path and Path(b.path).name == "breaker-other_name.json"
    Path(a.path).write_text("{not json")
    assert Breaker("winarena", state_dir=str(tmp_path)).state == CLOSED


def test_disabled_breaker_and_unwritable_state(tmp_path):
    clock = Clock()
    off = Breaker("w", threshold=0, state_dir=str(tmp_path))
    report = wait(ScriptedProber(clock), clock, timeout=1, breaker=off)
    assert report["breaker"]["state"] == DISABLED and not list(tmp_path.iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("")
    stuck = Breaker("w", threshold=1, state_dir=str(blocker / "sub"))
    report = wait(ScriptedProber(clock), clock, timeout=1, breaker=stuck)
    assert report["exit_code"] == codes.VM_BOOT and "cannot write" in report["breaker"]["error"]


def test_default_state_dir_prefers_var_lib_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(
        "ansible_collections.openadapt.waa.plugins.module_utils.waa_health_breaker.STATE_DIRS",
        (str(tmp_path / "ro" / "health"), str(tmp_path / "home" / "health")))
    (tmp_path / "ro").mkdir(mode=0o500)
    (tmp_path / "home").mkdir()
    expected = str(tmp_path / ("home" if not _is_root() else "ro") / "health")
    assert default_state_dir() == expected
    assert not (tmp_path / "home" / "health").exists(), "choosing a directory creates nothing"


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


# -- a malformed state file ---------------------------------------------------------------------------
@pytest.mark.parametrize("content,word", [
    ('{"consecutive_failures": 3, "open_until": "2026-12-01T10:00:00Z"}', "open_until is a str"),
    ('{"consecutive_failures": 3, "open_until": [1, 2]}', "open_until is a list"),
    ('{"consecutive_failures": 3, "open_until": true}', "open_until is a bool"),
    ('{"consecutive_failures": "3", "open_until": null}', "consecutive_failures is '3'"),
    ('{"consecutive_failures": -1}', "consecutive_failures is -1"),
    ('[1, 2]', "not a JSON object"),
    ('{not json', "not JSON"),
    ('\xff\xfe', "not JSON"),
])
def test_a_malformed_state_file_is_closed_with_a_warning_and_rewritten(tmp_path, content, word):
    path = tmp_path / "breaker-w.json"
    path.write_bytes(content.encode("latin-1"))
    brk = Breaker("w", threshold=2, state_dir=str(tmp_path))
    assert brk.state == CLOSED and word in brk.warning and str(path) in brk.warning
    assert brk.describe()["warning"] == brk.warning
    clock = Clock()
    report = probe(ScriptedProber(clock, ready_at=0), LAYERS, breaker=brk, clock=clock, persist=False)
    assert path.read_bytes() == content.encode("latin-1"), "check mode never writes"
    report = probe(ScriptedProber(clock, ready_at=0), LAYERS, breaker=brk, clock=clock)
    assert report["ready"] and "malformed" in report["breaker"]["warning"]
    assert json.loads(path.read_text()) == {"consecutive_failures": 0, "open_until": None}
    assert [p.name for p in tmp_path.iterdir()] == ["breaker-w.json"], "no temporary file is left behind"
    again = Breaker("w", threshold=2, state_dir=str(tmp_path))
    assert again.warning is None and again.state == CLOSED


def test_a_valid_open_state_is_kept_as_it_is(tmp_path):
    wall = Wall()
    (tmp_path / "breaker-w.json").write_text(json.dumps({"consecutive_failures": 3, "open_until": wall.t + 60}))
    brk = Breaker("w", threshold=3, state_dir=str(tmp_path), now=wall)
    assert brk.state == OPEN and brk.warning is None
