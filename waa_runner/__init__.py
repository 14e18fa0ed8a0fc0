"""openadapt.waa's Python wrapper: the collection's playbooks as functions returning typed results.

    import waa_runner
    result = waa_runner.up(local=True, emulator=True)
    print(result.exit_code, {name: host.status for name, host in result.hosts.items()})

Functions: vm_setup, server_start, up, probe, down, status, provision, teardown, run_playbook
(waa_runner.api); during an evaluation watch (waa_runner.watch), gate (waa_runner.gate) and
unhealthy_windows (waa_runner.ledger).
Results: RunResult, HostResult, LayerResult, StepResult; progress: ProgressEvent, PullProgress
(waa_runner.results). Errors raised before a run starts: UsageError, Busy.

Attributes are imported on first use, so `import waa_runner` (and `waa-run --help`) stays fast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["vm_setup", "server_start", "up", "probe", "down", "status", "provision", "teardown", "run_playbook",
           "watch", "gate", "unhealthy_windows", "UsageError", "Busy",
           "RunResult", "HostResult", "LayerResult", "StepResult", "ProgressEvent", "PullProgress", "SCHEMA_VERSION"]
_FROM = {
    "waa_runner.api": {"vm_setup", "server_start", "up", "probe", "down", "status", "provision", "teardown",
                       "run_playbook"},
    "waa_runner.options": {"UsageError"},
    "waa_runner.watch": {"watch"},
    "waa_runner.gate": {"gate"},
    "waa_runner.ledger": {"unhealthy_windows"},
    "waa_runner.state": {"Busy"},
    "waa_runner.results": {"RunResult", "HostResult", "LayerResult", "StepResult", "ProgressEvent", "PullProgress",
                           "SCHEMA_VERSION"},
}

if TYPE_CHECKING:
    from waa_runner.api import down, probe, provision, run_playbook, server_start, status, teardown, up, vm_setup
    from waa_runner.options import UsageError
    from waa_runner.results import (SCHEMA_VERSION, HostResult, LayerResult, ProgressEvent, PullProgress, RunResult,
                                    StepResult)
    from waa_runner.state import Busy


def __getattr__(name: str) -> Any:
    import importlib

    for module, names in _FROM.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'waa_runner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
