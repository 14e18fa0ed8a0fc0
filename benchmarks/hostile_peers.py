"""Time to verdict and peak RSS of the health probe against each hostile peer of
tests/integration/test_hostile_peers.py, for the code in this tree and (with --before REV) for the
module_utils and module of an earlier revision, exported with `git show REV:path` into a temp
directory (no stash, no checkout: the work tree is never touched).

    .venv/bin/python -m benchmarks.hostile_peers [--before REV] [--kill-after S] [CASE ...]

Prints one row per case: the verdict (layer / exit code), the probe's own duration, the child's
wall time, and its peak RSS (the child's VmHWM via os.wait4). A child that outlives --kill-after
seconds is killed and shown as such. Numbers are printed, never asserted (the test asserts).
"""
from __future__ import annotations

import argparse
from typing import Any
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.test_hostile_peers import CASES, DEADLINE_S, run_case  # noqa: E402

FILES = ["plugins/modules/waa_health_probe.py", "plugins/module_utils/waa_exit_codes.py",
         "plugins/module_utils/waa_health.py", "plugins/module_utils/waa_health_png.py",
         "plugins/module_utils/waa_health_wait.py", "plugins/module_utils/waa_docker_api.py"]


def export(rev: str, into: Path) -> str:
    """The health code of `rev` as ansible_collections/openadapt/waa/... under `into`."""
    root = into / "ansible_collections" / "openadapt" / "waa"
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "plugins/module_utils"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    for path in sorted(set(FILES) | set(p for p in listed if p.endswith(".py"))):
        blob = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True)
        if blob.returncode != 0:
            continue
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.stdout)
    return str(into)


def row(result: dict[str, Any]) -> str:
    if result.get("_killed"):
        return f"{'killed':<22} {'-':>7} {result['_wall_s']:>7.1f} {result['_peak_rss_mb']:>8.1f}"
    if "exit_code" not in result:
        return f"{'crashed':<22} {'-':>7} {result['_wall_s']:>7.1f} {result['_peak_rss_mb']:>8.1f}"
    verdict = f"{result['failed_layer'] or 'ready'}/{result['exit_code']}"
    return f"{verdict:<22} {result['duration_s']:>7.1f} {result['_wall_s']:>7.1f} {result['_peak_rss_mb']:>8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a git revision whose probe code to measure too")
    parser.add_argument("--kill-after", type=float, default=40.0)
    parser.add_argument("cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    print(f"deadline {DEADLINE_S} s per probe (wait: true); duration = the probe's own, wall = the child's")
    header = f"{'case':<38} {'verdict':<22} {'dur s':>7} {'wall s':>7} {'RSS MB':>8}"
    with tempfile.TemporaryDirectory(prefix="waa-before-") as tmp:
        before_root = export(args.before, Path(tmp)) if args.before else None
        print(header + ("   | before: " + header[39:] if before_root else ""))
        for name in args.cases:
            after = row(run_case(name, kill_after_s=args.kill_after))
            line = f"{name:<38} {after}"
            if before_root:
                line += "   | " + row(run_case(name, code_root=before_root, kill_after_s=args.kill_after))
            print(line, flush=True)


if __name__ == "__main__":
    main()
