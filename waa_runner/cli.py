"""waa-run: the collection's playbooks as a command, with live progress, a one-screen summary and
the documented exit codes (docs/exit-codes.md).

    waa-run up --local --emulator          this machine, against the local WAA emulator
    waa-run up -i inventory/azure_rm.yml -l waa_pool_a --timeout 1800 --json
    waa-run probe -i hosts.yml             read-only health report
    waa-run down -i inventory/azure_rm.yml -l waa_pool_a --deallocate
    waa-run status -i inventory/azure_rm.yml
    waa-run provision --pool a --count 3 --ssh-source-cidr 203.0.113.7/32

Start-up imports nothing heavy (no ansible, no ansible_runner) so `waa-run --help` answers at
once; the run itself imports them. Usage errors exit 64 before anything runs.
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

SUBCOMMANDS = {
    "vm-setup": ("vm_setup", "set hosts up from scratch: preflight, engine, image, container, readiness"),
    "server-start": ("server_start", "start existing containers and wait until WAA is ready"),
    "up": ("up", "vm-setup where the container is missing, else server-start; then readiness"),
    "probe": ("probe", "read-only health report of every host"),
    "down": ("down", "stop the containers (the Windows disk stays); --deallocate stops Azure billing"),
    "status": ("status", "per host: Azure power state, size and hourly price, and readiness (read-only)"),
    "provision": ("provision", "create a pool of Azure VMs for WAA, in parallel (idempotent)"),
    "teardown": ("teardown", "delete a pool of Azure VMs with their disks (asks for the pool name twice)"),
}
# Subcommands that target inventory hosts (the others run on the controller against Azure).
TARGETED = ("vm-setup", "server-start", "up", "probe", "down", "status")


def _table() -> Any | None:
    try:
        from waa_runner import exit_codes
    except Exception:  # the collection is missing: --help still answers, a run reports it
        return None
    return exit_codes


def usage_code() -> int:
    table = _table()
    return table.USAGE if table is not None else 64


def _epilog() -> str:
    table = _table()
    if table is None:
        return "exit codes: see docs/exit-codes.md"
    rows = [f"  {row.code:>3}  {row.name:<14} {row.summary}" for row in sorted(table.EXIT_CODES.values())]
    return "exit codes (hints in the summary, the JSON report and docs/exit-codes.md):\n" + "\n".join(rows)


class _Version(argparse.Action):
    """--version: this package, the collection it runs and ansible-core, computed only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(version_line())
        parser.exit(0)


def version_line() -> str:
    from importlib import metadata

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    try:
        from waa_runner.collection import collection_root

        root = collection_root()
        collection = next((line.split(":", 1)[1].strip() for line in (root / "galaxy.yml").read_text().splitlines()
                           if line.startswith("version:")), "?")
        where = str(root)
    except Exception as err:  # the collection is missing: say so, still answer
        collection, where = "not found", str(err)
    return (f"waa-run {installed('openadapt-waa')} (collection openadapt.waa {collection} at {where}; "
            f"ansible-core {installed('ansible-core')}, ansible-runner {installed('ansible-runner')})")


class CliError(Exception):
    """A usage error found by the CLI itself (e.g. an -e value)."""


_JSON_MODE = False  # set from the raw arguments, so even an argparse error gives --json its report


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors get the table's USAGE code, not argparse's 2
        self.print_usage(sys.stderr)
        sys.exit(_early_exit(usage_code(), f"error: {message}", _JSON_MODE))


def _number(kind: type, *, minimum: float, inclusive: bool, maximum: float | None = None):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number")
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if (value < minimum if inclusive else value <= minimum) or (maximum is not None and value > maximum):
            low = f"{'at least' if inclusive else 'greater than'} {minimum:g}"
            high = f" and at most {maximum:g}" if maximum is not None else ""
            raise argparse.ArgumentTypeError(f"{text!r} must be {low}{high}")
        return value
    return parse


