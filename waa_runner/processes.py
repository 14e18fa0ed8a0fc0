"""Stopping a run completely.

ansible-runner stops a run (timeout or cancel) by SIGKILLing the process group of
ansible-playbook. ansible-core 2.19 starts every worker in a session of its own, so the workers
(and the module processes they run, e.g. a health wait) survive that, reparented to init, and go
on acting on hosts. Before telling ansible-runner to cancel, waa_runner therefore kills the whole
process tree of its ansible-playbook: the direct children of this process whose environment
carries the run's artifact directory (ansible-runner sets AWX_ISOLATED_DATA_DIR), and all their
descendants, frozen first so none can fork away. Linux (/proc) only; elsewhere ansible-runner's
own kill is all there is.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

PROC = Path("/proc")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir() if PROC.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _has_env(pid: int, marker: bytes) -> bool:
    try:
        return marker in (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def run_tree(artifact_dir: str, parent: int | None = None) -> list[int]:
    """Pids of the ansible-playbook started for `artifact_dir` by `parent` (default: this process) and
    of everything below it."""
    tree = _children()
    marker = f"AWX_ISOLATED_DATA_DIR={artifact_dir}".encode()
    roots = [pid for pid in tree.get(parent or os.getpid(), []) if _has_env(pid, marker)]
    found: list[int] = []
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.append(pid)
        stack.extend(tree.get(pid, []))
    return found


def kill_run_tree(artifact_dir: str, rounds: int = 10, parent: int | None = None) -> list[int]:
    """Freeze (SIGSTOP) the run's whole process tree until it stops growing, then SIGKILL it all.

    Returns the pids signalled."""
    frozen: list[int] = []
    for _ in range(rounds):
        pids = [pid for pid in run_tree(artifact_dir, parent) if pid not in frozen]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
            except (ProcessLookupError, PermissionError):
                pass
        frozen.extend(pids)
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return frozen


def leftovers(artifact_dir: str) -> list[int]:
    """Every process on this machine still working for the run of `artifact_dir` (ansible-runner's
    AWX_ISOLATED_DATA_DIR in its environment), whoever its parent is now."""
    marker = f"AWX_ISOLATED_DATA_DIR={artifact_dir}".encode()
    return [int(entry.name) for entry in (PROC.iterdir() if PROC.is_dir() else [])
            if entry.name.isdigit() and int(entry.name) != os.getpid() and _has_env(int(entry.name), marker)]
