#!/usr/bin/env python3
"""Fleet `up` over SSH for N hosts against the emulator: wall time against the boot time B, cost
per extra host of a no-op `up` and of `probe`, the old tooling's schedule, controller CPU and memory.

Also per size: task results and module calls per host (runner events, benchmarks/ansible_counts.py),
controller CPU per host, the no-op `up` with cold and warm SSH masters, the same playbook with plain
ansible-playbook (the wrapper's overhead), and a plain-Python reference that makes the same five
checks over the same SSH hosts in parallel (benchmarks/ssh_reference.py): our wall time over its.

Prints figures and ratios; asserts nothing. Run: .venv/bin/python benchmarks/fleet_scaling.py
  --sizes 1,5,10,20     fleet sizes (each fleet is made, measured and removed; default 1,5,10)
  --boot-seconds 20     the emulator's warm boot B, container start to ready (default 20)
  --forks 50            waa-run --forks
Each host is a systemd container with its own Docker engine, reached over SSH on its own loopback
address (tests/support/fleet.py). Per size: vm-setup (engine, pull, create, first boot), a no-op
`up` and a `probe` on the ready fleet, `down`, then the measured `up` from stopped containers.
SSH master connections are closed before every measured run, so each starts cold.

The old tooling handled a pool in batches of 5 hosts, one batch after another; in a batch it
waited for SSH host after host, then slept a fixed 30 s and polled /probe every 5 s. Its time is
computed from this run's own measurements (each host's SSH connect time and its boot timeline from
container start to the emulator's "ready" log line), not slept through.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import ansible_counts, ssh_reference  # noqa: E402
from tests.support.fleet import Fleet, _ssh_options, emulator_timings, start_fleet  # noqa: E402

WAA_RUN = str(Path(sys.executable).parent / "waa-run")
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
READY_LINE = "VM is up and running, and the Windows Arena Server is ready to use!"
OLD_BATCH, OLD_FIRST_SLEEP_S, OLD_EVERY_S = 5, 30.0, 5.0
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class Run:
    wall_s: float
    cpu_s: float  # user + system of every process the run started and reaped (ansible, its workers, ssh)
    peak_rss_mb: float  # the largest sum of RSS over the run's process tree
    rc: int
    ready: int
    report: dict = field(default_factory=dict)


def _process_tree_rss_kb(root: int) -> int:
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(fields[21]) * PAGE_KB
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


def timed_run(argv: list[str], env: dict[str, str] | None = None) -> Run:
    """Run argv to its end: wall time, CPU of its whole reaped tree, peak RSS; the JSON report if it printed one."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            text=True, cwd=REPO, env=env)
    peak = 0
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        peak = max(peak, _process_tree_rss_kb(proc.pid))
        time.sleep(0.25)
    reader.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:
        report = json.loads(out[0])
    except (IndexError, ValueError):
        report = {}
    ready = sum(1 for host in report.get("hosts", {}).values() if host.get("exit_code") == 0)
    return Run(wall, cpu, peak / 1024, proc.returncode, ready, report)


def waa_run(command: str, fleet: Fleet, forks: int, *extra: str) -> Run:
    return timed_run([WAA_RUN, command, "-i", str(fleet.inventory), "--state-dir", str(fleet.directory / "state"),
                      "--forks", str(forks), "--json", *extra])


def plain_playbook(playbook: str, fleet: Fleet, forks: int) -> Run:
    """The same playbook with plain ansible-playbook and the fleet's ansible.cfg (no wrapper)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(fleet.ansible_cfg), "ANSIBLE_FORKS": str(forks)}
    return timed_run([ANSIBLE_PLAYBOOK, str(REPO / "playbooks" / f"{playbook}.yml")], env)


def counts(run: Run) -> tuple[float, float]:
    """(task results, module calls) per host of a waa-run run, from its runner events."""
    artifact_dir = run.report.get("artifact_dir")
    return ansible_counts.per_host(ansible_counts.count(artifact_dir)) if artifact_dir else (0.0, 0.0)


def reference(fleet: Fleet) -> ssh_reference.Reference:
    return ssh_reference.probe_fleet([host.address for host in fleet.hosts], _ssh_options(fleet.key, fleet.known_hosts))


def ssh_connect_s(fleet: Fleet, name: str) -> float:
    started = time.perf_counter()
    fleet.ssh(name, "true")
    return time.perf_counter() - started


def _stamp(text: str) -> float:
    text = text.strip().rstrip("Z")
    head, _, frac = text.partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def boot_timeline(fleet: Fleet, name: str) -> tuple[float, float] | None:
    """(container start, emulator ready) as Unix times, read from the host's inner engine."""
    container = fleet.host(name).container
    inspect = subprocess.run(["docker", "exec", container, "docker", "inspect", "--format", "{{.State.StartedAt}}",
                              "winarena"], capture_output=True, text=True)
    logs = subprocess.run(["docker", "exec", container, "docker", "logs", "-t", "winarena"], capture_output=True,
                          text=True)
    ready = [line.split(" ", 1)[0] for line in (logs.stdout + logs.stderr).splitlines() if READY_LINE in line]
    if inspect.returncode != 0 or not ready:
        return None
    return _stamp(inspect.stdout), _stamp(ready[-1])


