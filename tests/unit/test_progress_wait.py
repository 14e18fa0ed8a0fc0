"""Deadlines that follow progress: the wait loop's stall and cap logic with a fake clock and
scripted signals (no real sleeping), and the disk signal on a real directory."""
from __future__ import annotations

import os

import pytest

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import layer_result, layers_to_run
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_progress import (
    Progress, human_bytes, scan_storage,
)
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_wait import Backoff, Breaker, probe
from ansible_collections.openadapt.waa.plugins.module_utils.waa_image_pull import PullError, PullProgress, pull_once
from tests.unit.test_health_wait import Clock


class InstallProber:
    """A first boot behind the status page: the step moves every `every` seconds until `stall_at`
    (then nothing changes), and the host is ready at `ready_at`. Evaluations cost nothing."""

    def __init__(self, clock: Clock, every: float = 1.0, stall_at: float = float("inf"),
                 ready_at: float = float("inf"), screen: str | None = None):
        self.clock, self.every, self.stall_at, self.ready_at, self.screen = clock, every, stall_at, ready_at, screen

    def step(self) -> str:
        moving = min(self.clock(), self.stall_at)
        return "Installing Windows (%d%%)" % int(moving // self.every)

    def evaluate(self, layers, deadline, attempt=1):
        healthy = [layer_result(name, True, "ok", attempts=attempt) for name in layers_to_run(layers)]
        if self.clock() >= self.ready_at:
            return healthy
        details = {"step": self.step()} if self.screen is None else {"screen_digest": self.screen}
        return healthy[:2] + [layer_result("vm_boot", False, "still on the boot status page: %s" % self.step(),
                                           failure_class=codes.RECOVERABLE, hint="wait", attempts=attempt,
                                           details=details)]


def wait(prober, clock, **kw):
    kw.setdefault("backoff", Backoff(0.25, 1.6, 1.0, 0))
    return probe(prober, ["vm_boot"], wait=True, clock=clock, sleep=clock.sleep, **kw)


def test_a_stalled_install_ends_stalled_at_the_stall_timeout_not_the_cap():
    clock = Clock()
    report = wait(InstallProber(clock, stall_at=30.5), clock, timeout=2400, stall_timeout=300)
    assert report["ready"] is False and report["timed_out"] is False
    assert report["message"].startswith("vm_boot: stalled at Installing Windows (30%) for 300 s (no progress: ")
    assert "status page 'Installing Windows (30%)'" in report["message"]
    assert (report["exit_code"], report["failure_class"]) == (codes.VM_BOOT, codes.RECOVERABLE)
    assert "stalled" in report["hint"] and "waa_health_stall_timeout" in report["hint"]
    # the last change came at t=30 (the 30% step); the stall is declared 300 s later, not at 2400 s
    assert clock.now == pytest.approx(330, abs=1.0)
    progress = report["progress"]
    assert progress["stalled"] is True and progress["last_progress_s_ago"] >= 300 and progress["changes"] == 30
    assert progress["where"] == "Installing Windows (30%)" and progress["last_change"] == ["status_page"]


def test_a_slow_install_that_keeps_moving_is_never_stalled_and_finishes():
    clock = Clock()
    report = wait(InstallProber(clock, every=100, ready_at=1500), clock, timeout=2400, stall_timeout=300)
    assert report["ready"] is True and clock.now == pytest.approx(1500, abs=1.0)
    assert report["progress"]["stalled"] is False and report["progress"]["changes"] >= 14


def test_the_cap_while_moving_says_still_progressing_with_the_last_change():
    clock = Clock()
    report = wait(InstallProber(clock, every=10), clock, timeout=100, stall_timeout=300)
    assert report["timed_out"] is True and report["progress"]["stalled"] is False
    assert report["message"].startswith("vm_boot: still progressing at the cap (deadline 100 s; last progress ")
    assert "status page 'Installing Windows (10%)'" in report["message"]
    assert report["message"].endswith("): still on the boot status page: Installing Windows (10%)")


def test_a_cap_with_nothing_moving_keeps_the_timed_out_wording():
    clock = Clock()
    report = wait(InstallProber(clock, stall_at=0), clock, timeout=10, stall_timeout=300)
    assert report["message"] == "vm_boot: timed out after 10 s: still on the boot status page: Installing Windows (0%)"
    assert report["progress"]["changes"] == 0 and report["progress"]["stalled"] is False


def test_stall_timeout_zero_turns_the_stall_off():
    clock = Clock()
    report = wait(InstallProber(clock, stall_at=0), clock, timeout=900, stall_timeout=0)
    assert report["timed_out"] is True and clock.now == pytest.approx(900)
    assert report["progress"]["stalled"] is False


def test_the_sleep_is_cut_at_the_stall_deadline():
    clock = Clock()
    wait(InstallProber(clock, stall_at=0), clock, timeout=600, stall_timeout=2.1,
         backoff=Backoff(5, 1, 5, 0))
    assert clock.now == pytest.approx(2.1) and max(clock.sleeps) <= 2.1


def test_a_screen_that_changes_is_progress_and_a_still_one_is_not():
    clock = Clock()
    prober = InstallProber(clock, screen="a")
    progress = Progress(stall_timeout=5, clock=clock)
    results = prober.evaluate(["vm_boot"], None)
    assert progress.observe(results) == []  # the baseline
    assert progress.observe(prober.evaluate(["vm_boot"], None)) == []
    prober.screen = "b"
    assert progress.observe(prober.evaluate(["vm_boot"], None)) == ["screen"]


def test_the_layer_counts_only_when_it_advances():
    clock = Clock()
    progress = Progress(stall_timeout=5, clock=clock)
    up_to = {name: [layer_result(n, True, "ok") for n in layers_to_run([name])[:-1]]
             + [layer_result(name, False, "no", failure_class=codes.RECOVERABLE)]
             for name in ("vm_boot", "waa_server")}
    assert progress.observe(up_to["vm_boot"]) == []
    assert progress.observe(up_to["waa_server"]) == ["layer"]
    assert progress.observe(up_to["vm_boot"]) == []  # back to a lower layer: not progress


def test_a_stalled_wait_counts_for_the_breaker(tmp_path):
    clock = Clock()
    breaker = Breaker("winarena", threshold=1, state_dir=str(tmp_path))
    report = wait(InstallProber(clock, stall_at=0), clock, timeout=600, stall_timeout=5, breaker=breaker)
    assert report["progress"]["stalled"] and report["breaker"]["state"] == "open"


def test_the_disk_signal_grows_with_the_allocated_bytes_and_is_bounded(tmp_path):
    disk = tmp_path / "data.img"
    with open(disk, "wb") as handle:
        handle.truncate(64 << 20)  # sparse: a size, nothing allocated
    first = scan_storage(str(tmp_path))
    assert (first["files"], first["size"]) == (1, 64 << 20) and first["allocated"] < (1 << 20)
    with open(disk, "r+b") as handle:
        handle.seek(32 << 20)
        handle.write(os.urandom(1 << 20))
    second = scan_storage(str(tmp_path))
    assert second["size"] == first["size"] and second["allocated"] >= first["allocated"] + (1 << 20)
    for index in range(300):
        (tmp_path / ("f%03d" % index)).write_bytes(b"")
    assert scan_storage(str(tmp_path))["truncated"] is True
    assert "error" in scan_storage(str(tmp_path / "missing"))
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(3 << 30) == "3.0 GiB"


def test_a_growing_disk_alone_keeps_a_wait_alive(tmp_path):
    clock = Clock()
    disk = tmp_path / "data.img"
    disk.write_bytes(b"")
    prober = InstallProber(clock, stall_at=0)
    grown = []

    def scan(path):
        grown.append(1)
        return {"files": 1, "size": len(grown) * 4096 if clock.now < 20 else 81920, "allocated": 0,
                "mtime_ns": 0, "truncated": False}

    progress = Progress(stall_timeout=5, storage_path=str(tmp_path), clock=clock, scan=scan)
    report = wait(prober, clock, timeout=600, stall_timeout=5, progress=progress)
    assert report["progress"]["stalled"] is True and 20 <= clock.now <= 27
    assert "disk 0 B allocated of 80.0 KiB in 1 file" in report["message"]


def test_a_stalled_pull_says_stalled_at_pull_with_its_bytes():
    clock = Clock()
    progress = PullProgress("img", "img", 1, clock=clock)

    def stuck():
        yield {"status": "Downloading", "id": "a", "progressDetail": {"current": 5, "total": 100}}
        for _ in range(20):
            clock.now += 1
            yield {"status": "Downloading", "id": "a", "progressDetail": {"current": 5, "total": 100}}

    with pytest.raises(PullError) as err:
        pull_once(stuck(), progress, stall_timeout=10, on_progress=lambda s: None)
    assert err.value.stalled and str(err.value).startswith("stalled at pull for 10 s (5 bytes of 100): ")
    data = progress.snapshot(stall_timeout=10, stalled=True)["progress"]
    assert data["stalled"] is True and data["signals"]["bytes_done"] == 5 and data["last_progress_s_ago"] > 10
