#!/usr/bin/env python3
"""How long the health probe takes on a healthy host, and how soon it notices readiness.

Prints figures and ratios; asserts nothing. Run: .venv/bin/python benchmarks/probe_latency.py
  --rounds N   single probes (all five layers) timed on a healthy emulated host (default 20)
  --boots B    emulator boots whose readiness is waited for (default 3)
  --boot S     seconds from container start to "server ready", split over the stages (default 8)
The old tools slept a fixed 30 s and then polled /probe every 5 s; their detection time is
computed from the same boot timeline (the emulator's own "ready" log line), not slept through.
"""
from __future__ import annotations

import argparse
import json
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
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_png import png_stats  # noqa: E402
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_wait import Backoff, probe  # noqa: E402
from tests.support.emulator import start_emulator  # noqa: E402
from waa_runner import images  # noqa: E402

READY_LINE = "VM is up and running, and the Windows Arena Server is ready to use!"
OLD_FIRST_SLEEP_S, OLD_EVERY_S = 30.0, 5.0
TARGET_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def old_schedule_detection(ready_at_s: float, first_sleep_s: float = OLD_FIRST_SLEEP_S,
                           every_s: float = OLD_EVERY_S) -> float:
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


def ansible_probe(handle, **args) -> tuple[float, dict]:
    params = {"container_name": handle.name, "host": handle.host, "breaker_threshold": 0, **args}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={TARGET_PYTHON}", "-m", "openadapt.waa.waa_health_probe",
         "-a", json.dumps(params), "-o"], cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    try:
        return elapsed, json.loads(proc.stdout.split("=>", 1)[1])
    except (IndexError, ValueError):
        return elapsed, {"ready": False, "message": (proc.stdout + proc.stderr)[-300:]}


def boot_env(boot: float) -> dict[str, str]:
    return {"WAA_EMU_BOOT_S": f"{boot * 0.4:.2f}", "WAA_EMU_INSTALL_S": "0",
            "WAA_EMU_SERVER_S": f"{boot * 0.6:.2f}", "WAA_EMU_BLACK_S": "0"}


