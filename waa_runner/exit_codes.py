"""Exit codes and recovery hints: the collection's one table (module_utils/waa_exit_codes.py).

The health probe returns these codes on the host and waa-run exits with them; both read the same
file, so they cannot drift apart. docs/exit-codes.md is checked against it by a test.
"""
from __future__ import annotations

from waa_runner.collection import load_module_util

_table = load_module_util("waa_exit_codes")

ExitCode = _table.ExitCode
EXIT_CODES: dict[int, "ExitCode"] = _table.EXIT_CODES
LAYER_EXIT_CODES: dict[str, int] = _table.LAYER_EXIT_CODES
ROLE_EXIT_CODES: dict[str, int] = _table.ROLE_EXIT_CODES
describe = _table.describe

READY = _table.READY
PREFLIGHT = _table.PREFLIGHT
DOCKER_DAEMON = _table.DOCKER_DAEMON
IMAGE_PULL = _table.IMAGE_PULL
CONTAINER = _table.CONTAINER
VM_BOOT = _table.VM_BOOT
WAA_SERVER = _table.WAA_SERVER
ACCESSIBILITY = _table.ACCESSIBILITY
DEADLINE = _table.DEADLINE
UNKNOWN = _table.UNKNOWN
UNREACHABLE = _table.UNREACHABLE
CIRCUIT_OPEN = _table.CIRCUIT_OPEN
BUSY = _table.BUSY
NOT_ALL_READY = _table.NOT_ALL_READY
USAGE = _table.USAGE


def overall(codes: list[int]) -> int:
    """0 when every host is ready; the shared code when all failures agree; else NOT_ALL_READY."""
    failed = {code for code in codes if code != READY}
    if not failed:
        return READY
    if len(failed) == 1:
        return failed.pop()
    return NOT_ALL_READY
