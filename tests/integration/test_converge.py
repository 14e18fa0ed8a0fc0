"""`up` converges to what the user declared, and every verdict lands within its deadline.

Through waa-run against emulator hosts of their own (container name, loopback address, storage):
- a changed input (RAM) or a container made by hand without /dev/kvm is recreated by `up`, with
  the Windows disk in /storage kept;
- a server that stays down ends with its own code (6) at about --health-timeout, the bounded
  recovery included, and the message says which deadline ended the wait;
- a crash-looping container is reported (4) within the deadline with its restart count.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import docker, free_loopback_address, start_emulator

pytestmark = pytest.mark.docker
WAA_RUN = str(Path(sys.executable).parent / "waa-run")
FAST_ENV = {"WAA_EMU_BOOT_S": 1, "WAA_EMU_INSTALL_S": 1, "WAA_EMU_SERVER_S": 1, "WAA_EMU_BLACK_S": 0.5}
SLACK_S = 15  # validation, the container look-up and the run's own start, on a loaded 2-core machine


@pytest.fixture
def host(tmp_path, emulator_image):
    name = f"waa-test-conv-{uuid.uuid4().hex[:6]}"
    info = {"name": name, "storage": tmp_path / "storage", "state": tmp_path / "state", "tmp": tmp_path,
            "vars": {"waa_container_name": name, "waa_bind_address": free_loopback_address(),
                     "waa_storage_path": str(tmp_path / "storage"), "waa_ram_size": "1G",
                     "waa_container_env": dict(FAST_ENV), "waa_health_timeout": 90,
                     "waa_health_breaker_threshold": 0}}
    yield info
    docker("rm", "-f", "-v", name, check=False)


def up(host: dict, *args: str, **overrides) -> tuple[subprocess.CompletedProcess, dict, float]:
    vars_file = host["tmp"] / f"vars-{uuid.uuid4().hex[:6]}.json"
    vars_file.write_text(json.dumps({**host["vars"], **overrides}))
    started = time.monotonic()
    proc = subprocess.run([WAA_RUN, "up", "--local", "--emulator", "--json", "-e", f"@{vars_file}",
                           "--state-dir", str(host["state"]), "--wait-lock", "600", *args],
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    assert proc.stdout.strip(), proc.stderr
    return proc, json.loads(proc.stdout)["hosts"]["localhost"], elapsed


def inspect(name: str) -> dict:
    return json.loads(docker("inspect", name).stdout)[0]


def test_a_changed_input_recreates_the_container_and_keeps_the_windows_disk(host):
    first, _, _ = up(host)
    assert first.returncode == 0, first.stdout[-2000:]
    before = inspect(host["name"])
    disk = host["storage"] / "data.img"
    disk_id = (disk.stat().st_ino, disk.stat().st_size)
    second, verdict, _ = up(host, waa_ram_size="2G")
    assert second.returncode == 0, second.stdout[-2000:]
    after = inspect(host["name"])
    assert after["Id"] != before["Id"], "up kept the container with the old RAM"
    assert "RAM_SIZE=2G" in after["Config"]["Env"]
    assert (disk.stat().st_ino, disk.stat().st_size) == disk_id and (host["storage"] / "windows.boot").exists()
    third, verdict, _ = up(host, waa_ram_size="2G")
    assert third.returncode == 0 and verdict["changed"] == 0 and inspect(host["name"])["Id"] == after["Id"]


def test_a_container_made_without_kvm_is_repaired_by_up(host, emulator_image):
    host["storage"].mkdir()
    handle = start_emulator(image=emulator_image, storage_dir=host["storage"], name=host["name"],
                            host=host["vars"]["waa_bind_address"], kvm=False, env=FAST_ENV)
    assert "/dev/kvm" not in [d["PathOnHost"] for d in inspect(handle.name)["HostConfig"].get("Devices") or []]
    proc, verdict, _ = up(host)
    assert proc.returncode == 0, proc.stdout[-2000:]
    devices = [device["PathOnHost"] for device in inspect(host["name"])["HostConfig"]["Devices"]]
    assert "/dev/kvm" in devices and verdict["status"] == "ready"


def test_a_server_that_stays_down_is_exit_6_at_the_health_deadline(host):
    deadline = 20
    proc, verdict, elapsed = up(host, "--health-timeout", str(deadline),
                                waa_container_env={**FAST_ENV, "WAA_EMU_FAULT": "server_down"})
    assert proc.returncode == 6, proc.stdout[-2000:]
    assert (verdict["status"], verdict["failed_layer"]) == ("not_ready", "waa_server")
    assert "waa_health_timeout=20s" in verdict["message"]
    assert elapsed < deadline + SLACK_S, f"the verdict took {elapsed:.1f}s for a {deadline}s deadline"
    print(f"\nserver down: verdict after {elapsed:.1f}s for --health-timeout {deadline}")


def test_a_crash_looping_container_is_reported_with_its_restart_count(host):
    deadline = 30
    proc, verdict, elapsed = up(host, "--health-timeout", str(deadline), waa_container_restart_policy="always",
                                waa_container_env={**FAST_ENV, "WAA_EMU_FAULT": "crash"})
    assert proc.returncode in (4, 5, 6), proc.stdout[-2000:]
    assert elapsed < deadline + SLACK_S, f"the verdict took {elapsed:.1f}s for a {deadline}s deadline"
    state = inspect(host["name"])
    assert state["RestartCount"] >= 1
    print(f"\ncrash loop: exit {proc.returncode} after {elapsed:.1f}s: {verdict['message']}")
