"""Exit codes and recovery hints: the collection's one table (plugins/module_utils/waa_exit_codes.py).

The health probe returns these codes on the host and `waa-run` exits with them; both read the
same file (loaded here by path, so neither ansible nor an installed collection is imported), and
docs/exit-codes.md is checked against it by a unit test.
"""
from __future__ import annotations

from typing import Iterable

from waa_runner.collection import load_module_util

_table = load_module_util("waa_exit_codes")

ExitCode = _table.ExitCode
EXIT_CODES: dict = _table.EXIT_CODES
LAYER_EXIT_CODES: dict[str, int] = _table.LAYER_EXIT_CODES
describe = _table.describe
verdict = _table.verdict
verdict_in = _table.verdict_in
verdict_of_report = _table.verdict_of_report
verdict_of_result = _table.verdict_of_result
status_of = _table.status_of
failure_message = _table.failure_message
host_line = _table.host_line
code_of = _table.code_of
VERDICT_KEY: str = _table.VERDICT_KEY

READY: int = _table.READY
PREFLIGHT: int = _table.PREFLIGHT
DOCKER_DAEMON: int = _table.DOCKER_DAEMON
IMAGE_PULL: int = _table.IMAGE_PULL
CONTAINER: int = _table.CONTAINER
VM_BOOT: int = _table.VM_BOOT
WAA_SERVER: int = _table.WAA_SERVER
ACCESSIBILITY: int = _table.ACCESSIBILITY
DEADLINE: int = _table.DEADLINE
UNKNOWN: int = _table.UNKNOWN
UNREACHABLE: int = _table.UNREACHABLE
CIRCUIT_OPEN: int = _table.CIRCUIT_OPEN
BUSY: int = _table.BUSY
NOT_ALL_READY: int = _table.NOT_ALL_READY
AZURE: int = _table.AZURE
VM_STOPPED: int = _table.VM_STOPPED
STALE: int = _table.STALE
USAGE: int = _table.USAGE


def name(code: int) -> str:
    return describe(code).name


def hint(code: int) -> str:
    return describe(code).hint


def overall(exit_codes: Iterable[int]) -> int:
    """0 when every host is ready; the shared code when all failures agree; else NOT_ALL_READY."""
    return int(_table.overall(list(exit_codes)))


def markdown_table() -> str:
    """The table as docs/exit-codes.md shows it (`python -m waa_runner.exit_codes` prints it)."""
    lines = ["| code | name | meaning | what to do |", "|---|---|---|---|"]
    for code in sorted(EXIT_CODES):
        row = EXIT_CODES[code]
        lines.append(f"| {row.code} | {row.name} | {row.summary} | {row.hint or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
