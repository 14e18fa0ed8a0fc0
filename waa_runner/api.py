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
import shlex
import shutil
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from waa_runner import exit_codes as codes
from waa_runner import options, processes, redact, state
from waa_runner.options import UsageError
from waa_runner.collection import collection_root, collections_path, local_inventory, playbook_path
from waa_runner.results import EventReducer, ProgressEvent, RunResult, build_run_result

PLAYBOOKS = ("vm_setup", "server_start", "up", "probe", "down", "provision", "teardown")
# Playbooks whose hosts end with a health verdict; the others (down, provision, teardown) just finish.
WITH_HEALTH = frozenset({"vm_setup", "server_start", "up", "probe"})
EMULATOR_IMAGE = "waa-emulator:latest"
# Settings that let the emulator run on a small machine (overridable with extra_vars).
EMULATOR_DEFAULTS: dict[str, Any] = {"waa_ram_size": "2G", "waa_preflight_min_free_storage_gb": 1,
                                     "waa_preflight_min_free_docker_gb": 1}
NO_HOSTS = "leaves us with no hosts to target"
RUNNER_SETTINGS = {"pexpect_timeout": 1, "suppress_ansible_output": True}


COMMANDS = options.COMMANDS


# ------------------------------------------------------------------------------------ running
def run_playbook(playbook: str, **given: Any) -> RunResult:
    """Run one of the collection's playbooks (PLAYBOOKS) with the options of waa_runner.options
    (the same keywords the command of that name takes) and return what happened on each host.

    Bad input raises UsageError before anything runs; another run on the same hosts raises
    state.Busy (or is waited for, `wait_lock` seconds). Signals are left alone: a KeyboardInterrupt
    stops ansible-playbook and is re-raised."""
    if playbook not in PLAYBOOKS:
        raise UsageError(f"unknown playbook {playbook!r}; choose from {', '.join(PLAYBOOKS)}")
    return _command(playbook, given)


def _inventory_path(values: dict[str, Any], command: str) -> Path:
    inventory = values.get("inventory")
    if command in options.AZURE or inventory is None:
        return local_inventory()
    # ansible-runner reads a relative string that is not a file as INI text: always pass a path.
    path = Path(inventory).expanduser().resolve()
    if not path.exists():
        raise UsageError(f"inventory {str(inventory)!r} does not exist; give the path of an inventory file or "
                         f"directory (or --local for this machine)")
    return path


def _command(command: str, given: Mapping[str, Any]) -> RunResult:
    playbook = COMMANDS[command][0] if command in COMMANDS else command
    values = options.check(command, given)
    inventory_path = _inventory_path(values, command)
    if command in options.AZURE or _is_azure_inventory(inventory_path):
        reason = azure_sdks_missing()
        if reason:
            raise UsageError(reason)
    try:
        root = state.state_dir(values["state_dir"])
    except OSError as err:
        raise UsageError(f"state dir {str(values['state_dir'] or state.default_state_dir())!r} cannot be used: "
                         f"{err}") from err

    variables: dict[str, Any] = {}
    if values.get("emulator"):
        variables.update(EMULATOR_DEFAULTS)
        variables.update(waa_image=EMULATOR_IMAGE, waa_image_pull=False)
    variables.update(values.get("extra_vars") or {})
    variables.update(options.variables(command, values))
    on_event = values.get("on_event")

    def notify(kind: str, message: str) -> None:
        if on_event is not None:
            on_event(ProgressEvent(kind, "", message=message))

    limit = values.get("limit")
    key = state.lock_key(str(inventory_path), limit)
    with state.target_lock(root, key, f"waa-run {command.replace('_', '-')}", wait_s=values["wait_lock"],
                           on_wait=lambda message: notify("lock_wait", message)):
        if playbook in ("vm_setup", "server_start", "up", "down"):  # the playbooks take a lock on the host too
            variables.update(state.host_lock_vars(str(inventory_path), limit, f"waa-run {command.replace('_', '-')}",
                                                  wait_s=values["wait_lock"], timeout=values["timeout"]))
        if values.get("emulator"):
            from waa_runner import images

            images.ensure_emulator(lambda message: notify("build", message))
        return _run(playbook, inventory_path, limit, variables, forks=values.get("forks") or 20,
                    timeout=values["timeout"], on_event=on_event, cancel=values["cancel"],
                    verbosity=values["verbosity"], root=root, keep_runs=values["keep_runs"])


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


def _environment(root: Path, shim_dir: Path | None = None) -> dict[str, str]:
    env = {"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
           "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "True"}
    # The ansible next to this Python (a venv's bin/) even when that is not on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    if shim_dir is not None:  # ansible-playbook under the orphan guard (waa_runner/orphan_guard.py)
        env["PATH"] = os.pathsep.join([str(shim_dir), env["PATH"]])
    ours = collections_path(fallback_dir=root)
    user = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get("ANSIBLE_COLLECTIONS_PATHS")
    rest = user or os.pathsep.join([str(Path.home() / ".ansible" / "collections"), "/usr/share/ansible/collections"])
    env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join([ours, rest])
    return env


def _guard(run_dir: Path) -> Path | None:
    """A directory with the orphan guard's `ansible-playbook` shim, or None where there is no /proc or
    no ansible-playbook next to this Python."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    real = str(beside) if beside.is_file() else shutil.which("ansible-playbook")
    if real is None or not Path("/proc/self").exists():
        return None
    from waa_runner import orphan_guard

    return orphan_guard.install_shim(run_dir / "guard", real).parent


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
            envvars=_environment(root, _guard(run_dir)),
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
    state.finish_run_dir(run_dir)
    return result


# ---------------------------------------------------------------------------------- playbooks
def _make(command: str) -> Callable[..., RunResult]:
    def function(**given: Any) -> RunResult:
        return _command(command, given)
    function.__name__ = function.__qualname__ = command
    function.__doc__ = options.docstring(command, COMMANDS[command][1])
    return function


vm_setup = _make("vm_setup")
server_start = _make("server_start")
up = _make("up")
probe = _make("probe")
down = _make("down")
status = _make("status")
provision = _make("provision")
teardown = _make("teardown")
