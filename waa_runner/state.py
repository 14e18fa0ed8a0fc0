"""The state directory: run artifacts with rotation, and the lock that keeps two runs apart.

    $WAA_STATE_DIR (default ~/.local/state/openadapt-waa)/
      runs/<UTC time>-<playbook>-<short id>/   ansible-runner's private_data_dir, newest N kept
    $WAA_LOCK_DIR (default /run/lock/openadapt-waa, else $XDG_RUNTIME_DIR/openadapt-waa)/
      <key>.lock                               one per host container; holds the holder's pid

Two `waa-run up` on the same containers at once would race; the lock makes the second one say
who is busy (or wait for it, with a deadline) instead. It is keyed by what it protects: each
targeted host's identity (how it is reached: this machine, a Docker container, host:port over
SSH) and container name, resolved from the inventory and the limit, so `up --local` and
`up --local --limit localhost` collide, and so do runs with different --state-dir (the lock
directory does not depend on it). An inventory that cannot be resolved here (a cloud inventory
plugin) is keyed by (inventory, limit); the host-side lock (module waa_lock) covers those hosts,
and two controllers. The lock is an fcntl lock: it dies with its process, so a crashed run never
leaves a stale lock behind.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

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
    (run_dir / OWNER_FILE).write_text(str(os.getpid()))  # removed by finish_run_dir(); a live run is never rotated
    rotate(runs, keep)
    return run_dir


OWNER_FILE = "owner.pid"


def finish_run_dir(run_dir: Path) -> None:
    """The run is over: its directory may be rotated away from now on."""
    (run_dir / OWNER_FILE).unlink(missing_ok=True)


def _run_is_alive(run_dir: Path) -> bool:
    try:
        pid = int((run_dir / OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rotate(runs: Path, keep: int) -> list[Path]:
    """Remove the oldest run directories beyond `keep` (only ours, by name); returns what was removed."""
    keep = max(1, keep)
    existing = sorted((p for p in runs.iterdir() if p.is_dir() and RUN_DIR_NAME.match(p.name)), key=lambda p: p.name)
    doomed = [path for path in existing[:-keep] if not _run_is_alive(path)]  # another run's live directory stays
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


KEY_SEPARATOR = "+"
DEFAULT_CONTAINER = "winarena"
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def lock_dir() -> Path:
    """Where the controller's locks live: one place per machine and user, whatever --state-dir says."""
    candidates = [os.environ.get("WAA_LOCK_DIR"), "/run/lock/openadapt-waa",
                  os.path.join(os.environ["XDG_RUNTIME_DIR"], "openadapt-waa") if os.environ.get("XDG_RUNTIME_DIR")
                  else None, os.path.join(tempfile.gettempdir(), f"openadapt-waa-locks-{os.getuid()}")]
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o755)
        except OSError:
            continue
        if os.access(path, os.W_OK | os.X_OK):
            return path
    raise OSError("no writable directory for waa-run's locks (set WAA_LOCK_DIR)")


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def host_identity(name: str, variables: Mapping[str, Any]) -> str:
    """How a host is reached, canonically: the same machine under two inventory names is one host."""
    connection = str(variables.get("ansible_connection") or "ssh")
    address = str(variables.get("ansible_host") or name)
    if connection == "local" or (connection in ("ssh", "paramiko", "smart") and address in LOCAL_NAMES
                                 and str(variables.get("ansible_port") or 22) == "22"):
        return "local"
    if connection.endswith("docker"):
        return f"docker:{variables.get('ansible_docker_host') or ''}:{address}"
    return f"{connection.rsplit('.', 1)[-1]}:{address}:{variables.get('ansible_port') or 22}"


