#!/usr/bin/env python3
"""Time to verdict of a stalled and of a slow first boot, with deadlines that follow progress.

Prints figures; asserts nothing. Run: .venv/bin/python benchmarks/stall_vs_slow.py
  --stall S         the wait's stall timeout (default 5)
  --cap C           the wait's hard cap (default 120)
  --slow-install I  seconds the slow install takes (WAA_EMU_SLOW_INSTALL_S, default 20)
Two emulated first boots on the real engine, each waited for by the probe's own wait loop
(module_utils, in process): one whose install stops (fault install_stall), one whose install is
slow but moves (fault install_slow). A fixed deadline cannot tell them apart: one short enough to
end the stalled one early fails the slow one, one long enough for the slow one waits the stalled
one out to the cap.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import Prober  # noqa: E402
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_wait import Backoff, probe  # noqa: E402
from tests.support.emulator import start_emulator  # noqa: E402
from waa_runner import images  # noqa: E402

FAST = {"WAA_EMU_BOOT_S": "1", "WAA_EMU_INSTALL_S": "1", "WAA_EMU_SERVER_S": "1", "WAA_EMU_BLACK_S": "0.5"}


def run(image: str, fault: str, args: argparse.Namespace) -> tuple[float, dict]:
    storage = Path(tempfile.mkdtemp(prefix="waa-bench-storage-"))
    env = {**FAST, "WAA_EMU_FAULT": fault, "WAA_EMU_SLOW_INSTALL_S": str(args.slow_install)}
    handle = start_emulator(image=image, storage_dir=storage, env=env)
    try:
        prober = Prober(container_name=handle.name, host=handle.host, request_timeout=2)
        started = time.monotonic()
        report = probe(prober, ["vm_boot", "waa_server", "accessibility"], wait=True, timeout=args.cap,
                       backoff=Backoff(0.25, 1.6, 1.0, 0.2), stall_timeout=args.stall, storage_path=str(storage))
        return time.monotonic() - started, report
    finally:
        handle.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stall", type=float, default=5.0)
    parser.add_argument("--cap", type=float, default=120.0)
    parser.add_argument("--slow-install", type=float, default=20.0)
    args = parser.parse_args()
    image = images.ensure_emulator(lambda m: None).image
    print(f"stall timeout {args.stall:g} s, cap {args.cap:g} s, slow install {args.slow_install:g} s "
          "(after ~1 s of boot steps)")
    for name, fault in (("stalled install", "install_stall"), ("slow install", "install_slow")):
        elapsed, report = run(image, fault, args)
        progress = report.get("progress", {})
        verdict = "ready" if report["ready"] else report["message"]
        print(f"{name:16s} verdict after {elapsed:6.1f} s  stalled={progress.get('stalled')} "
              f"changes={progress.get('changes')}  {verdict[:140]}")
    print(f"fixed deadline without stall detection: the stalled install ends at the cap, {args.cap:g} s; "
          f"a fixed deadline under {args.slow_install:g} s fails the slow install")


if __name__ == "__main__":
    main()
