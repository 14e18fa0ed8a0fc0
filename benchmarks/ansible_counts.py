#!/usr/bin/env python3
"""What Ansible did per host in one run, counted from ansible-runner's job events.

A *task result* is one runner_on_ok/failed/skipped/unreachable event of a host (what Ansible
prints as ok/changed/failed/skipping; every one of them cost the controller a worker process).
A *module call* is a result of an action that ran a module on the host: every action except the
ones below, which run on the controller only (and skipped results, which run nothing). An action
plugin that executes a module (openadapt.waa.waa_health_probe) counts as one call.

Usage as a script: .venv/bin/python benchmarks/ansible_counts.py <artifacts dir of a run>
(waa-run's report names its run directory, `artifact_dir`; the events are under artifacts/run).
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

RESULT_EVENTS = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}
CONTROLLER_ONLY = {
    "set_fact", "include_tasks", "include_role", "import_tasks", "import_role", "meta", "debug", "assert",
    "fail", "set_stats", "add_host", "group_by", "include_vars", "wait_for_connection",
    "validate_argument_spec", "waa_validate", "waa_publish", "waa_fail",
}


def _short(action: str) -> str:
    return action.rsplit(".", 1)[-1]


@dataclass
class HostCounts:
    results: int = 0
    module_calls: int = 0
    skipped: int = 0
    by_action: Counter = field(default_factory=Counter)
    calls_by_action: Counter = field(default_factory=Counter)


def count(artifact_dir: str | Path) -> dict[str, HostCounts]:
    """{host: counts} from the job_events of one ansible-runner artifact directory (or waa-run run directory)."""
    hosts: dict[str, HostCounts] = {}
    events = Path(artifact_dir, "job_events")
    if not events.is_dir():  # a waa-run run directory (the report's artifact_dir)
        events = Path(artifact_dir, "artifacts", "run", "job_events")
    for path in sorted(events.glob("*.json")):
        try:
            event = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if event.get("event") not in RESULT_EVENTS:
            continue
        data = event.get("event_data") or {}
        host = data.get("host") or "?"
        action = _short(str(data.get("resolved_action") or data.get("task_action") or "?"))
        counts = hosts.setdefault(host, HostCounts())
        counts.results += 1
        counts.by_action[action] += 1
        if event["event"] == "runner_on_skipped":
            counts.skipped += 1
        elif event["event"] != "runner_on_unreachable" and action not in CONTROLLER_ONLY \
                and not data.get("delegate_to") == "localhost":
            counts.module_calls += 1
            counts.calls_by_action[action] += 1
    return hosts


def per_host(counts: dict[str, HostCounts]) -> tuple[float, float]:
    """(task results, module calls) per host, averaged over the hosts of the run."""
    if not counts:
        return 0.0, 0.0
    return (sum(c.results for c in counts.values()) / len(counts),
            sum(c.module_calls for c in counts.values()) / len(counts))


def describe(counts: dict[str, HostCounts]) -> str:
    lines = []
    for host, c in sorted(counts.items()):
        calls = ", ".join(f"{a} {n}" for a, n in c.calls_by_action.most_common())
        lines.append(f"{host}: {c.results} task results ({c.skipped} skipped), {c.module_calls} module calls"
                     f" [{calls}]")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe(count(sys.argv[1])))
