#!/usr/bin/env python3
"""Fleet `up` over SSH for N hosts against the emulator: wall time against the boot time B, cost
per extra host for no-op `up` and `probe`, the old batch-of-5 schedule, and controller CPU/memory.

Prints figures and ratios; asserts nothing. Run: .venv/bin/python benchmarks/fleet_scaling.py
  --sizes 1,5,10   fleet sizes (each is created, measured and removed)
  --boot 20        the emulator's warm boot time B in seconds (start to ready)
The old tooling handled hosts in batches of 5, one batch after another, each with a fixed 30 s
sleep and then /probe every 5 s; its time is computed from the same boot timeline, not slept.
"""
from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.probe_latency import old_schedule_detection  # noqa: E402
from tests.support.fleet import start_fleet  # noqa: E402

WAA_RUN = str(Path(sys.executable).parent / "waa-run")


def run(args: list[str]) -> tuple[float, float, int, int]:
    """(wall s, controller CPU s, peak RSS MB of the largest child, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([WAA_RUN, *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss // 1024, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,10")
    parser.add_argument("--boot", type=float, default=20.0)
    args = parser.parse_args()
    boot = args.boot
    env = {"WAA_EMU_BOOT_S": round(boot * 0.4, 2), "WAA_EMU_INSTALL_S": 1, "WAA_EMU_SERVER_S": round(boot * 0.6, 2),
           "WAA_EMU_BLACK_S": 0}
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        started = time.perf_counter()
        fleet = start_fleet({"waa_pool_a": size}, common_vars={"waa_container_env": env, "waa_health_timeout": 600})
        made = time.perf_counter() - started
        try:
            state = ["--state-dir", str(fleet.directory / "state"), "--forks", "50"]
            inventory = ["-i", str(fleet.inventory)]
            setup = run(["vm-setup", *inventory, *state])
            noop = run(["up", *inventory, *state])
            probe = run(["probe", *inventory, *state])
            run(["down", *inventory, *state])
            up = run(["up", *inventory, *state])
        finally:
            fleet.remove()
        old = math.ceil(size / 5) * old_schedule_detection(boot)
        rows.append((size, made, setup, noop, probe, up, old))
        print(f"N={size}: made in {made:.0f}s, vm-setup {setup[0]:.0f}s (rc {setup[3]}), up from stopped "
              f"{up[0]:.1f}s (rc {up[3]})", flush=True)
    print(f"\n== fleet up over SSH, emulator boot B = {boot:.0f} s (machine: {subprocess.getoutput('nproc')} cores)")
    print(f"{'N':>3} {'up from stopped':>16} {'- B':>7} {'old batches':>12} {'old/new':>8} {'no-op up':>9} "
          f"{'probe':>7} {'CPU s/host':>11} {'peak RSS MB':>12}")
    for size, _made, _setup, noop, probe, up, old in rows:
        print(f"{size:>3} {up[0]:>15.1f}s {up[0] - boot:>6.1f}s {old:>11.0f}s {old / up[0]:>7.1f}x {noop[0]:>8.1f}s "
              f"{probe[0]:>6.1f}s {up[1] / size:>11.2f} {up[2]:>12}")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        extra = last[0] - first[0]
        print(f"cost per extra host: up {(last[5][0] - first[5][0]) / extra:.2f} s, no-op up "
              f"{(last[3][0] - first[3][0]) / extra:.2f} s, probe {(last[4][0] - first[4][0]) / extra:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
