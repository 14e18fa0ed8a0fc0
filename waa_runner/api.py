"""The playbooks as Python functions: plain keyword arguments in, a typed RunResult out.

Every function runs one playbook of the collection through ansible-runner, reduces its events
into per-host results (waa_runner.results) and returns them with the overall exit code of the
one table (waa_runner.exit_codes). Nothing here describes a container or probes a port: the
roles and the health module do that.
"""
from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from waa_runner import exit_codes as codes
from waa_runner import state
from waa_runner.collection import collection_root, collections_path, local_inventory, playbook_path
from waa_runner.results import EventReducer, ProgressEvent, RunResult, build_run_result

PLAYBOOKS = ("vm_setup", "server_start", "up", "probe", "down")
# Playbooks whose hosts end with a health verdict; the others (down) just finish.
_WITH_HEALTH = {"vm_setup", "server_start", "up", "probe"}
SECRET_NAME = re.compile(r"(password|passwd|secret|token|private_key|api_key)", re.IGNORECASE)
EMULATOR_IMAGE = "waa-emulator:latest"
LIMIT_PATTERN = re.compile(r"^[A-Za-z0-9_.:*!&,\[\]@\-~^$()|?+]+$")


class UsageError(ValueError):
    """Bad input, found before anything ran; the message names the value and what is allowed."""


def _validate(*, playbook: str, inventory: str | os.PathLike | None, local: bool, limit: str | None,
              forks: int, timeout: float | None, health_timeout: float | None,
              extra_vars: Mapping[str, Any] | None) -> Path:
    if playbook not in PLAYBOOKS:
        raise UsageError(f"unknown playbook {playbook!r}; choose from {', '.join(PLAYBOOKS)}")
    if inventory and local:
        raise UsageError("give either an inventory or local=True (--local), not both")
    if inventory:
        path = Path(inventory).expanduser().resolve()
        if not path.exists():
            raise UsageError(f"inventory {str(inventory)!r} does not exist; give the path of an inventory file or directory")
    else:
        path = local_inventory()
    if limit is not None and (not limit.strip() or not LIMIT_PATTERN.match(limit)):
        raise UsageError(f"limit {limit!r} is not a host pattern (e.g. 'waa_pool_a', 'host1,host2', 'waa:!bad')")
    if not isinstance(forks, int) or not 1 <= forks <= 500:
        raise UsageError(f"forks {forks!r} must be a whole number from 1 to 500")
    for name, value in (("timeout", timeout), ("health_timeout", health_timeout)):
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            raise UsageError(f"{name} {value!r} must be a number of seconds greater than 0")
    for key in (extra_vars or {}):
        if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise UsageError(f"extra variable name {key!r} is not a valid Ansible variable name")
    return path


