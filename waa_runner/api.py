"""The playbooks as Python functions: plain keyword arguments in, a typed RunResult out.

    import waa_runner
    result = waa_runner.up(inventory="inventory/azure_rm.yml", limit="waa_pool_a", timeout=1800)
    for host in result.hosts.values():
        print(host.name, host.status, host.exit_code, host.failed_layer, host.hint)

Every function runs one playbook of the collection through ansible-runner (in a worker thread,
with `event_handler` for live progress), reduces its events into per-host results
(waa_runner.results) and returns them with the overall exit code of the one table
(waa_runner.exit_codes). Nothing here describes a container or probes a port: the roles and the
health module do that.

Bad input raises UsageError before anything runs; another run on the same targets raises
state.Busy (or is waited for, `wait_lock` seconds). Everything that happens after the run started
is in the RunResult, including deadlines (`timeout`) and cancellation (`cancel`).

Secrets (extra variables named like password/token/secret) never reach the command line, the
run directory, the report or the terminal: see waa_runner/redact.py.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from waa_runner import exit_codes as codes
from waa_runner import processes, redact, state
from waa_runner.collection import collection_root, collections_path, local_inventory, playbook_path
from waa_runner.results import EventReducer, ProgressEvent, RunResult, build_run_result

PLAYBOOKS = ("vm_setup", "server_start", "up", "probe", "down", "provision", "teardown")
# Playbooks whose hosts end with a health verdict; the others (down, provision, teardown) just finish.
WITH_HEALTH = frozenset({"vm_setup", "server_start", "up", "probe"})
POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
# Playbooks that only talk to Azure (on the controller).
AZURE_PLAYBOOKS = frozenset({"provision", "teardown"})
EMULATOR_IMAGE = "waa-emulator:latest"
# Settings that let the emulator run on a small machine (overridable with extra_vars).
EMULATOR_DEFAULTS: dict[str, Any] = {"waa_ram_size": "2G", "waa_preflight_min_free_storage_gb": 1,
                                     "waa_preflight_min_free_docker_gb": 1}
LIMIT_PATTERN = re.compile(r"^[A-Za-z0-9_.:*!&,\[\]@~^$()|?+/\-]+$")
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NO_HOSTS = "leaves us with no hosts to target"
RUNNER_SETTINGS = {"pexpect_timeout": 1, "suppress_ansible_output": True}


class UsageError(ValueError):
    """Bad input, found before anything ran; the message names the value and what is allowed."""


# ------------------------------------------------------------------------------------ validation
def _number(name: str, value: Any, *, minimum: float, integer: bool = False, inclusive: bool = True,
            maximum: float | None = None) -> None:
    kinds = (int,) if integer else (int, float)
    bad = isinstance(value, bool) or not isinstance(value, kinds) or (isinstance(value, float) and not math.isfinite(value))
    if not bad:
        bad = value < minimum if inclusive else value <= minimum
        bad = bad or (maximum is not None and value > maximum)
    if bad:
        what = "a whole number" if integer else "a number"
        low = f"{'at least' if inclusive else 'greater than'} {minimum:g}"
        high = f" and at most {maximum:g}" if maximum is not None else ""
        raise UsageError(f"{name} {value!r} must be {what} {low}{high}")


def validate(playbook: str, *, inventory: str | os.PathLike | None = None, local: bool = False,
             limit: str | None = None, extra_vars: Mapping[str, Any] | None = None, image: str | None = None,
             emulator: bool = False, forks: int = 20, timeout: float | None = None,
             health_timeout: float | None = None, max_fail_percentage: int | None = None, verbosity: int = 0,
             wait_lock: float = 0.0, keep_runs: int = state.DEFAULT_KEEP_RUNS) -> Path:
    """Check every argument; returns the absolute inventory path. Raises UsageError."""
    if playbook not in PLAYBOOKS:
        raise UsageError(f"unknown playbook {playbook!r}; choose from {', '.join(PLAYBOOKS)}")
    if inventory is not None and local:
        raise UsageError("give either an inventory or local=True (--local), not both")
    if inventory is not None:
        if not str(inventory).strip():
            raise UsageError("inventory '' is empty; give the path of an inventory file or directory")
        # ansible-runner reads a relative string that is not a file as INI text: always pass a path.
        path = Path(inventory).expanduser().resolve()
        if not path.exists():
            raise UsageError(f"inventory {str(inventory)!r} does not exist; give the path of an inventory file or "
                             f"directory (or --local for this machine)")
    else:
        path = local_inventory()
    if limit is not None:
        if not isinstance(limit, str) or not limit.strip() or not LIMIT_PATTERN.match(limit) or \
                limit.count("[") != limit.count("]") or ",," in limit:
            raise UsageError(f"limit {limit!r} is not a host pattern; use names, groups and patterns such as "
                             f"'waa_pool_a', 'host1,host2', 'waa:!bad', 'waa:&pool_a', 'waa[0:4]' (no spaces)")
    _number("forks", forks, minimum=1, maximum=500, integer=True)
    if timeout is not None:
        _number("timeout", timeout, minimum=0, inclusive=False)
    if health_timeout is not None:
        _number("health_timeout", health_timeout, minimum=0, inclusive=False)
    if max_fail_percentage is not None:
        _number("max_fail_percentage", max_fail_percentage, minimum=0, maximum=100, integer=True)
    _number("verbosity", verbosity, minimum=0, maximum=6, integer=True)
    _number("wait_lock", wait_lock, minimum=0)
    _number("keep_runs", keep_runs, minimum=1, integer=True)
    if image is not None and (not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image)):
        raise UsageError(f"image {image!r} is not an image reference (e.g. windowsarena/winarena:latest)")
    if image is not None and emulator:
        raise UsageError("give either an image or emulator=True (--emulator), not both")
    if extra_vars is not None and not isinstance(extra_vars, Mapping):
        raise UsageError(f"extra_vars must be a mapping of names to values, not {type(extra_vars).__name__}")
    for key in extra_vars or {}:
        if not isinstance(key, str) or not VAR_NAME.match(key):
            raise UsageError(f"extra variable name {key!r} is not a valid Ansible variable name "
                             f"(letters, digits and _, not starting with a digit)")
    return path


# ------------------------------------------------------------------------------------ running
def run_playbook(
    playbook: str,
    *,
    inventory: str | os.PathLike | None = None,
    local: bool = False,
    limit: str | None = None,
    extra_vars: Mapping[str, Any] | None = None,
    image: str | None = None,
    emulator: bool = False,
    pull: bool | None = None,
    forks: int = 20,
    timeout: float | None = None,
    health_timeout: float | None = None,
    max_fail_percentage: int | None = None,
    on_event: Callable[[ProgressEvent], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    verbosity: int = 0,
    state_dir: str | os.PathLike | None = None,
    wait_lock: float = 0.0,
    keep_runs: int = state.DEFAULT_KEEP_RUNS,
) -> RunResult:
    """Run one of the collection's playbooks and return what happened on each host.

    inventory: path of an inventory file or directory; None (or local=True) targets this machine
        through the collection's inventory/local.yml.
    limit: an Ansible host pattern (--limit). extra_vars: -e variables (secrets are kept out of
        the artifacts, see the module docs). image: waa_image. emulator: build the local WAA
        emulator image and run it instead (waa_image=waa-emulator:latest, never pulled).
        pull: waa_image_pull (False: the image must already be on the host).
    timeout: overall deadline in seconds; hosts not finished then get DEADLINE (8).
    health_timeout: the readiness deadline per host (waa_health_timeout).
    on_event: called with a ProgressEvent for every phase change, task, retry, pull progress and
        health report (from the runner's worker thread). cancel: polled about once a second; True
        stops the run (hosts not finished get DEADLINE). Signals are left alone: a
        KeyboardInterrupt stops ansible-playbook and is re-raised.
    state_dir: where runs/ and locks/ live (default $WAA_STATE_DIR or ~/.local/state/openadapt-waa).
    wait_lock: seconds to wait for another run on the same inventory and limit (else Busy).
    keep_runs: how many run directories to keep.
    """
    inventory_path = validate(playbook, inventory=inventory, local=local, limit=limit, extra_vars=extra_vars,
                              image=image, emulator=emulator, forks=forks, timeout=timeout,
                              health_timeout=health_timeout, max_fail_percentage=max_fail_percentage,
                              verbosity=verbosity, wait_lock=wait_lock, keep_runs=keep_runs)
    if playbook in AZURE_PLAYBOOKS or _is_azure_inventory(inventory_path):
        reason = azure_sdks_missing()
        if reason:
            raise UsageError(reason)
    try:
        root = state.state_dir(state_dir)
    except OSError as err:
        raise UsageError(f"state dir {str(state_dir or state.default_state_dir())!r} cannot be used: {err}") from err

    variables: dict[str, Any] = {}
    if emulator:
        variables.update(EMULATOR_DEFAULTS)
        variables.update(waa_image=EMULATOR_IMAGE, waa_image_pull=False)
    variables.update(extra_vars or {})
    if image is not None:
        variables["waa_image"] = image
    if pull is not None:
        variables["waa_image_pull"] = bool(pull)
    if health_timeout is not None:
        variables["waa_health_timeout"] = int(math.ceil(health_timeout))
    if max_fail_percentage is not None:
        variables["waa_max_fail_percentage"] = max_fail_percentage

    def notify(kind: str, message: str) -> None:
        if on_event is not None:
            on_event(ProgressEvent(kind, "", message=message))

    key = state.lock_key(str(inventory_path), limit)
    with state.target_lock(root, key, f"waa-run {playbook.replace('_', '-')}", wait_s=wait_lock,
                           on_wait=lambda message: notify("lock_wait", message)):
        if emulator:
            from waa_runner import images

            images.ensure_emulator(lambda message: notify("build", message))
        return _run(playbook, inventory_path, limit, variables, forks=forks, timeout=timeout, on_event=on_event,
                    cancel=cancel, verbosity=verbosity, root=root, keep_runs=keep_runs)


def _is_azure_inventory(path: Path) -> bool:
    """An azure_rm inventory source (the plugin only reads files named *azure_rm.yml/.yaml)."""
    if path.is_dir():
        return any(_is_azure_inventory(child) for child in path.iterdir() if child.is_file())
    return path.name.endswith(("azure_rm.yml", "azure_rm.yaml"))


def azure_sdks_missing() -> str | None:
    """None when azure.azcollection can import its SDKs; else what to do. Without them every Azure
    module and the inventory plugin fail, each with a long import error, after the run started."""
    try:
        from ansible_collections.azure.azcollection.plugins.module_utils import azure_rm_common as common
    except Exception as err:  # the `ansible` package ships the collection; a bare ansible-core does not
        return (f"azure.azcollection is not installed ({err}); install the `ansible` package "
                f"(pip install openadapt-waa does)")
    if common.HAS_AZURE and common.HAS_AZURE_CLI_CORE:
        return None
    requirements = Path(common.__file__).resolve().parents[2] / "requirements.txt"
    return (f"azure.azcollection cannot import its Python SDKs ({common.HAS_AZURE_EXC or common.HAS_AZURE_CLI_CORE_EXC}"
            f"); run scripts/install-azure-deps.sh from a clone of openadapt.waa, or "
            f"`{sys.executable} -m pip install -r {requirements}`")


def _environment(root: Path) -> dict[str, str]:
    env = {"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
           "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "True"}
    # The ansible next to this Python (a venv's bin/) even when that is not on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    ours = collections_path(fallback_dir=root)
    user = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get("ANSIBLE_COLLECTIONS_PATHS")
    rest = user or os.pathsep.join([str(Path.home() / ".ansible" / "collections"), "/usr/share/ansible/collections"])
    env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join([ours, rest])
    return env


def _run(playbook: str, inventory_path: Path, limit: str | None, variables: dict[str, Any], *, forks: int,
         timeout: float | None, on_event: Callable[[ProgressEvent], None] | None,
         cancel: Callable[[], bool] | None, verbosity: int, root: Path, keep_runs: int) -> RunResult:
    import ansible_runner  # heavy: imported only when a run starts, so `waa-run --help` stays fast

    started = time.monotonic()
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run_dir = state.new_run_dir(root, playbook, keep_runs)
    (run_dir / "env").mkdir(mode=0o700)
    # ansible-runner only keeps its `settings` when they come from env/settings.
    (run_dir / "env" / "settings").write_text(json.dumps(RUNNER_SETTINGS))
    command_artifact = run_dir / "artifacts" / "run" / "command"
    reducer = EventReducer(playbook, on_event, expects_health=playbook in WITH_HEALTH)
    plain, secret = redact.split_secrets(variables)
    redactor = redact.Redactor(redact.secret_values(secret))
    scrubbed = threading.Event()

    def handle(event: dict[str, Any]) -> bool:
        if not scrubbed.is_set():
            scrubbed.set()
            redact.scrub_command_artifact(command_artifact)
        try:
            redactor.event(event)  # before ansible-runner writes it and before anyone shows it
        except Exception:  # pragma: no cover - the final pass over the run directory still redacts
            pass
        return reducer(event)

    stop = threading.Event()
    deadline = time.monotonic() + timeout if timeout else None
    timed_out = threading.Event()
    artifact_dir = os.path.join(os.path.abspath(run_dir), "artifacts", "run")  # = ansible-runner's

    def should_cancel() -> bool:
        """ansible-runner polls this about once a second (RUNNER_SETTINGS' pexpect_timeout)."""
        if not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                timed_out.set()
                stop.set()
            elif cancel is not None and cancel():
                stop.set()
        if stop.is_set():
            processes.kill_run_tree(artifact_dir)  # the workers too, not only the process group
        return stop.is_set()

    secret_file = redact.write_secrets(secret) if secret else None
    try:
        thread, runner = ansible_runner.run_async(
            private_data_dir=str(run_dir),
            project_dir=str(collection_root()),
            playbook=str(playbook_path(playbook)),
            inventory=str(inventory_path),
            limit=limit,
            extravars=plain,
            envvars=_environment(root),
            cmdline=f"-e @{shlex.quote(str(secret_file))}" if secret_file else None,
            forks=forks,
            verbosity=verbosity or None,
            # The deadline is ours (should_cancel stops the whole process tree); ansible-runner's
            # own timeout is only a backstop.
            timeout=int(math.ceil(timeout)) + 60 if timeout else None,
            quiet=True,
            suppress_env_files=True,
            fact_cache_type="memory",  # the jsonfile cache would keep every host's facts (ansible_env) on disk
            event_handler=handle,
            cancel_callback=should_cancel,
            ident="run",
        )
        try:
            while thread.is_alive():
                thread.join(0.5)
        except BaseException:  # KeyboardInterrupt in a harness: stop ansible-playbook, then re-raise
            stop.set()
            thread.join(30)
            raise
    finally:
        if secret_file is not None:
            secret_file.unlink(missing_ok=True)
        redact.scrub_command_artifact(command_artifact)
        redactor.tree(run_dir)
    runner_status = runner.status if runner.status in ("successful", "failed", "timeout", "canceled") else "error"
    if timed_out.is_set():
        runner_status = "timeout"
    result = build_run_result(playbook, reducer, runner_status, runner.rc, started, str(run_dir), started_at)
    if not result.hosts and result.exit_code != codes.USAGE:
        stdout = Path(artifact_dir) / "stdout"
        lines = [line.strip() for line in stdout.read_text(errors="replace").splitlines() if line.strip()] \
            if stdout.exists() else []
        if any(NO_HOSTS in line for line in lines):  # ansible-playbook exits 1 before any event then
            result.exit_code = codes.USAGE
            result.summary = f"{playbook}: no host matched (check the inventory, its group 'waa', and --limit)"
        elif lines:
            result.summary += ": " + " | ".join(lines[-3:])
    (run_dir / "report.json").write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
    return result


# ---------------------------------------------------------------------------------- playbooks
def vm_setup(*, inventory: str | os.PathLike | None = None, local: bool = False, limit: str | None = None,
             extra_vars: Mapping[str, Any] | None = None, image: str | None = None, emulator: bool = False,
             pull: bool | None = None, forks: int = 20, timeout: float | None = None,
             health_timeout: float | None = None, max_fail_percentage: int | None = None,
             on_event: Callable[[ProgressEvent], None] | None = None, cancel: Callable[[], bool] | None = None,
             verbosity: int = 0, state_dir: str | os.PathLike | None = None, wait_lock: float = 0.0,
             keep_runs: int = state.DEFAULT_KEEP_RUNS) -> RunResult:
    """Everything a host needs, in order: preflight, engine, image, container, readiness."""
    return run_playbook("vm_setup", **_options(locals()))


def server_start(*, inventory: str | os.PathLike | None = None, local: bool = False, limit: str | None = None,
                 extra_vars: Mapping[str, Any] | None = None, image: str | None = None, emulator: bool = False,
                 pull: bool | None = None, forks: int = 20, timeout: float | None = None,
                 health_timeout: float | None = None, max_fail_percentage: int | None = None,
                 on_event: Callable[[ProgressEvent], None] | None = None, cancel: Callable[[], bool] | None = None,
                 verbosity: int = 0, state_dir: str | os.PathLike | None = None, wait_lock: float = 0.0,
                 keep_runs: int = state.DEFAULT_KEEP_RUNS) -> RunResult:
    """Start existing containers and wait for readiness (exit code 4 where there is none)."""
    return run_playbook("server_start", **_options(locals()))


def up(*, inventory: str | os.PathLike | None = None, local: bool = False, limit: str | None = None,
       extra_vars: Mapping[str, Any] | None = None, image: str | None = None, emulator: bool = False,
       pull: bool | None = None, forks: int = 20, timeout: float | None = None, health_timeout: float | None = None,
       max_fail_percentage: int | None = None, on_event: Callable[[ProgressEvent], None] | None = None,
       cancel: Callable[[], bool] | None = None, verbosity: int = 0, state_dir: str | os.PathLike | None = None,
       wait_lock: float = 0.0, keep_runs: int = state.DEFAULT_KEEP_RUNS) -> RunResult:
    """vm_setup where the container is missing, server_start where it exists; then readiness."""
    return run_playbook("up", **_options(locals()))


def probe(*, inventory: str | os.PathLike | None = None, local: bool = False, limit: str | None = None,
          extra_vars: Mapping[str, Any] | None = None, wait: bool = False, force: bool = False, forks: int = 20,
          timeout: float | None = None, health_timeout: float | None = None,
          on_event: Callable[[ProgressEvent], None] | None = None, cancel: Callable[[], bool] | None = None,
          verbosity: int = 0, state_dir: str | os.PathLike | None = None, wait_lock: float = 0.0,
          keep_runs: int = state.DEFAULT_KEEP_RUNS) -> RunResult:
    """Read-only health report of every host; changes nothing.

    wait: wait for readiness up to health_timeout instead of reporting at once.
    force: probe through an open circuit breaker (waa_health_force_probe).
    """
    options = _options(locals())
    extra = dict(options.pop("extra_vars") or {})
    extra["waa_probe_wait"] = bool(options.pop("wait"))
    if options.pop("force"):
        extra["waa_health_force_probe"] = True
    return run_playbook("probe", extra_vars=extra, **options)


def down(*, inventory: str | os.PathLike | None = None, local: bool = False, limit: str | None = None,
         extra_vars: Mapping[str, Any] | None = None, remove: bool = False, deallocate: bool = False,
         forks: int = 20, timeout: float | None = None, on_event: Callable[[ProgressEvent], None] | None = None,
         cancel: Callable[[], bool] | None = None, verbosity: int = 0, state_dir: str | os.PathLike | None = None,
         wait_lock: float = 0.0, keep_runs: int = state.DEFAULT_KEEP_RUNS) -> RunResult:
    """Stop the containers; the Windows disk always stays.

    remove: remove the containers too (waa_container_down_mode=absent).
    deallocate: deallocate the Azure VMs afterwards (waa_deallocate), so they stop billing.
    """
    options = _options(locals())
    extra = dict(options.pop("extra_vars") or {})
    if options.pop("remove"):
        extra["waa_container_down_mode"] = "absent"
    if options.pop("deallocate"):
        extra["waa_deallocate"] = True
    return run_playbook("down", extra_vars=extra, **options)


def status(*, inventory: str | os.PathLike | None = None, local: bool = False, limit: str | None = None,
           extra_vars: Mapping[str, Any] | None = None, forks: int = 20, timeout: float | None = None,
           on_event: Callable[[ProgressEvent], None] | None = None, cancel: Callable[[], bool] | None = None,
           verbosity: int = 0, state_dir: str | os.PathLike | None = None, wait_lock: float = 0.0,
           keep_runs: int = state.DEFAULT_KEEP_RUNS) -> RunResult:
    """What each host is and costs: the probe's read-only report, plus for Azure hosts the VM's power
    state, size and hourly price (HostResult.azure). A deallocated VM is reported without
    connecting to it (exit code 15, vm_stopped)."""
    return probe(**_options(locals()))


def provision(*, pool: str, count: int = 1, ssh_source_cidr: str | Sequence[str], resource_group: str | None = None,
              location: str | None = None, vm_size: str | None = None, extra_vars: Mapping[str, Any] | None = None,
              forks: int = 20, timeout: float | None = None, on_event: Callable[[ProgressEvent], None] | None = None,
              cancel: Callable[[], bool] | None = None, verbosity: int = 0,
              state_dir: str | os.PathLike | None = None, wait_lock: float = 0.0,
              keep_runs: int = state.DEFAULT_KEEP_RUNS) -> RunResult:
    """Create pool `pool` of `count` Azure VMs in parallel (playbooks/provision.yml); a second call
    with the same inputs creates nothing. The playbook checks every input again, with Azure's rules."""
    extra = dict(extra_vars or {})
    extra.update(_pool_vars(pool, resource_group))
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 50:
        raise UsageError(f"count {count!r} must be a whole number from 1 to 50")
    extra["waa_pool_size"] = count
    if not ssh_source_cidr:
        raise UsageError("ssh_source_cidr is required: the address range allowed to SSH in, e.g. 203.0.113.7/32")
    extra["waa_ssh_source_cidr"] = ssh_source_cidr if isinstance(ssh_source_cidr, str) else list(ssh_source_cidr)
    if location is not None:
        extra["waa_location"] = location
    if vm_size is not None:
        extra["waa_vm_size"] = vm_size
    return run_playbook("provision", local=True, extra_vars=extra, forks=forks, timeout=timeout, on_event=on_event,
                        cancel=cancel, verbosity=verbosity, state_dir=state_dir, wait_lock=wait_lock,
                        keep_runs=keep_runs)


def teardown(*, pool: str, confirm: str, resource_group: str | None = None,
             extra_vars: Mapping[str, Any] | None = None, timeout: float | None = None,
             on_event: Callable[[ProgressEvent], None] | None = None, cancel: Callable[[], bool] | None = None,
             verbosity: int = 0, state_dir: str | os.PathLike | None = None, wait_lock: float = 0.0,
             keep_runs: int = state.DEFAULT_KEEP_RUNS) -> RunResult:
    """Delete pool `pool` (VMs, disks, NICs, IPs, schedules, NSG): irreversible, so `confirm` must
    repeat the pool name."""
    extra = dict(extra_vars or {})
    extra.update(_pool_vars(pool, resource_group))
    if confirm != pool:
        raise UsageError(f"teardown deletes every VM and Windows disk of pool {pool!r}: repeat the pool name "
                         f"to confirm (got {confirm!r})")
    extra["waa_confirm_teardown"] = confirm
    return run_playbook("teardown", local=True, extra_vars=extra, timeout=timeout, on_event=on_event, cancel=cancel,
                        verbosity=verbosity, state_dir=state_dir, wait_lock=wait_lock, keep_runs=keep_runs)


def _pool_vars(pool: str, resource_group: str | None) -> dict[str, Any]:
    if not isinstance(pool, str) or not POOL_NAME.match(pool):
        raise UsageError(f"pool {pool!r} is not a pool name: 1-12 lowercase letters or digits, starting with a "
                         f"letter (VMs are named waa-<pool>-NN, the inventory group is waa_pool_<pool>)")
    variables: dict[str, Any] = {"waa_pool": pool}
    if resource_group is not None:
        variables["waa_resource_group"] = resource_group
    return variables


def _options(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if not key.startswith("_")}
