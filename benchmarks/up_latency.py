#!/usr/bin/env python3
"""`waa-run up` on one host against the emulator: no-op cost, time to ready against the old
fixed-sleep schedule, and the wrapper's overhead over plain ansible-playbook.

Prints figures and ratios; asserts nothing. Run: .venv/bin/python benchmarks/up_latency.py
  --rounds N   repetitions of each timing (default 3)
  --boot S     the emulator's warm boot time, start to ready (default 10)
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.probe_latency import old_schedule_detection  # noqa: E402
from tests.support.emulator import free_loopback_address  # noqa: E402

BIN = Path(sys.executable).parent


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--boot", type=float, default=10.0)
    args = parser.parse_args()
    name = f"waa-bench-up-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        vars_file = Path(tmp) / "vars.json"
        vars_file.write_text(json.dumps({
            "waa_container_name": name, "waa_bind_address": free_loopback_address(),
            "waa_storage_path": f"{tmp}/storage", "waa_ram_size": "1G", "waa_health_timeout": 300,
            "waa_container_env": {"WAA_EMU_BOOT_S": round(args.boot * 0.4, 2), "WAA_EMU_INSTALL_S": 1,
                                  "WAA_EMU_SERVER_S": round(args.boot * 0.6, 2), "WAA_EMU_BLACK_S": 0}}))
        waa = [str(BIN / "waa-run"), "up", "--local", "--emulator", "-e", f"@{vars_file}", "--state-dir", f"{tmp}/state"]
        try:
            first_s, proc = timed(waa)
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr)
                return 1
            noop = [timed(waa)[0] for _ in range(args.rounds)]
            plain_vars = ["-e", f"@{vars_file}", "-e", "waa_image=waa-emulator:latest", "-e", "waa_image_pull=false",
                          "-e", "waa_preflight_min_free_storage_gb=1", "-e", "waa_preflight_min_free_docker_gb=1"]
            plain = [timed([str(BIN / "ansible-playbook"), "openadapt.waa.up", "-i", "inventory/local.yml",
                            *plain_vars])[0] for _ in range(args.rounds)]
            warm = []
            for _ in range(args.rounds):
                subprocess.run([str(BIN / "waa-run"), "down", "--local", "-e", f"@{vars_file}", "--state-dir",
                                f"{tmp}/state"], capture_output=True, cwd=REPO)
                warm.append(timed(waa)[0])
        finally:
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
    old_warm = old_schedule_detection(args.boot)
    print(f"== waa-run up, one host, emulator warm boot {args.boot:.0f} s ({args.rounds} rounds, medians)")
    print(f"first up (create + first boot):   {first_s:6.1f} s")
    print(f"no-op up on a ready host:          {statistics.median(noop):6.2f} s")
    print(f"plain ansible-playbook (no-op):    {statistics.median(plain):6.2f} s   "
          f"wrapper overhead {statistics.median(noop) - statistics.median(plain):+.2f} s "
          f"({statistics.median(noop) / statistics.median(plain):.2f}x)")
    print(f"up from a stopped container:       {statistics.median(warm):6.1f} s   = boot + "
          f"{statistics.median(warm) - args.boot:.1f} s")
    print(f"old schedule, same boot:           {old_warm:6.1f} s   (fixed 30 s sleep, then /probe every 5 s)")
    print(f"ratio old/new time to ready:       {old_warm / statistics.median(warm):6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