def _split_secrets(extra_vars: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    plain = {k: v for k, v in extra_vars.items() if not SECRET_NAME.search(k)}
    secret = {k: v for k, v in extra_vars.items() if SECRET_NAME.search(k)}
    return plain, secret


def run_playbook(
    playbook: str,
    *,
    inventory: str | os.PathLike | None = None,
    local: bool = False,
    limit: str | None = None,
    extra_vars: Mapping[str, Any] | None = None,
    image: str | None = None,
    emulator: bool = False,
    forks: int = 20,
    timeout: float | None = None,
    health_timeout: float | None = None,
    on_event: Callable[[ProgressEvent], None] | None = None,
    verbosity: int = 0,
    state_dir: str | os.PathLike | None = None,
    wait_lock: float = 0.0,
    keep_runs: int = state.DEFAULT_KEEP_RUNS,
) -> RunResult:
    """Run one of the collection's playbooks and return what happened on each host.

    Raises UsageError for bad input (nothing has run then) and state.Busy when another run holds
    the lock for the same inventory and limit.
    """
    inventory_path = _validate(playbook=playbook, inventory=inventory, local=local, limit=limit, forks=forks,
                               timeout=timeout, health_timeout=health_timeout, extra_vars=extra_vars)
    variables: dict[str, Any] = dict(extra_vars or {})
    if emulator:
        from waa_runner import images

        images.ensure_emulator(lambda message: None)
        variables.setdefault("waa_image", EMULATOR_IMAGE)
        variables.setdefault("waa_image_pull", False)
        variables.setdefault("waa_ram_size", "2G")
        variables.setdefault("waa_preflight_min_free_storage_gb", 1)
        variables.setdefault("waa_preflight_min_free_docker_gb", 1)
    if image:
        variables["waa_image"] = image
    if health_timeout is not None:
        variables["waa_health_timeout"] = int(health_timeout)
    plain, secret = _split_secrets(variables)

    root = state.state_dir(state_dir)
    key = state.lock_key(str(inventory_path), limit)
    with state.target_lock(root, key, f"waa-run {playbook}", wait_s=wait_lock):
        return _run(playbook, inventory_path, limit, plain, secret, forks, timeout, on_event, verbosity, root,
                    keep_runs)


def _run(playbook: str, inventory_path: Path, limit: str | None, plain: dict[str, Any], secret: dict[str, Any],
         forks: int, timeout: float | None, on_event: Callable[[ProgressEvent], None] | None, verbosity: int,
         root: Path, keep_runs: int) -> RunResult:
    import ansible_runner  # heavy: imported only when a run starts, so `waa-run --help` stays fast

    started = time.monotonic()
    run_dir = state.new_run_dir(root, playbook, keep_runs)
    reducer = EventReducer(playbook, on_event, expects_health=playbook in _WITH_HEALTH)
    envvars = {"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_HOST_KEY_CHECKING": "True",
               "ANSIBLE_PIPELINING": "True"}
    # The ansible next to this Python (a venv's bin/) even when that is not on PATH.
    bin_dir = str(Path(sys.executable).parent)
    envvars["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", os.defpath)])
    extra_path = collections_path()
    if extra_path:
        envvars["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(
            [extra_path, str(Path.home() / ".ansible" / "collections"), "/usr/share/ansible/collections"])
    cmdline_parts: list[str] = []
    secret_file: Path | None = None
    if secret:
        # Secrets go through a 0600 file outside the artifact directory, deleted after the run:
        # ansible-runner writes extravars into its command artifact otherwise.
        secret_file = root / f".secrets-{os.getpid()}-{run_dir.name}.json"
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as handle:
            json.dump(secret, handle)
        cmdline_parts = ["-e", f"@{secret_file}"]
    try:
        runner = ansible_runner.run(
            private_data_dir=str(run_dir),
            project_dir=str(collection_root()),
            playbook=str(playbook_path(playbook)),
            inventory=str(inventory_path),
            limit=limit,
            extravars=plain,
            envvars=envvars,
            cmdline=" ".join(cmdline_parts) or None,
            forks=forks,
            verbosity=verbosity or None,
            timeout=int(timeout) if timeout else None,
            quiet=True,
            suppress_env_files=True,
            event_handler=lambda event: (reducer.feed(event), True)[1],
            cancel_callback=lambda: False,
            ident="run",
        )
        runner_status, rc = runner.status, runner.rc
    finally:
        if secret_file is not None and secret_file.exists():
            secret_file.unlink()
    result = build_run_result(playbook, reducer, runner_status, rc, started, str(run_dir))
    if not result.hosts and rc != 0:
        stdout = run_dir / "artifacts" / "run" / "stdout"
        tail = stdout.read_text(errors="replace").strip().splitlines()[-3:] if stdout.exists() else []
        if tail:
            result.summary += ": " + " | ".join(line.strip() for line in tail)
    return result


def vm_setup(**kwargs: Any) -> RunResult:
    """Everything a host needs, in order: preflight, engine, image, container, readiness."""
    return run_playbook("vm_setup", **kwargs)


def server_start(**kwargs: Any) -> RunResult:
    """Start existing containers and wait for readiness (exit code 4 where there is none)."""
    return run_playbook("server_start", **kwargs)


def up(**kwargs: Any) -> RunResult:
    """vm_setup where the container is missing, server_start where it exists; then readiness."""
    return run_playbook("up", **kwargs)


def probe(*, wait: bool = False, force: bool = False, **kwargs: Any) -> RunResult:
    """Read-only health report of every host (changes nothing)."""
    extra = dict(kwargs.pop("extra_vars", None) or {})
    extra.setdefault("waa_probe_wait", wait)
    if force:
        extra["waa_health_force_probe"] = True
    return run_playbook("probe", extra_vars=extra, **kwargs)


def down(*, remove: bool = False, **kwargs: Any) -> RunResult:
    """Stop the containers (remove them with remove=True); the Windows disk always stays."""
    extra = dict(kwargs.pop("extra_vars", None) or {})
    if remove:
        extra["waa_container_down_mode"] = "absent"
    return run_playbook("down", extra_vars=extra, **kwargs)
