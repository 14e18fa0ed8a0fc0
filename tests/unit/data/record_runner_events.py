#!/usr/bin/env python3
"""Turn a run directory's ansible-runner events into the compact recording the unit tests replay.

    python tests/unit/data/record_runner_events.py <run dir> > tests/unit/data/runner_events_up.json

Keeps the events the reduction reads (runner_*, playbook_on_stats, playbook_on_no_hosts_matched)
and, of their event_data, only what it reads; machine-specific paths are shortened.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

KEEP = ("host", "role", "task", "task_action", "task_path", "duration", "start", "end", "ignore_errors")
STATS = ("changed", "dark", "failures", "ignored", "ok", "processed", "rescued", "skipped")
RES_KEEP = ("changed", "msg", "exit_code", "hint", "failed_layer", "failure_class", "ready", "message", "layers",
            "pull_progress", "attempts", "unreachable", "duration_s", "waa_verdict", "rc", "timed_out")


def compact(event: dict) -> dict | None:
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    if kind in ("playbook_on_stats", "playbook_on_no_hosts_matched"):
        return {"event": kind, "event_data": {k: v for k, v in data.items() if k in STATS}}
    if not kind.startswith("runner_") or kind.startswith("runner_item_"):
        return None
    out = {k: data[k] for k in KEEP if k in data}
    if "task_path" in out:
        out["task_path"] = "/c/" + out["task_path"].split("/waa/", 1)[-1].split("/main/", 1)[-1]
    res = data.get("res") or {}
    out["res"] = {k: res[k] for k in RES_KEEP if k in res} if isinstance(res, dict) else {}
    return {"event": kind, "event_data": out}


def main(run_dir: str) -> None:
    artifacts = Path(run_dir) / "artifacts" / "run"
    files = sorted((artifacts / "job_events").glob("*.json"), key=lambda p: int(p.name.split("-")[0]))
    events = [e for e in (compact(json.loads(p.read_text())) for p in files) if e]
    print(json.dumps({"status": (artifacts / "status").read_text().strip(),
                      "rc": int((artifacts / "rc").read_text().strip()), "events": events}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