def old_detection(ready_after_s: float) -> float:
    """When the old `up` (sleep 30 s, then /probe every 5 s) first saw a server ready after ready_after_s."""
    t = OLD_FIRST_SLEEP_S
    while t < ready_after_s:
        t += OLD_EVERY_S
    return t


def old_schedule(ssh_s: list[float], boot_s: list[float]) -> float:
    """The old tooling's time for the whole pool: batches of 5, SSH waits one after another."""
    now = 0.0
    for first in range(0, len(boot_s), OLD_BATCH):
        clock, done = now, now
        for ssh, boot in zip(ssh_s[first:first + OLD_BATCH], boot_s[first:first + OLD_BATCH]):
            clock += ssh
            done = max(done, clock + old_detection(boot))
        now = done
    return now


def slope(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def machine() -> str:
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GB, Linux {platform.release()}, "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {load} at start")


def measure(size: int, boot: float, forks: int) -> dict:
    groups = {"waa_pool_a": size - size // 2, **({"waa_pool_b": size // 2} if size > 1 else {})}
    started = time.perf_counter()
    fleet = start_fleet(groups, common_vars={"waa_container_env": emulator_timings(boot),
                                             "waa_health_timeout": int(3 * boot + 300)})
    made = time.perf_counter() - started
    try:
        setup = waa_run("vm-setup", fleet, forks)
        fleet.close_masters()
        noop = waa_run("up", fleet, forks)  # cold: new SSH masters
        noop_warm = waa_run("up", fleet, forks)  # the masters of the run before (ControlPersist)
        fleet.close_masters()
        plain = plain_playbook("up", fleet, forks)
        fleet.close_masters()
        ref = reference(fleet)
        fleet.close_masters()
        probe = waa_run("probe", fleet, forks)
        down = waa_run("down", fleet, forks)
        fleet.close_masters()
        run_started = time.time()
        up = waa_run("up", fleet, forks)
        timelines = {host.name: boot_timeline(fleet, host.name) for host in fleet.hosts}
        counted = {name: counts(run) for name, run in (("noop", noop), ("probe", probe), ("up", up), ("setup", setup))}
        fleet.close_masters()
        ssh = [ssh_connect_s(fleet, host.name) for host in fleet.hosts]
    finally:
        fleet.remove()
    boots = [ready - start for start, ready in filter(None, timelines.values())]
    first_start = min((start for start, _ in filter(None, timelines.values())), default=run_started) - run_started
    last_ready = max((ready for _, ready in filter(None, timelines.values())), default=run_started) - run_started
    return {"size": size, "made_s": made, "setup": setup, "noop": noop, "noop_warm": noop_warm, "plain": plain,
            "ref": ref, "probe": probe, "down": down, "up": up, "counts": counted,
            "boots": boots, "ssh": ssh, "first_start_s": first_start, "last_ready_s": last_ready,
            "old_s": old_schedule(ssh, boots) if len(boots) == size else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,10", help="comma-separated fleet sizes (default 1,5,10)")
    parser.add_argument("--boot-seconds", "--boot", dest="boot", type=float, default=20.0,
                        help="the emulator's warm boot B in seconds (default 20)")
    parser.add_argument("--forks", type=int, default=50)
    args = parser.parse_args()
    sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    print(f"machine: {machine()}", flush=True)
    rows = []
    for size in sizes:
        try:
            row = measure(size, args.boot, args.forks)
        except Exception as err:  # a fleet that could not be made (a loaded machine): report the others
            print(f"N={size}: not measured: {err}", flush=True)
            continue
        rows.append(row)
        up = row["up"]
        print(f"N={size}: made in {row['made_s']:.0f}s; vm-setup {row['setup'].wall_s:.0f}s "
              f"({row['setup'].ready}/{size} ready); up from stopped {up.wall_s:.1f}s ({up.ready}/{size} ready, "
              f"rc {up.rc}); boots {min(row['boots'], default=0):.1f}-{max(row['boots'], default=0):.1f}s; "
              f"first container start {row['first_start_s']:.1f}s, last ready {row['last_ready_s']:.1f}s "
              f"into the run", flush=True)

    boot = args.boot
    print(f"\n== fleet `up` from stopped containers over SSH, emulator warm boot B = {boot:.0f} s")
    print(f"{'N':>3} {'up':>7} {'up-B':>6} {'up/B':>5} {'old':>7} {'old/up':>6} {'no-op up':>8} {'probe':>6} "
          f"{'down':>6} {'CPU s/host':>10} {'ctl RSS MB':>10} {'vm-setup':>8} {'ready':>6}")
    for row in rows:
        up, size = row["up"], row["size"]
        old = f"{row['old_s']:>6.0f}s {row['old_s'] / up.wall_s:>5.1f}x" if row["old_s"] else f"{'-':>7} {'-':>6}"
        print(f"{size:>3} {up.wall_s:>6.1f}s {up.wall_s - boot:>5.1f}s {up.wall_s / boot:>5.2f} {old} "
              f"{row['noop'].wall_s:>7.1f}s {row['probe'].wall_s:>5.1f}s {row['down'].wall_s:>5.1f}s "
              f"{up.cpu_s / size:>10.2f} {up.peak_rss_mb:>10.0f} {row['setup'].wall_s:>7.0f}s "
              f"{up.ready:>3}/{size}")
    print("\n== per host: what Ansible did (task results / module calls, from the runner's events) and the "
          "controller's CPU")
    print(f"{'N':>3} {'no-op up':>9} {'probe':>9} {'up stopped':>10} {'vm-setup':>9} {'CPU/host no-op':>14} "
          f"{'CPU/host probe':>14} {'CPU/host up':>11}")
    for row in rows:
        size = row["size"]
        cells = ["%.0f/%.0f" % row["counts"][name] for name in ("noop", "probe", "up", "setup")]
        print(f"{size:>3} {cells[0]:>9} {cells[1]:>9} {cells[2]:>10} {cells[3]:>9} "
              f"{row['noop'].cpu_s / size:>13.2f}s {row['probe'].cpu_s / size:>13.2f}s {row['up'].cpu_s / size:>10.2f}s")
    print("\n== no-op `up` against the plain-Python reference (same five checks, parallel SSH, no Ansible)")
    print(f"{'N':>3} {'no-op cold':>10} {'warm':>6} {'plain a-p':>9} {'waa-run/plain':>13} {'reference':>9} "
          f"{'ref CPU':>7} {'ours/ref':>8} {'ref ready':>9}")
    for row in rows:
        size, ref = row["size"], row["ref"]
        print(f"{size:>3} {row['noop'].wall_s:>9.1f}s {row['noop_warm'].wall_s:>5.1f}s {row['plain'].wall_s:>8.1f}s "
              f"{row['noop'].wall_s / row['plain'].wall_s:>12.2f}x {ref.wall_s:>8.2f}s {ref.cpu_s:>6.2f}s "
              f"{row['noop'].wall_s / ref.wall_s:>7.1f}x {ref.ready:>5}/{size}")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"no-op up T{last['size']}/T{first['size']}: {last['noop'].wall_s / first['noop'].wall_s:.2f} (cold), "
              f"{last['noop_warm'].wall_s / first['noop_warm'].wall_s:.2f} (warm)")
    sizes_f = [float(row["size"]) for row in rows]
    per_host = {name: slope(sizes_f, values) for name, values in {
        "up (s)": [row["up"].wall_s for row in rows],
        "no-op up (s)": [row["noop"].wall_s for row in rows],
        "probe (s)": [row["probe"].wall_s for row in rows],
        "controller CPU per up (s)": [row["up"].cpu_s for row in rows],
        "controller CPU per no-op up (s)": [row["noop"].cpu_s for row in rows],
        "controller CPU per probe (s)": [row["probe"].cpu_s for row in rows],
        "controller peak RSS during up (MB)": [row["up"].peak_rss_mb for row in rows],
        "old schedule (s)": [row["old_s"] or 0.0 for row in rows],
    }.items()}
    if any(value is not None for value in per_host.values()):
        print("cost per extra host (least-squares slope over the sizes): " + ", ".join(
            f"{name} {value:.2f}" for name, value in per_host.items() if value is not None))
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"up from stopped, N={last['size']} vs N={first['size']}: "
              f"{last['up'].wall_s / first['up'].wall_s:.2f}x the time for {last['size'] / first['size']:.0f}x the hosts")
    for row in rows:
        if row["ssh"]:
            print(f"N={row['size']}: SSH connect (cold, one after another as the old tooling did) "
                  f"median {statistics.median(row['ssh']) * 1000:.0f} ms, sum {sum(row['ssh']):.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
