"""The state directory: run artifacts with rotation, and the lock that keeps two runs apart.

    $WAA_STATE_DIR (default ~/.local/state/openadapt-waa)/
      runs/<UTC time>-<playbook>-<short id>/   ansible-runner's private_data_dir, newest N kept
      locks/<key>.lock                         one per (inventory, limit); holds the holder's pid

Two `waa-run up` on the same targets at once would race on the same containers; the lock makes
the second one say who is busy (or wait for it, with a deadline) instead. The lock is an fcntl
lock: it dies with its process, so a crashed run never leaves a stale lock behind.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

DEFAULT_KEEP_RUNS = 20
RUN_DIR_NAME = re.compile(r"^\d{8}T\d{6}Z-[a-z_]+-[0-9a-f]{6}$")


class Busy(Exception):
    """Another run holds the lock for these targets; the message names it."""


def default_state_dir() -> Path:
    if os.environ.get("WAA_STATE_DIR"):
        return Path(os.environ["WAA_STATE_DIR"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "openadapt-waa"


def state_dir(override: str | os.PathLike | None = None) -> Path:
    path = Path(override).expanduser() if override else default_state_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def utc_stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def new_run_dir(root: Path, playbook: str, keep: int = DEFAULT_KEEP_RUNS) -> Path:
    """A fresh runs/<UTC time>-<playbook>-<short id>/ (mode 0700); older ones beyond `keep` are removed."""
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = runs / f"{utc_stamp()}-{playbook}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(mode=0o700)
    rotate(runs, keep)
    return run_dir


def rotate(runs: Path, keep: int) -> list[Path]:
    """Remove the oldest run directories beyond `keep` (only ours, by name); returns what was removed."""
    keep = max(1, keep)
    existing = sorted((p for p in runs.iterdir() if p.is_dir() and RUN_DIR_NAME.match(p.name)), key=lambda p: p.name)
    doomed = existing[:-keep]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def lock_key(inventory: str, limit: str | None) -> str:
    return hashlib.sha256(f"{inventory}\0{limit or ''}".encode()).hexdigest()[:16]


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} ({info['what']}, started {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "another waa-run"


@contextmanager
def target_lock(root: Path, key: str, description: str, wait_s: float = 0.0,
                on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the exclusive lock of one target set for the duration of the block.

    Busy (naming the holder) when it cannot be had within `wait_s` seconds; `on_wait` hears once
    that the wait started, with the holder's description.
    """
    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{key}.lock"
    handle = open(path, "a+")
    deadline = time.monotonic() + max(0.0, wait_s)
    delay, told = 0.05, False
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            handle.seek(0)
            holder = _holder(handle.read().strip())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waited = f" (waited {wait_s:.0f}s)" if wait_s > 0 else ""
                raise Busy(f"busy: {holder} is working on these hosts{waited}; "
                           f"wait for it to finish or pass --wait-lock SECONDS")
            if on_wait is not None and not told:
                on_wait(f"waiting up to {wait_s:.0f}s for {holder}")
                told = True
            time.sleep(min(delay, remaining))
            delay = min(1.0, delay * 2)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "what": description,
                                 "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
    finally:
        try:
            fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()
