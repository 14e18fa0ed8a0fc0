#!/usr/bin/env python3
"""`waa-run up` on this machine against the emulator: the no-op cost on a ready host, the wrapper's
overhead over plain ansible-playbook, and how soon readiness is noticed after the emulator's boot
compared with the old schedule (a fixed 30 s sleep, then /probe every 5 s).

Prints figures and ratios; asserts nothing. Run: .venv/bin/python benchmarks/up_latency.py
  --rounds N   repetitions of each timing (default 3)
  --boot S     the emulator's warm boot, container start to "server ready" (default 10)
The old schedule's time is computed from the same boot timeline (the container's start and the
emulator's own "ready" log line), not slept through.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import waa_runner  # noqa: E402
from benchmarks import ansible_counts  # noqa: E402
from waa_runner import api  # noqa: E402
from waa_runner.collection import collections_path, local_inventory, playbook_path  # noqa: E402

BIN = Path(sys.executable).parent
READY_LINE = "VM is up and running, and the Windows Arena Server is ready to use!"
OLD_FIRST_SLEEP_S, OLD_EVERY_S = 30.0, 5.0


def old_schedule(ready_at_s: float) -> float:
    """When the old `up` (sleep 30 s after starting the container, then /probe every 5 s) first saw the server."""
    t = OLD_FIRST_SLEEP_S
    while t < ready_at_s:
        t += OLD_EVERY_S
    return t


def docker_time(stamp: str) -> float:
    """Docker's RFC 3339 nano timestamps → epoch seconds."""
    return datetime.fromisoformat(stamp.rstrip("Z")[:26] + "+00:00").timestamp()


