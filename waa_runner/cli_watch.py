"""The `watch`, `gate` and `ledger` subcommands of waa-run.

waa_runner/cli.py adds them with `cli_watch.add_subcommands(sub)` and hands them over with
`if args.command in cli_watch.COMMANDS: return cli_watch.main(args)`. Until then (and in tests):
`python -m waa_runner.cli_watch watch|gate|ledger ...`.

gate imports neither ansible nor rich: it must answer in well under 0.3 s.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any, Sequence

COMMANDS = ("watch", "gate", "ledger")
USAGE = 64


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535; 0 picks a free one)")
    return int(text)


def add_subcommands(sub: Any) -> None:
    """Add watch, gate and ledger to waa-run's subparsers."""
    formatter = argparse.RawDescriptionHelpFormatter
    w = sub.add_parser("watch", formatter_class=formatter,
                       help="keep the hosts under observation: a live view, the ledger, metrics",
                       description="Collect every targeted host's verdict from its agent (role waa_agent, "
                                   "playbooks/watch_agent.yml) every interval; record every transition in the "
                                   "ledger; stop with Ctrl-C.")
    w.add_argument("-i", "--inventory", metavar="PATH", help="inventory file or directory (default: --local)")
    w.add_argument("--local", action="store_true", help="this machine: read the agent's files directly")
    w.add_argument("-l", "--limit", metavar="PATTERN", help="host pattern within group waa")
    w.add_argument("--interval", type=_positive, default=30.0, metavar="SECONDS",
                   help="seconds between collections; set the agents' waa_agent_interval to the same (default 30)")
    w.add_argument("--max-age", type=_positive, metavar="SECONDS",
                   help="a verdict older than this is stale (default: two intervals)")
    w.add_argument("--agent-dir", metavar="DIR", help="the agents' state directory (default waa_agent_state_dir "
                                                      "of each host, else /var/lib/waa-agent)")
    w.add_argument("--state-dir", metavar="DIR", help="where the ledger goes (default $WAA_STATE_DIR or "
                                                      "~/.local/state/openadapt-waa)")
    w.add_argument("--metrics-port", type=_port, metavar="PORT", help="serve Prometheus metrics on 127.0.0.1:PORT")
    w.add_argument("--json", action="store_true", help="JSON lines on stdout: every host every cycle, transitions")
    w.add_argument("--cycles", type=int, metavar="N", help=argparse.SUPPRESS)
    g = sub.add_parser("gate", help="exit 0 only when HOST's latest verdict is ready and fresh",
                       description="Exit 0 only when HOST's latest verdict is ready and no older than --max-age; "
                                   "else the verdict's exit code (8 when stale, 9 when there is none).")
    g.add_argument("host", metavar="HOST")
    g.add_argument("--max-age", type=_positive, metavar="SECONDS", help="default: two of the agent's intervals")
    g.add_argument("--local", action="store_true", help="HOST is this machine: read the agent's files directly")
    g.add_argument("--agent-dir", metavar="DIR", help="the agent's state directory on this machine")
    g.add_argument("--state-dir", metavar="DIR", help="the watcher's state directory")
    g.add_argument("--json", action="store_true", help="print the answer as one JSON document")
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing, only exit")
    lg = sub.add_parser("ledger", help="the recorded transitions (or unhealthy windows) in a time range",
                        description="Print the health ledger's entries between --since and --until. Times: ISO 8601 "
                                    "(UTC unless a zone is given), UNIX seconds, 'now', or a duration ago "
                                    "(90s, 15m, 2h, 1d).")
    lg.add_argument("--since", metavar="TIME")
    lg.add_argument("--until", metavar="TIME")
    lg.add_argument("--host", metavar="HOST", help="only this host")
    lg.add_argument("--unhealthy", action="store_true", help="print the unhealthy windows of each host instead")
    lg.add_argument("--state-dir", metavar="DIR")
    lg.add_argument("--json", action="store_true", help="JSON lines")


def main(args: argparse.Namespace) -> int:
    if args.command == "gate":
        return _gate(args)
    if args.command == "ledger":
        return _ledger(args)
    return _watch(args)


# ------------------------------------------------------------------------------ gate
def _gate(args: argparse.Namespace) -> int:
    from waa_runner.gate import gate

    result = gate(args.host, max_age=args.max_age, state_dir=args.state_dir, agent_dir=args.agent_dir,
                  local=True if args.local else None)
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    elif not args.quiet:
        age = f" ({result.age_s:.1f}s old)" if result.age_s is not None else ""
        line = f"{result.host:<16} {'open' if result.ok else 'closed':<7} {result.exit_code:3d}  {result.message}{age}"
        if not result.ok and result.hint:
            line += f"  hint: {result.hint}"
        print(line)
    return result.exit_code