def _looks_templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def resolve_targets(inventory: str, limit: str | None) -> list[str] | None:
    """The (identity, container) of every host the run may touch (the limit, or the whole
    inventory), or None when the inventory cannot be resolved on the controller (cloud plugins,
    templated addresses): then the caller keys by (inventory, limit)."""
    path = Path(inventory)
    if path.is_dir() or path.suffix in (".yml", ".yaml"):
        files = [p for p in (path.iterdir() if path.is_dir() else [path]) if p.is_file()]
        for file in files:
            try:
                head = file.read_text(errors="replace")[:4096]
            except OSError:
                return None
            if re.search(r"^plugin\s*:", head, re.M):
                return None  # a dynamic inventory: resolving it would call its cloud
    try:
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.utils.display import Display

        Display().verbosity = 0
        manager = InventoryManager(loader=DataLoader(), sources=[str(path)])
        hosts = manager.get_hosts(pattern=limit or "all")
    except Exception:  # an inventory ansible itself would reject: let the run say so
        return None
    targets = []
    for host in hosts:
        variables: dict[str, Any] = {}
        for group in sorted(host.get_groups(), key=lambda g: g.depth):
            variables.update(group.get_vars())
        variables.update(host.get_vars())
        keys = ("ansible_connection", "ansible_host", "ansible_port", "ansible_docker_host", "waa_container_name")
        if any(_looks_templated(variables.get(key)) for key in keys):
            return None
        container = str(variables.get("waa_container_name") or DEFAULT_CONTAINER)
        targets.append(f"{host_identity(host.name, variables)}/{container}")
    return sorted(set(targets))


def lock_key(inventory: str, limit: str | None) -> str:
    """The key of the lock a run on (inventory, limit) takes: one part per targeted host container
    (joined by '+'), or one part for (inventory, limit) when the hosts cannot be resolved here."""
    targets = resolve_targets(inventory, limit)
    if not targets:
        return _key(f"{inventory}\0{limit or ''}")
    return KEY_SEPARATOR.join(sorted({_key(target) for target in targets}))


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} ({info['what']}, started {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "another waa-run"


@contextmanager
def target_lock(root: Path | None, key: str, description: str, wait_s: float = 0.0,
                on_wait: Callable[[str], None] | None = None, directory: Path | None = None) -> Iterator[None]:
    """Hold the exclusive lock of every part of `key` (see lock_key) for the duration of the block.

    The locks live in `directory` (default lock_dir(), the same for every state directory; `root`
    is kept for callers and not used). Busy (naming the holder) when they cannot all be had within
    `wait_s` seconds; `on_wait` hears once that the wait started, with the holder's description.
    Parts are taken in sorted order, so two runs never deadlock on overlapping host sets.
    """
    del root
    locks = directory or lock_dir()
    locks.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(0.0, wait_s)
    held: list[Any] = []
    told = [False]
    try:
        for part in sorted(set(key.split(KEY_SEPARATOR))):
            held.append(_take(locks / f"{part}.lock", description, deadline, wait_s, on_wait, told))
        yield
    finally:
        for handle in reversed(held):
            try:
                handle.seek(0)
                handle.truncate()
                handle.flush()
                fcntl.flock(handle, fcntl.LOCK_UN)
            finally:
                handle.close()


def _take(path: Path, description: str, deadline: float, wait_s: float,
          on_wait: Callable[[str], None] | None, told: list[bool]) -> Any:
    handle = open(path, "a+")
    try:
        os.chmod(path, 0o644)
    except OSError:
        pass
    delay = 0.05
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
            if on_wait is not None and not told[0]:
                on_wait(f"waiting up to {wait_s:.0f}s for {holder}")
                told[0] = True
            time.sleep(min(delay, remaining))
            delay = min(1.0, delay * 2)
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "what": description,
                             "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}))
    handle.flush()
    return handle


def lock_owner(description: str, run_id: str | None = None) -> dict[str, Any]:
    """Who this run is, for the host-side lock (module waa_lock's `owner`): the controller's
    name, this process, and the boot and pid namespace that let a host on this machine see at once
    that a holder died."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    return {"run_id": run_id or uuid.uuid4().hex[:12], "what": description, "controller": socket.gethostname(),
            "pid": os.getpid(), "boot_id": boot, "pidns": pidns}


def host_lock_vars(inventory: str, limit: str | None, description: str, wait_s: float = 0.0,
                   timeout: float | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Extra variables for the playbooks' host-side lock (module waa_lock) of a waa-run run.

    `waa_lock_takeover_own` is true only when this run's controller lock covers every targeted host
    (the inventory resolved here): then a lease on one of them left by another run of this
    controller is a killed run's, and is taken over at once instead of blocking until it expires.
    """
    return {
        "waa_lock_owner": lock_owner(description, run_id),
        "waa_lock_wait": float(wait_s),
        "waa_lock_ttl": int(timeout) + 300 if timeout else 7200,
        "waa_lock_takeover_own": bool(resolve_targets(inventory, limit)),
    }
