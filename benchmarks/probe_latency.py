#!/usr/bin/env python3
"""How long the health probe takes on a healthy host, and how soon it notices readiness.

Prints figures and ratios; asserts nothing. Run: .venv/bin/python benchmarks/probe_latency.py
  --rounds N     probes timed on the healthy host (default 20)
  --boot S       the emulator's time from start to ready, split over its stages (default 8)
The old tools slept a fixed 30 s and then polled /probe every 5 s; their detection time is
computed from the same boot timeline (not slept through).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import LAYERS, Prober  # noqa: E402
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_wait import Backoff, probe  # noqa: E402
from tests.support.emulator import start_emulator  # noqa: E402
from waa_runner import images  # noqa: E402

READY_LINE = "VM is up and running, and the Windows Arena Server is ready to use!"


def old_schedule_detection(ready_at_s: float, first_sleep_s: float = 30.0, every_s: float = 5.0) -> float:
    """When the old `up` (sleep 30 s, then /probe every 5 s) would first have seen the server."""
    t = first_sleep_s
    while t < ready_at_s:
        t += every_s
    return t


def ready_log_time(name: str) -> float:
    out = subprocess.run(["docker", "logs", "-t", name], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if READY_LINE in line:
            stamp = line.split(" ", 1)[0]
            return datetime.fromisoformat(stamp[:26] + "+00:00").timestamp()
    raise RuntimeError("the emulator never logged readiness")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--boot", type=float, default=8.0)
    args = parser.parse_args()
    image = images.ensure_emulator(lambda m: None).image
    boot = args.boot
    env = {"WAA_EMU_BOOT_S": f"{boot * 0.4:.2f}", "WAA_EMU_INSTALL_S": "0", "WAA_EMU_SERVER_S": f"{boot * 0.6:.2f}",
           "WAA_EMU_BLACK_S": "0"}
    with tempfile.TemporaryDirectory() as storage:
        (Path(storage) / "windows.boot").write_text("warm boot\n")  # a warm boot: no install stage
        started_wall = time.time()
        handle = start_emulator(image=image, storage_dir=Path(storage), env=env)
        try:
            prober = Prober(container_name=handle.name, host=handle.host)
            report = probe(prober, list(LAYERS), wait=True, timeout=120, backoff=Backoff())  # the module defaults
            noticed_wall = time.time()
            if not report["ready"]:
                print(f"the emulator did not become ready: {report['message']}")
                return 1
            ready_wall = ready_log_time(handle.name)
            ready_after = ready_wall - started_wall
            ours = noticed_wall - ready_wall
            old = old_schedule_detection(ready_after) - ready_after
            samples = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                result = probe(prober, list(LAYERS))
                samples.append(time.perf_counter() - t0)
                assert result["ready"], result["message"]
            per_layer = {layer["layer"]: layer["duration_s"] for layer in result["layers"]}
            t0 = time.perf_counter()
            module = subprocess.run(
                [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "openadapt.waa.waa_health_probe",
                 "-a", f"container_name={handle.name} host={handle.host} breaker_threshold=0", "-o"],
                cwd=REPO, capture_output=True, text=True)
            module_s = time.perf_counter() - t0
        finally:
            handle.remove()
    print("== health probe on a healthy (emulated) host, all five layers")
    print(f"probe, in-process:        median {statistics.median(samples) * 1000:7.1f} ms  "
          f"p90 {sorted(samples)[int(len(samples) * 0.9) - 1] * 1000:7.1f} ms  ({args.rounds} rounds)")
    print("  per layer (last round): " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in per_layer.items()))
    print(f"probe through ansible:    {module_s:7.2f} s (one ad-hoc module run, rc {module.returncode}; "
          "mostly ansible's start-up)")
    print(f"== noticing readiness (emulator ready {ready_after:.1f} s after start)")
    print(f"this probe's wait loop:   noticed {ours:6.2f} s after the server was ready")
    print(f"old schedule (30 s + 5 s): noticed {old:6.2f} s after the server was ready "
          f"(first look at {old_schedule_detection(ready_after):.0f} s)")
    print(f"ratio old/new detection delay: {old / max(ours, 0.001):.0f}x;  "
          f"time to ready: new {ready_after + ours:.1f} s vs old {old_schedule_detection(ready_after):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
