"""The state directory: run artifacts with rotation, and the lock that keeps two runs apart.

Two `waa-run up` on the same targets at once would race on the same containers; the lock makes
the second one say who is busy (or wait, with a deadline) instead.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

DEFAULT_KEEP_RUNS = 20


class Busy(Exception):
    """Another run holds the lock for these targets."""


def state_dir(override: str | os.PathLike | None = None) -> Path:
    chosen = override or os.environ.get("WAA_STATE_DIR") or \
        Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "openadapt-waa"
    path = Path(chosen).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_dir(root: Path, playbook: str, keep: int = DEFAULT_KEEP_RUNS) -> Path:
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = runs / f"{stamp}-{playbook}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir()
    rotate(runs, keep)
    return run_dir


def rotate(runs: Path, keep: int) -> list[Path]:
    """Remove the oldest run directories beyond `keep`; returns what was removed."""
    existing = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name)
    doomed = existing[:-keep] if keep > 0 else existing
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def lock_key(inventory: str, limit: str | None) -> str:
    return hashlib.sha256(f"{inventory}\0{limit or ''}".encode()).hexdigest()[:16]


@contextmanager
def target_lock(root: Path, key: str, description: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock for a target set; Busy names the holder when it cannot be had in time."""
    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{key}.lock"
    handle = open(path, "a+")
    deadline = time.monotonic() + max(0.0, wait_s)
    delay = 0.05
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip()
                    try:
                        info = json.loads(holder)
                        who = f"pid {info['pid']} ({info['what']}) since {info['since']}"
                    except (ValueError, KeyError):
                        who = "another waa-run"
                    raise Busy(f"busy: {who} is working on these hosts; wait for it or pass --wait-lock SECONDS")
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(1.0, delay * 2)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "what": description,
                                 "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}))
        handle.flush()
        yield
    finally:
        try:
            fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()
