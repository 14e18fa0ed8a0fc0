"""Results of a run: the data model (waa_runner.model), the reduction of ansible-runner's events
into one verdict per host (waa_runner.reducer) and the rendering (waa_runner.render).

This module keeps the names harnesses import (`from waa_runner.results import HostResult`).
"""
from __future__ import annotations

from waa_runner.model import (ABORTED, DONE, FAILED, NOT_READY, READY, SCHEMA_VERSION, STOPPED, UNFINISHED,
                              UNREACHABLE, USAGE, VM_STOPPED, HostResult, LayerResult, ProgressEvent, PullProgress,
                              RunResult, StepResult, first_line)
from waa_runner.reducer import EventReducer, build_run_result, overall_exit_code, status_of

__all__ = [
    "ABORTED", "DONE", "FAILED", "NOT_READY", "READY", "SCHEMA_VERSION", "STOPPED", "UNFINISHED", "UNREACHABLE",
    "USAGE", "VM_STOPPED", "EventReducer", "HostResult", "LayerResult", "ProgressEvent", "PullProgress", "RunResult",
    "StepResult", "build_run_result", "first_line", "overall_exit_code", "status_of",
]