# ------------------------------------------------------------------------------ ledger
def _ledger(args: argparse.Namespace) -> int:
    from waa_runner.ledger import Ledger, default_path, iso, parse_time

    try:
        since, until = parse_time(args.since), parse_time(args.until)
    except ValueError as err:
        print(f"waa-run ledger: {err}", file=sys.stderr)
        return USAGE
    book = Ledger(default_path(args.state_dir))
    if args.unhealthy:
        hosts = [args.host] if args.host else sorted({str(e.get("host")) for e in book.entries()})
        for host in hosts:
            for window in book.unhealthy_windows(host, since, until):
                if args.json:
                    print(json.dumps(window.to_dict(), sort_keys=True))
                else:
                    end = iso(window.end) if window.end is not None else "(ongoing)"
                    print(f"{host:<16} {iso(window.start)} -> {end}  {window.duration_s:8.1f}s  "
                          f"{window.state} {window.exit_code} {window.message}")
        return 0
    for entry in book.entries(since, until, args.host):
        if args.json:
            print(json.dumps(entry, sort_keys=True))
        else:
            print(_entry_line(entry))
    return 0


def _entry_line(entry: dict[str, Any]) -> str:
    when = str(entry.get("time_iso") or entry.get("time"))
    if entry.get("kind") == "heal":
        return f"{when} {entry.get('host'):<16} heal  {entry.get('action')}: {entry.get('message')}"
    return (f"{when} {entry.get('host'):<16} {entry.get('from') or '-'} -> {entry.get('to')}  "
            f"{entry.get('exit_code')} {entry.get('message') or ''}  [{entry.get('source')}]")


# ------------------------------------------------------------------------------ watch
class _PlainView:
    """Plain lines: every host at the first cycle, then one line per transition or action."""

    def __init__(self, stream: Any = sys.stdout):
        self.stream = stream
        self.first = True

    def __call__(self, cycle: Any) -> None:
        from waa_runner.ledger import iso

        if self.first:
            for view in cycle.hosts.values():
                self.stream.write(f"{iso(time.time())} {view.host:<16} {view.state:<11} {view.exit_code:3d}  "
                                  f"{view.message}\n")
            self.first = False
        for entry in cycle.transitions:
            self.stream.write(_entry_line(entry) + "\n")
        self.stream.flush()


class _JsonView:
    def __init__(self, stream: Any = sys.stdout):
        self.stream = stream

    def __call__(self, cycle: Any) -> None:
        for entry in cycle.transitions:
            self.stream.write(json.dumps({"event": entry.get("kind") or "transition", **entry}, sort_keys=True) + "\n")
        for view in cycle.hosts.values():
            self.stream.write(json.dumps({"event": "host", "cycle": cycle.number, **view.to_dict()},
                                         sort_keys=True) + "\n")
        self.stream.write(json.dumps({"event": "cycle", "cycle": cycle.number, "hosts": len(cycle.hosts),
                                      "wall_s": round(cycle.wall_s, 3), "cpu_s": round(cycle.cpu_s, 4),
                                      "cpu_per_host_ms": round(cycle.cpu_per_host_ms, 2)}) + "\n")
        self.stream.flush()


class _LiveView:
    """A rich table on a terminal: per host state, exit code, layer, since when, last change."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=False)
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def __call__(self, cycle: Any) -> None:
        from rich.table import Table

        now = time.time()
        table = Table(title=f"waa-run watch: {sum(v.ready for v in cycle.hosts.values())}/{len(cycle.hosts)} ready "
                            f"(cycle {cycle.number}, {cycle.cpu_per_host_ms:.1f} ms CPU per host)")
        for column in ("host", "state", "code", "layer", "since", "last change", "message"):
            table.add_column(column, overflow="fold" if column == "message" else "ellipsis")
        for view in sorted(cycle.hosts.values(), key=lambda v: v.host):
            style = "green" if view.ready else ("yellow" if view.source == "watch" else "red")
            change = f"{now - view.last_change:.0f}s ago" if view.last_change else "-"
            table.add_row(view.host, f"[{style}]{view.state}[/]", str(view.exit_code), view.layer or "-",
                          _ago(now - view.since), change, view.message)
        self.live.update(table, refresh=True)

    def stop(self) -> None:
        self.live.stop()


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _watch(args: argparse.Namespace) -> int:
    from waa_runner.watch import WatchError, watch

    view: Any
    if args.json:
        view = _JsonView()
    elif sys.stdout.isatty():
        view = _LiveView()
    else:
        view = _PlainView()
    try:
        watch(inventory=args.inventory, local=args.local or args.inventory is None, limit=args.limit,
              interval=args.interval, max_age=args.max_age, state_dir=args.state_dir, agent_dir=args.agent_dir,
              metrics_port=args.metrics_port, on_cycle=view, cycles=args.cycles)
    except WatchError as err:
        print(f"waa-run watch: {err}", file=sys.stderr)
        return USAGE
    except OSError as err:  # e.g. the metrics port is taken
        print(f"waa-run watch: {err}", file=sys.stderr)
        return USAGE
    finally:
        if isinstance(view, _LiveView):
            view.stop()
    if not args.json:
        print("waa-run watch: stopped", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="waa-run")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_subcommands(sub)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return USAGE if exit_.code not in (0, None) else 0
    return main(args)


if __name__ == "__main__":
    sys.exit(run())