def _add_run_options(run: Any) -> None:
    run.add_argument("--timeout", type=_number(float, minimum=0, inclusive=False), metavar="SECONDS",
                     help="overall deadline; hosts not finished by then get exit code 8")
    run.add_argument("-e", "--extra-var", action="append", default=[], metavar="KEY=VALUE|@FILE",
                     help="extra variable (repeatable); VALUE is read as JSON when it parses (3, true, [..]), "
                          "else as text; @FILE loads a YAML/JSON mapping. Give secrets as @FILE: a command "
                          "line is visible to other users of the machine")
    run.add_argument("--state-dir", metavar="DIR",
                     help="run artifacts and locks (default $WAA_STATE_DIR or ~/.local/state/openadapt-waa)")
    run.add_argument("--wait-lock", type=_number(float, minimum=0, inclusive=True), default=0.0, metavar="SECONDS",
                     help="wait this long for another run on the same hosts (default: exit 12 at once)")
    run.add_argument("--json", action="store_true", help="print only the JSON report on stdout")
    run.add_argument("-v", "--verbose", action="count", default=0, help="more Ansible output in the run artifacts")


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="waa-run", formatter_class=formatter, epilog=_epilog(),
                     description="Bring Windows Agent Arena hosts to ready, and say in one line why one is not.")
    parser.add_argument("--version", action=_Version, help="print the versions of waa-run, the collection and ansible")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    controller = argparse.ArgumentParser(add_help=False)
    target = common.add_argument_group("targets")
    # (argparse loses argument groups of mutually exclusive groups in parents: the API checks conflicts)
    target.add_argument("-i", "--inventory", metavar="PATH", help="inventory file or directory (default: --local)")
    target.add_argument("--local", action="store_true", help="this machine (inventory/local.yml); the default")
    target.add_argument("-l", "--limit", metavar="PATTERN", help="host pattern, e.g. waa_pool_a, 'host1,host2', 'waa:!bad'")
    target.add_argument("--forks", type=_number(int, minimum=1, maximum=500, inclusive=True), default=20,
                        help="hosts worked on at once (default 20)")
    for holder in (common, controller):
        _add_run_options(holder.add_argument_group("run"))
    image = argparse.ArgumentParser(add_help=False)
    group = image.add_argument_group("image")
    group.add_argument("--emulator", action="store_true",
                       help="run the local WAA emulator image instead of windowsarena/winarena (a rehearsal)")
    group.add_argument("--image", metavar="REF", help="the image to run (waa_image)")
    group.add_argument("--no-pull", action="store_true", help="never pull: the image must be on the host already")
    health = argparse.ArgumentParser(add_help=False)
    health.add_argument_group("health").add_argument("--health-timeout", type=_number(float, minimum=0, inclusive=False), metavar="SECONDS",
                        help="readiness deadline per host (waa_health_timeout)")
    fleet = argparse.ArgumentParser(add_help=False)
    fleet.add_argument_group("fleet").add_argument("--max-fail-percentage", type=_number(int, minimum=0, maximum=100, inclusive=True),
                       metavar="N", help="stop the play when more than N%% of the hosts failed (strategy linear)")

    parents = {"vm-setup": [common, image, health, fleet], "server-start": [common, image, health, fleet],
               "up": [common, image, health, fleet], "probe": [common, health], "down": [common],
               "status": [common], "provision": [controller], "teardown": [controller]}
    for name, (_playbook, help_text) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, parents=parents[name],
                                 formatter_class=formatter, epilog="exit codes: see `waa-run --help`")
        if name == "probe":
            command.add_argument("--wait", action="store_true", help="wait for readiness up to --health-timeout")
            command.add_argument("--force", action="store_true", help="probe through an open circuit breaker")
        if name == "down":
            command.add_argument("--remove", action="store_true", help="remove the containers too (the disk stays)")
            command.add_argument("--deallocate", action="store_true",
                                 help="deallocate the Azure VMs afterwards so they stop billing (waa_deallocate)")
        if name in ("provision", "teardown"):
            command.add_argument("--pool", required=True, metavar="NAME",
                                 help="pool name: 1-12 lowercase letters/digits "
                                      "(VMs waa-<pool>-NN, group waa_pool_<pool>)")
            command.add_argument("--resource-group", metavar="RG", help="resource group (default openadapt-waa)")
        if name == "provision":
            command.add_argument("--count", type=_number(int, minimum=1, maximum=50, inclusive=True), default=1,
                                 metavar="N", help="number of VMs in the pool, 1-50 (default 1)")
            command.add_argument("--ssh-source-cidr", required=True, action="append", metavar="CIDR",
                                 help="address range allowed to SSH in, e.g. 203.0.113.7/32 (repeatable)")
            command.add_argument("--location", metavar="REGION", help="Azure region (default eastus)")
            command.add_argument("--size", metavar="VM_SIZE",
                                 help="first VM size to try (default Standard_D8ds_v5; fallbacks follow)")
        if name == "teardown":
            command.add_argument("--confirm", required=True, metavar="NAME", help="the pool name again")
    emulator = sub.add_parser("emulator", help="build the local WAA emulator image and print its name",
                              description="Build (or find up to date) the local WAA emulator image; print its name.")
    emulator.add_argument("action", nargs="?", choices=["build"], default="build")
    return parser


def parse_extra_vars(items: Sequence[str]) -> dict[str, Any]:
    """-e values: KEY=VALUE (VALUE as JSON when it parses, else text), {json}, or @FILE (YAML or JSON)."""
    values: dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            values.update(_load_vars_file(item[1:]))
        elif item.lstrip().startswith("{"):
            try:
                loaded = json.loads(item)
            except ValueError as err:
                raise CliError(f"extra vars {item!r} are not valid JSON: {err}")
            if not isinstance(loaded, dict):
                raise CliError(f"extra vars {item!r} must be a JSON object")
            values.update(loaded)
        else:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise CliError(f"extra variable {item!r} must look like KEY=VALUE, {{json}} or @FILE")
            try:
                values[key.strip()] = json.loads(raw)
            except ValueError:
                values[key.strip()] = raw
    return values