def one_boot(image: str, boot: float, through_ansible: bool = False) -> dict:
    """Start a warm-booting emulator, wait for readiness, and compare with the old schedule."""
    with tempfile.TemporaryDirectory() as storage:
        (Path(storage) / "windows.boot").write_text("warm boot\n")  # a warm boot: no install stage
        handle = start_emulator(image=image, storage_dir=Path(storage), env=boot_env(boot))
        started_wall = time.time()  # the old script's 30 s sleep began when `docker run` returned
        try:
            if through_ansible:
                _elapsed, report = ansible_probe(handle, wait=True, timeout=120)
            else:
                report = probe(Prober(container_name=handle.name, host=handle.host), list(LAYERS), wait=True,
                               timeout=120, backoff=Backoff())  # the module's defaults
            noticed_wall = time.time()
            if not report["ready"]:
                raise RuntimeError("the emulator did not become ready: %s" % report["message"])
            ready_after = ready_log_time(handle.name) - started_wall
        finally:
            handle.remove()
    old_at = old_schedule_detection(ready_after)
    return {"ready_after": ready_after, "new_delay": noticed_wall - started_wall - ready_after,
            "old_delay": old_at - ready_after, "old_at": old_at, "new_at": noticed_wall - started_wall,
            "attempts": report["attempts"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--boot", type=float, default=8.0)
    args = parser.parse_args()
    image = images.ensure_emulator(lambda m: None).image

    # 1. The probe's own cost on a healthy host.
    with tempfile.TemporaryDirectory() as storage:
        (Path(storage) / "windows.boot").write_text("warm boot\n")
        handle = start_emulator(image=image, storage_dir=Path(storage), env=boot_env(2))
        try:
            prober = Prober(container_name=handle.name, host=handle.host)
            report = probe(prober, list(LAYERS), wait=True, timeout=60)
            if not report["ready"]:
                print(f"the emulator did not become ready: {report['message']}")
                return 1
            samples, per_layer = [], {name: [] for name in LAYERS}
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                result = probe(prober, list(LAYERS))
                samples.append(time.perf_counter() - t0)
                for layer in result["layers"]:
                    per_layer[layer["layer"]].append(layer["duration_s"])
            no_screen = Prober(container_name=handle.name, host=handle.host, check_screen=False)
            plain = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                probe(no_screen, list(LAYERS))
                plain.append(time.perf_counter() - t0)
            screen = prober.docker.get_archive(handle.name, "/tmp/waa-probe-screen.png")
            t0 = time.perf_counter()
            for _ in range(5):
                png_stats(screen)
            png_s = (time.perf_counter() - t0) / 5
            module_s, module_result = ansible_probe(handle)
        finally:
            handle.remove()

    # 2. How soon readiness is noticed, against the old fixed schedule on the same timeline.
    boots = [one_boot(image, args.boot) for _ in range(args.boots)]
    through_ansible = one_boot(image, args.boot, through_ansible=True)

    ms = 1000.0
    print("== health probe on a healthy (emulated) host, all five layers")
    print(f"single probe, in-process:     median {statistics.median(samples) * ms:6.1f} ms  "
          f"max {max(samples) * ms:6.1f} ms  ({args.rounds} rounds)")
    print(f"  without the screen check:   median {statistics.median(plain) * ms:6.1f} ms")
    print("  per layer (median):         " + ", ".join(
        f"{name} {statistics.median(v) * ms:.1f} ms" for name, v in per_layer.items() if v))
    print(f"  black-screen PNG check:     {png_s * ms:6.1f} ms for a 1440x900 screendump")
    print(f"single probe through ansible: {module_s:6.2f} s (`ansible -m waa_health_probe`, ready="
          f"{module_result.get('ready')}; module time {module_result.get('duration_s', 0) * ms:.0f} ms, "
          f"the rest is ansible's start-up)")
    print(f"== noticing readiness: warm boots of {args.boot:g} s, {args.boots} in-process waits + 1 through ansible")
    for n, b in enumerate(boots + [through_ansible], 1):
        label = "ansible" if n > len(boots) else f"boot {n}"
        print(f"{label:8s} server ready at {b['ready_after']:5.1f} s; noticed by the wait loop at {b['new_at']:5.1f} s "
              f"(+{b['new_delay']:.2f} s, {b['attempts']} probes); old schedule at {b['old_at']:4.0f} s "
              f"(+{b['old_delay']:.1f} s)")
    new = statistics.median(b["new_delay"] for b in boots)
    old = statistics.median(b["old_delay"] for b in boots)
    new_total = statistics.median(b["new_at"] for b in boots)
    old_total = statistics.median(b["old_at"] for b in boots)
    print(f"median delay after ready:    new {new:.2f} s vs old {old:.1f} s  -> {old / max(new, 0.001):.0f}x sooner")
    print(f"median time to 'ready':      new {new_total:.1f} s vs old {old_total:.1f} s  -> "
          f"{old_total / max(new_total, 0.001):.1f}x sooner")
    print(f"through ansible:             +{through_ansible['new_delay']:.2f} s after ready "
          f"(includes ansible's start-up and result)")
    # Real warm boots take 1-5 min: there the old schedule's fixed 30 s no longer dominates, only its
    # 5 s poll gap does (and it never looked at the screen or the accessibility tree).
    window = [60 + i * 0.01 for i in range(24000)]
    old_real = statistics.mean(old_schedule_detection(t) - t for t in window)
    print(f"1-5 min warm boots (model):  old schedule notices {old_real:.2f} s after ready on average vs "
          f"{new:.2f} s measured here -> {old_real / max(new, 0.001):.1f}x sooner")
    return 0


if __name__ == "__main__":
    sys.exit(main())
