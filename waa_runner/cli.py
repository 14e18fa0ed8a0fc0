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
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn, Sequence

def _subcommands() -> dict[str, tuple[str, str]]:
    from waa_runner.options import COMMANDS

    return {function.replace("_", "-"): (function, summary) for function, (_playbook, summary) in COMMANDS.items()}


SUBCOMMANDS = _subcommands()


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
    def error(self, message: str) -> NoReturn:  # usage errors get the table's USAGE code, not argparse's 2
        self.print_usage(sys.stderr)
        sys.exit(_early_exit(usage_code(), f"error: {message}", _JSON_MODE))


# The CLI's own options (not the API's): how the result is printed.
JSON_HELP = "print only the JSON report on stdout"
EXTRA_VARS_HELP = ("extra variable (repeatable); VALUE is read as JSON when it parses (3, true, [..]), else as text; "
                   "@FILE loads a YAML/JSON mapping. Give secrets as @FILE: a command line is visible to other users "
                   "of the machine")
GROUPS = {"inventory": "targets", "local": "targets", "limit": "targets", "forks": "targets", "emulator": "image",
          "image": "image", "pull": "image", "health_timeout": "health", "max_fail_percentage": "fleet"}


def _add_options(command: argparse.ArgumentParser, function: str) -> None:
    """One subcommand's flags, from the options table (waa_runner.options): the one description of each."""
    from waa_runner import options

    groups: dict[str, Any] = {}
    for option in options.for_command(function):
        if not option.flags:
            continue
        group_name = GROUPS.get(option.name, "run")
        if group_name not in groups:
            groups[group_name] = command.add_argument_group(group_name)
        extra = dict(option.cli or {})
        if "action" not in extra:
            extra.setdefault("default", option.default)
        elif extra["action"] in ("count",):
            extra.setdefault("default", option.default)
        groups[group_name].add_argument(*option.flags, dest=option.name, help=option.help.replace("%", "%%"),
                                        required=option.required, **extra)
    run = groups.get("run") or command.add_argument_group("run")
    run.add_argument("-e", "--extra-var", action="append", default=[], metavar="KEY=VALUE|@FILE", help=EXTRA_VARS_HELP)
    run.add_argument("--json", action="store_true", help=JSON_HELP)


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="waa-run", formatter_class=formatter, epilog=_epilog(),
                     description="Bring Windows Agent Arena hosts to ready, and say in one line why one is not.")
    parser.add_argument("--version", action=_Version, help="print the versions of waa-run, the collection and ansible")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (function, help_text) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, formatter_class=formatter,
                                 epilog="exit codes: see `waa-run --help`")
        _add_options(command, function)
    from waa_runner import cli_watch

    cli_watch.add_subcommands(sub)
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
    # a regular file, or a readable pipe such as /dev/stdin or /dev/fd/N (a secret that never rests in a file)
    if not path.exists() or path.is_dir():
        raise CliError(f"extra vars file {name!r} does not exist")
    try:
        text = path.read_text()
    except OSError as err:
        raise CliError(f"extra vars file {name!r} cannot be read: {err.strerror}")
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
        report: dict[str, Any] = {"schema_version": 1, "playbook": playbook, "ok": False, "exit_code": code,
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
    from waa_runner import cli_watch

    if args.command in cli_watch.COMMANDS:
        return cli_watch.main(args)
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

    from waa_runner import options

    playbook = SUBCOMMANDS[args.command][0]
    try:
        extra_vars = parse_extra_vars(args.extra_var)
    except CliError as err:
        return _early_exit(exit_codes.USAGE, f"error: {err}", args.json, playbook)
    kwargs: dict[str, Any] = {option.name: getattr(args, option.name) for option in options.for_command(playbook)
                              if option.flags}
    kwargs["extra_vars"] = extra_vars
    if playbook in options.TARGETED and args.inventory is None:
        kwargs["local"] = True
    function = getattr(api, playbook)

    from waa_runner.progress import for_stream

    progress = for_stream(sys.stderr, json_mode=args.json)
    try:
        with _Cancel() as cancel:
            result = function(on_event=progress, cancel=cancel, **kwargs)
    except options.UsageError as err:
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
