#!/usr/bin/env python3
"""Controller CPU of `waa-run watch` per host per cycle, at N watched hosts, over real SSH.

Prints figures and ratios; asserts nothing. Run: .venv/bin/python benchmarks/watch_cost.py
  --sizes 1,5,10        numbers of watched hosts (one fleet of the largest size is made; default 1,5,10)
  --cycles 10           measured cycles per size (after one warm-up cycle that opens the SSH masters)
  --interval 2          the agents' and the watcher's interval, seconds
  --compare-probe       also measure one `waa-run probe` of the largest size (a playbook run per cycle)
Each host is a systemd container reached over SSH on its own loopback address
(tests/support/fleet.py) with the agent installed by playbooks/watch_agent.yml. No WAA container
is brought up: the agent's verdict (container missing) is a document of the same size and kind as
a ready one, and the controller's work - one ssh client per host per cycle through a master
connection, a JSON answer, the ledger and the per-host record - does not depend on it.

CPU counted: the watcher process, its ssh clients (reaped children) and its ssh master connections
(read from /proc while they live). The budget (issue 16) is 50 ms per host per cycle.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.fleet import start_fleet  # noqa: E402
from waa_runner.watch import Watcher, targets_from_inventory  # noqa: E402

BUDGET_MS = 50.0


def install_agents(inventory: Path, ansible_cfg: Path, interval: float) -> float:
    started = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(REPO / "playbooks" / "watch_agent.yml"),
                           "-i", str(inventory), "-e", json.dumps({"waa_agent_interval": interval,
                                                                   "waa_agent_probe_timeout": 5})],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "ANSIBLE_CONFIG": str(ansible_cfg)},
                          stdin=subprocess.DEVNULL, timeout=1200)
    if proc.returncode != 0:
        raise SystemExit(f"watch_agent.yml failed:\n{proc.stdout[-3000:]}")
    return time.perf_counter() - started


def measure(inventory: Path, n: int, cycles: int, interval: float, state: Path) -> dict[str, float]:
    targets = targets_from_inventory(inventory)[:n]
    watcher = Watcher(targets, interval=interval, max_age=10 * interval, state_dir=state / f"n{n}")
    try:
        watcher.cycle()  # opens the masters
        per_cycle = []
        walls = []
        for _ in range(cycles):
            result = watcher.cycle()
            per_cycle.append(result.cpu_per_host_ms)
            walls.append(result.wall_s)
            ready = sum(1 for v in result.hosts.values() if v.source == "agent")
        return {"n": n, "median_ms": statistics.median(per_cycle), "max_ms": max(per_cycle),
                "mean_ms": statistics.mean(per_cycle), "wall_s": statistics.median(walls), "answered": ready}
    finally:
        watcher.close()


def probe_run(inventory: Path, state: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "waa-run"), "probe", "-i", str(inventory), "--state-dir",
                    str(state / "probe"), "--json"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                   timeout=900)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,5,10")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--compare-probe", action="store_true")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    biggest = sizes[-1]
    started = time.perf_counter()
    fleet = start_fleet({"waa_bench": biggest}, deadline_s=120 + 20 * biggest)
    try:
        made = time.perf_counter() - started
        installed = install_agents(fleet.inventory, fleet.ansible_cfg, args.interval)
        print(f"fleet of {biggest} made in {made:.0f}s, agents installed in {installed:.0f}s; "
              f"{os.cpu_count()} CPUs, interval {args.interval:g}s, {args.cycles} cycles per size")
        state = Path(tempfile.mkdtemp(prefix="waa-watch-bench-"))
        rows = [measure(fleet.inventory, n, args.cycles, args.interval, state) for n in sizes]
        print(f"{'N':>4} {'ms CPU/host/cycle (median)':>27} {'max':>7} {'mean':>7} {'cycle wall s':>13} "
              f"{'answered':>9} {'of budget':>10}")
        for row in rows:
            print(f"{row['n']:>4} {row['median_ms']:>27.2f} {row['max_ms']:>7.2f} {row['mean_ms']:>7.2f} "
                  f"{row['wall_s']:>13.2f} {row['answered']:>9.0f} {row['median_ms'] / BUDGET_MS:>9.0%}")
        if len(rows) > 1:
            first, last = rows[0], rows[-1]
            print(f"per-host cost at N={last['n']} / at N={first['n']}: {last['median_ms'] / first['median_ms']:.2f}")
        if args.compare_probe:
            cpu, wall = probe_run(fleet.inventory, state)
            per_host = 1000 * cpu / biggest
            print(f"one `waa-run probe` of {biggest} hosts (a playbook run per cycle): {1000 * cpu:.0f} ms CPU, "
                  f"{per_host:.0f} ms per host, {wall:.1f}s wall; "
                  f"{per_host / rows[-1]['median_ms']:.0f}x the watcher's per-host cost")
    finally:
        fleet.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