def _load_vars_file(name: str) -> dict[str, Any]:
    path = Path(name).expanduser()
    if not path.is_file():
        raise CliError(f"extra vars file {name!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            loaded = json.loads(text)
        else:
            import yaml  # PyYAML comes with ansible-core; only loaded for @file.yml

            loaded = yaml.safe_load(text)
    except Exception as err:  # json.JSONDecodeError or yaml.YAMLError
        raise CliError(f"extra vars file {name!r} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                       f"{str(err).splitlines()[0]}")
    if not isinstance(loaded, dict):
        raise CliError(f"extra vars file {name!r} must hold a mapping of names to values")
    return loaded


class _Cancel:
    """SIGINT/SIGTERM: the first asks the run to stop (hosts not finished get exit code 8); a second
    SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> "_Cancel":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.event.set()
        sys.stderr.write(f"\nwaa-run: {signal.Signals(signum).name}: stopping the run (again to interrupt)\n")

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def __call__(self) -> bool:
        return self.event.is_set()


def _early_exit(code: int, message: str, json_mode: bool, playbook: str = "") -> int:
    """A run that never started (usage error, busy lock, no emulator image): one line, and a report for --json."""
    sys.stderr.write(f"waa-run: {message}\n")
    if json_mode:
        table = _table()
        row = table.describe(code) if table is not None else None
        report = {"schema_version": 1, "playbook": playbook, "ok": False, "exit_code": code,
                  "exit_name": row.name if row else "", "hint": row.hint if row else "", "summary": message,
                  "started_at": "", "duration_s": 0.0, "runner_status": "not_started", "rc": None,
                  "artifact_dir": None, "hosts": {}}
        json.dump(report, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    global _JSON_MODE
    raw = list(sys.argv[1:] if argv is None else argv)
    _JSON_MODE = "--json" in raw
    args = build_parser().parse_args(raw)
    if args.command == "emulator":
        from waa_runner import images

        try:
            outcome = images.ensure_emulator(lambda message: print(message, file=sys.stderr))
        except images.ImageBuildError as err:
            from waa_runner import exit_codes

            print(f"waa-run: the emulator image could not be built: {err}", file=sys.stderr)
            return exit_codes.IMAGE_PULL
        print(outcome.image)
        return 0

    from waa_runner import api, exit_codes, state
    from waa_runner.collection import CollectionNotFound

    playbook = SUBCOMMANDS[args.command][0]
    try:
        extra_vars = parse_extra_vars(args.extra_var)
    except CliError as err:
        return _early_exit(exit_codes.USAGE, f"error: {err}", args.json, playbook)
    kwargs: dict[str, Any] = dict(extra_vars=extra_vars, timeout=args.timeout, verbosity=args.verbose,
                                  state_dir=args.state_dir, wait_lock=args.wait_lock)
    if args.command in TARGETED:
        kwargs.update(inventory=args.inventory, local=args.local or args.inventory is None, limit=args.limit,
                      forks=args.forks)
    if playbook in ("provision", "teardown"):
        kwargs.update(pool=args.pool, resource_group=args.resource_group)
    if playbook == "provision":
        cidrs = args.ssh_source_cidr
        kwargs.update(count=args.count, ssh_source_cidr=cidrs[0] if len(cidrs) == 1 else cidrs,
                      location=args.location, vm_size=args.size)
    if playbook == "teardown":
        kwargs.update(confirm=args.confirm)
    if playbook in ("vm_setup", "server_start", "up"):
        kwargs.update(image=args.image, emulator=args.emulator, pull=False if args.no_pull else None,
                      max_fail_percentage=args.max_fail_percentage)
    if playbook in ("vm_setup", "server_start", "up", "probe"):
        kwargs["health_timeout"] = args.health_timeout
    if playbook == "probe":
        kwargs.update(wait=args.wait, force=args.force)
    if playbook == "down":
        kwargs.update(remove=args.remove, deallocate=args.deallocate)
    function = getattr(api, playbook)

    from waa_runner.progress import for_stream

    progress = for_stream(sys.stderr, json_mode=args.json)
    try:
        with _Cancel() as cancel:
            result = function(on_event=progress, cancel=cancel, **kwargs)
    except api.UsageError as err:
        return _early_exit(exit_codes.USAGE, f"error: {err}", args.json, playbook)
    except state.Busy as err:
        return _early_exit(exit_codes.BUSY, str(err), args.json, playbook)
    except CollectionNotFound as err:
        return _early_exit(exit_codes.UNKNOWN, str(err), args.json, playbook)
    except KeyboardInterrupt:
        return _early_exit(130, "interrupted", args.json, playbook)
    except Exception as err:
        from waa_runner import images

        if isinstance(err, images.ImageBuildError):
            return _early_exit(exit_codes.IMAGE_PULL, f"the emulator image could not be built: {err}", args.json,
                               playbook)
        if args.verbose:
            import traceback

            traceback.print_exc()
        return _early_exit(exit_codes.UNKNOWN, f"internal error: {type(err).__name__}: {err}", args.json, playbook)
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    elif playbook == "status":
        sys.stdout.write("\n".join(result.status_lines()) + "\n")
    else:
        sys.stdout.write("\n".join(result.summary_lines()) + "\n")
    sys.stdout.flush()
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
