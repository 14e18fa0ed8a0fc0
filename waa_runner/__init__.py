"""openadapt.waa's Python wrapper: the collection's playbooks as functions returning typed results.

    from waa_runner import up
    result = up(local=True, emulator=True)
    print(result.exit_code, [h.status for h in result.hosts.values()])

Attributes are imported on first use, so importing the package (and `waa-run --help`) stays fast.
"""
from __future__ import annotations

from typing import Any

__all__ = ["vm_setup", "server_start", "up", "probe", "down", "run_playbook", "RunResult", "HostResult",
           "LayerResult", "StepResult", "ProgressEvent", "PullProgress", "UsageError"]
_FROM_API = {"vm_setup", "server_start", "up", "probe", "down", "run_playbook", "UsageError"}


def __getattr__(name: str) -> Any:
    if name in _FROM_API:
        from waa_runner import api

        return getattr(api, name)
    if name in __all__:
        from waa_runner import results

        return getattr(results, name)
    raise AttributeError(name)