def boot_timeline(name: str) -> tuple[float, float]:
    """(container start, server ready) as epoch seconds, from the engine and the emulator's log."""
    state = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True).stdout)[0]["State"]
    logs = subprocess.run(["docker", "logs", "-t", "--since", state["StartedAt"], name], capture_output=True,
                          text=True)
    ready = [line.split(" ", 1)[0] for line in (logs.stdout + logs.stderr).splitlines() if READY_LINE in line]
    if not ready:
        raise RuntimeError(f"{name} never logged readiness")
    return docker_time(state["StartedAt"]), docker_time(ready[-1])


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started, proc


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--boot", type=float, default=10.0)
    args = parser.parse_args()
    name = f"waa-bench-up-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        variables = {
            "waa_container_name": name, "waa_bind_address": f"127.0.{os.getpid() % 200 + 20}.{(os.getpid() // 200) % 200 + 2}",
            "waa_storage_path": f"{tmp}/storage", "waa_ram_size": "1G", "waa_health_timeout": 300,
            "waa_health_breaker_threshold": 0,
            "waa_container_env": {"WAA_EMU_BOOT_S": round(args.boot * 0.4, 2), "WAA_EMU_INSTALL_S": 1,
                                  "WAA_EMU_SERVER_S": round(args.boot * 0.6, 2), "WAA_EMU_BLACK_S": 0}}
        vars_file = Path(tmp) / "vars.json"
        vars_file.write_text(json.dumps(variables))
        state = f"{tmp}/state"
        waa = [str(BIN / "waa-run"), "up", "--local", "--emulator", "-e", f"@{vars_file}", "--state-dir", state,
               "--json"]
        try:
            first_s, proc = timed(waa)
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-3000:])
                return 1
            counted = {"first up": ansible_counts.per_host(ansible_counts.count(json.loads(proc.stdout)["artifact_dir"]))}

            # 1. no-op up on a ready host (where its time goes), interleaved with 2. plain
            # ansible-playbook of the same playbook with the same variables and collection, so that
            # the load of a shared machine hits both alike
            plain_vars = {**api.EMULATOR_DEFAULTS, "waa_image": api.EMULATOR_IMAGE, "waa_image_pull": False}
            env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": collections_path()}
            plain_cmd = [str(BIN / "ansible-playbook"), str(playbook_path("up")), "-i", str(local_inventory()),
                         "-e", json.dumps(plain_vars), "-e", f"@{vars_file}"]
            noop, plain, timings = [], [], []
            for _ in range(args.rounds):
                seconds, proc = timed(waa)
                report = json.loads(proc.stdout)
                if report["exit_code"] != 0 or report["hosts"]["localhost"]["changed"] != 0:
                    print("warning: the no-op up was not a no-op:", report["summary"])
                noop.append(seconds)
                counted["no-op up"] = ansible_counts.per_host(ansible_counts.count(report["artifact_dir"]))
                timings.append(report["hosts"]["localhost"]["timings"])
                seconds, proc = timed(plain_cmd, env)
                if proc.returncode != 0:
                    print(proc.stdout[-2000:])
                    return 1
                plain.append(seconds)
            help_s = min(timed([str(BIN / "waa-run"), "--help"])[0] for _ in range(5))

            # 3. readiness after a warm boot (down, then up through the Python API)
            warm = []
            for _ in range(args.rounds):
                waa_runner.down(local=True, extra_vars=variables, state_dir=state)
                noticed: list[float] = []

                def on_event(event, noticed=noticed) -> None:
                    if event.kind == "health" and event.message == "ready":
                        noticed.append(time.time())

                began = time.time()
                result = waa_runner.up(local=True, emulator=True, extra_vars=variables, state_dir=state,
                                       on_event=on_event)
                ended = time.time()
                if not result.ok or not noticed:
                    print("warning: warm up failed:", result.summary_lines())
                    continue
                started_at, ready_at = boot_timeline(name)
                warm.append({"total": ended - began, "start_after": started_at - began,
                             "ready_after_start": ready_at - started_at, "noticed_after_ready": noticed[-1] - ready_at,
                             "noticed_after_start": noticed[-1] - started_at})
        finally:
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)

    print(f"== waa-run up, one host, emulator warm boot {args.boot:g} s ({args.rounds} rounds, medians)")
    for what, (results, calls) in counted.items():
        print(f"{what + ':':<38}{results:4.0f} task results, {calls:.0f} module calls")
    print(f"waa-run --help                        {help_s:6.2f} s")
    print(f"first up (create + first boot):       {first_s:6.1f} s")
    noop_m, plain_m = median(noop), median(plain)
    print(f"no-op up on a ready host:             {noop_m:6.2f} s   (min {min(noop):.2f}, max {max(noop):.2f})")
    per_role: dict[str, list[float]] = {}
    for item in timings:
        for role, seconds in item.items():
            per_role.setdefault(role, []).append(seconds)
    print("  of which tasks per role:            " + ", ".join(
        f"{role} {median(values):.2f}" for role, values in sorted(per_role.items(), key=lambda kv: -median(kv[1]))))
    print(f"plain ansible-playbook (same no-op):  {plain_m:6.2f} s   (min {min(plain):.2f}, max {max(plain):.2f})")
    print(f"wrapper overhead:                     {noop_m - plain_m:+6.2f} s   median ({noop_m / plain_m:.2f}x), "
          f"{min(noop) - min(plain):+.2f} s best-of ({min(noop) / min(plain):.2f}x)")
    if warm:
        ready = median([w["ready_after_start"] for w in warm])
        noticed_after_ready = median([w["noticed_after_ready"] for w in warm])
        noticed_after_start = median([w["noticed_after_start"] for w in warm])
        old_at = median([old_schedule(w["ready_after_start"]) for w in warm])
        print(f"up from a stopped container:          {median([w['total'] for w in warm]):6.1f} s   "
              f"(container started {median([w['start_after'] for w in warm]):.1f} s after the call)")
        print(f"server ready after container start:   {ready:6.1f} s   (the emulator's boot timeline)")
        print(f"readiness noticed after ready:        {noticed_after_ready:6.2f} s   "
              f"= {noticed_after_start:.1f} s after container start")
        print(f"old schedule, same timeline:          {old_at:6.1f} s after container start   "
              f"(noticed {old_at - ready:.1f} s after ready)")
        print(f"ratio old/new time to ready:          {old_at / noticed_after_start:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
