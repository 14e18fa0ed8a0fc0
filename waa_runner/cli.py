"""waa-run: the playbooks as a command, with progress, a one-screen summary and documented exit codes.

Imports stay light at start (no ansible, no ansible_runner) so `waa-run --help` answers at once;
the heavy imports happen when a run starts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

USAGE_EXIT = 64  # the table's USAGE row (loaded lazily; this literal is checked by a unit test)
EPILOG = """exit codes: 0 ready, 1 preflight, 2 docker daemon, 3 image pull, 4 container, 5 vm boot,
6 waa server, 7 accessibility, 8 deadline, 9 unknown, 10 unreachable, 11 circuit open, 12 busy,
13 not all ready (mixed), 64 usage. See docs/exit-codes.md for the hints."""

SUBCOMMANDS = {
    "vm-setup": ("vm_setup", "set hosts up from scratch: preflight, engine, image, container, readiness"),
    "server-start": ("server_start", "start existing containers and wait until WAA is ready"),
    "up": ("up", "vm-setup where the container is missing, else server-start; then readiness"),
    "probe": ("probe", "read-only health report of every host"),
    "down": ("down", "stop the containers (the Windows disk stays)"),
}


class CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors get their own exit code, not argparse's 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(USAGE_EXIT)


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="waa-run", description="Bring Windows Agent Arena hosts to ready and say why they are not.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (_playbook, help_text) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        target = command.add_mutually_exclusive_group()
        target.add_argument("-i", "--inventory", help="inventory file or directory (default: --local)")
        target.add_argument("--local", action="store_true", help="target this machine (the default without -i)")
        command.add_argument("-l", "--limit", help="host pattern, e.g. waa_pool_a or 'host1,host2'")
        command.add_argument("--emulator", action="store_true",
                             help="use the local WAA emulator image instead of windowsarena/winarena (rehearsal)")
        command.add_argument("--image", help="image reference to run (waa_image)")
        command.add_argument("--forks", type=int, default=20, help="hosts worked on at once (default 20)")
        command.add_argument("--timeout", type=_positive(float), help="overall deadline in seconds (exit 8 when hit)")
        command.add_argument("--health-timeout", type=_positive(float), help="readiness deadline per host in seconds")
        command.add_argument("-e", "--extra-var", action="append", default=[], metavar="KEY=VALUE|@FILE",
                             help="extra variable (repeatable); @file.yml or @file.json loads a file")
        command.add_argument("--json", action="store_true", help="print only the JSON report on stdout")
        command.add_argument("--state-dir", help="where run artifacts and locks live (default ~/.local/state/openadapt-waa)")
        command.add_argument("--wait-lock", type=float, default=0.0, metavar="SECONDS",
                             help="wait this long for another run on the same hosts (default: fail at once, exit 12)")
        command.add_argument("-v", "--verbose", action="count", default=0, help="more ansible output in the artifacts")
        if name == "probe":
            command.add_argument("--wait", action="store_true", help="wait for readiness up to --health-timeout")
            command.add_argument("--force", action="store_true", help="probe through an open circuit breaker")
        if name == "down":
            command.add_argument("--remove", action="store_true", help="remove the containers too (the disk stays)")
    emulator = sub.add_parser("emulator", help="the local WAA emulator image")
    emulator.add_argument("action", choices=["build"], help="build: build (or find up to date) the emulator image")
    return parser


def parse_extra_vars(items: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            path = Path(item[1:]).expanduser()
            if not path.is_file():
                raise CliError(f"extra vars file {item[1:]!r} does not exist")
            text = path.read_text()
            try:
                loaded = json.loads(text) if path.suffix == ".json" else _yaml(text)
            except ValueError as err:
                raise CliError(f"extra vars file {item[1:]!r} is not valid: {err}")
            if not isinstance(loaded, dict):
                raise CliError(f"extra vars file {item[1:]!r} must hold a mapping of names to values")
            values.update(loaded)
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"extra variable {item!r} must look like KEY=VALUE or @FILE")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    return values


def _yaml(text: str) -> Any:
    import yaml  # comes with ansible-core

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(str(err))


def _print_summary(result, stream) -> None:
    stream.write(f"{result.summary}\n")
    for host in sorted(result.hosts.values(), key=lambda h: (h.ok, h.name)):
        stream.write(host.summary_line() + "\n")
    if not result.ok:
        from waa_runner.exit_codes import describe

        row = describe(result.exit_code)
        stream.write(f"exit {result.exit_code} ({row.name}): {row.summary}\n")
        if result.artifact_dir:
            stream.write(f"run artifacts: {result.artifact_dir}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "emulator":
        from waa_runner import images

        try:
            outcome = images.ensure_emulator(lambda message: print(message, file=sys.stderr))
        except images.ImageBuildError as err:
            print(f"waa-run: {err}", file=sys.stderr)
            return 1
        print(outcome.image)
        return 0

    from waa_runner import api, state
    from waa_runner.progress import PlainProgress, TerminalProgress

    try:
        extra_vars = parse_extra_vars(args.extra_var)
    except CliError as err:
        print(f"waa-run: error: {err}", file=sys.stderr)
        return USAGE_EXIT
    playbook = SUBCOMMANDS[args.command][0]
    progress = None
    if not args.json:
        progress = TerminalProgress() if sys.stderr.isatty() else PlainProgress()
    kwargs: dict[str, Any] = dict(
        inventory=args.inventory, local=args.local or not args.inventory, limit=args.limit, extra_vars=extra_vars,
        image=args.image, emulator=args.emulator, forks=args.forks, timeout=args.timeout,
        health_timeout=args.health_timeout, on_event=progress, verbosity=args.verbose, state_dir=args.state_dir,
        wait_lock=args.wait_lock)
    if args.inventory:
        kwargs["local"] = False
    try:
        if playbook == "probe":
            result = api.probe(wait=args.wait, force=args.force, **kwargs)
        elif playbook == "down":
            result = api.down(remove=args.remove, **kwargs)
        else:
            result = api.run_playbook(playbook, **kwargs)
    except api.UsageError as err:
        print(f"waa-run: error: {err}", file=sys.stderr)
        return USAGE_EXIT
    except state.Busy as err:
        print(f"waa-run: {err}", file=sys.stderr)
        from waa_runner.exit_codes import BUSY

        return BUSY
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        _print_summary(result, sys.stdout)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
