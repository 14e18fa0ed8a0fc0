"""ansible-runner's events → one verdict per host → HostResults and the run's exit code.

The collection hands its verdicts over as data (the result key `waa_verdict`: exit_code,
exit_name, step, layer, failure_class, message, hint; plugins/module_utils/waa_exit_codes.py):
the health probe on every report, `openadapt.waa.waa_fail` at every planned fail site,
`openadapt.waa.waa_validate` for bad input. For each host the latest of these counts:
- the latest result that carries a `waa_verdict` (a report or a failure);
- a failed task that carries none (an import error, a crashed module, a bug): a verdict of its
  own, exit code 9 (unknown) with the task's own message - never a diagnosis guessed from a role
  name, a task name, a path or a message;
- an unreachable host, or a task whose SSH connection broke under it (Ansible's `unreachable`, or
  a module result with rc 255 - ssh's own "connection failed" code): exit code 10.
A failure that the play rescued (the host's stats count no failure) does not count. This module is
the one place that turns events into verdicts; it imports no ansible.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, Callable

from waa_runner import exit_codes as codes
from waa_runner.model import (ABORTED, DONE, FAILED, READY, STOPPED, UNFINISHED, VM_STOPPED, HostResult,
                              LayerResult, ProgressEvent, PullProgress, RunResult, StepResult)

LOG = logging.getLogger("waa_runner")
VERDICT_KEY = codes.VERDICT_KEY
_RESULT_EVENTS = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
                  "runner_on_unreachable": "unreachable"}
_STOPPED_RUN = ("timeout", "canceled")
_AZURE_RUNNING = ("running", "starting")
_VALIDATE_ACTION = "waa_validate"


def role_name(role: Any) -> str | None:
    """'openadapt.waa.winarena_container' and 'winarena_container' are the same role."""
    return str(role).rsplit(".", 1)[-1] if role else None


failure_message = codes.failure_message
status_of = codes.status_of
_valid_verdict = codes.verdict_in


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


class _HostState:
    def __init__(self, name: str) -> None:
        self.name = name
        self.phase: str | None = None
        self.verdict: dict[str, Any] | None = None  # the latest verdict
        self.verdict_seq = -1
        self.verdict_is_failure = False
        self.report: dict[str, Any] | None = None  # the latest health report (its layers)
        self.steps: list[StepResult] = []
        self.changed = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.pull_seen: float | None = None
        self.azure: dict[str, Any] | None = None

    def seen(self, start: Any, end: Any) -> None:
        for stamp in (_timestamp(start), _timestamp(end)):
            if stamp is None:
                continue
            if self.first is None or stamp < self.first:
                self.first = stamp
            if self.last is None or stamp > self.last:
                self.last = stamp

    def duration(self) -> float:
        if self.first and self.last:
            return round((self.last - self.first).total_seconds(), 3)
        return round(sum(step.duration_s for step in self.steps), 3)


class EventReducer:
    """Feed it ansible-runner events in order (event_handler); ask it for per-host results at the end.

    `expects_health`: hosts of this playbook end with a health verdict (all but down, provision, teardown).
    """

    def __init__(self, playbook: str, on_event: Callable[[ProgressEvent], None] | None = None,
                 expects_health: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.playbook = playbook
        self.on_event = on_event
        self.expects_health = expects_health
        # what a host without a verdict is at the end: down stops hosts; provision/teardown just finish
        self.done_status = STOPPED if playbook == "down" else DONE
        self.clock = clock
        self.hosts: dict[str, _HostState] = {}
        self.stats: dict[str, Any] | None = None
        self.no_hosts_matched = False
        self._seq = 0
        self._callback_failed = False

    def _host(self, name: str) -> _HostState:
        if name not in self.hosts:
            self.hosts[name] = _HostState(name)
        return self.hosts[name]

    def _emit(self, event: ProgressEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a broken progress callback must not break the run or its result
            if not self._callback_failed:
                LOG.exception("the on_event callback failed; further errors are not logged")
            self._callback_failed = True

    def __call__(self, event: dict[str, Any]) -> bool:
        """ansible-runner's event_handler: reduce the event and let runner keep it (True)."""
        try:
            self.feed(event)
        except Exception:  # never let a surprising event shape end the run
            LOG.exception("could not reduce event %r", event.get("event"))
        return True

    def _verdict(self, host: _HostState, verdict: dict[str, Any], failure: bool) -> None:
        host.verdict, host.verdict_seq, host.verdict_is_failure = verdict, self._seq, failure

    def feed(self, event: dict[str, Any]) -> None:
        self._seq += 1
        kind = str(event.get("event") or "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_no_hosts_matched":
            self.no_hosts_matched = True
            return
        if kind == "playbook_on_stats":
            self.stats = data
            return
        name = data.get("host")
        if not name or not kind.startswith("runner_") or kind.startswith("runner_item_"):
            return
        host = self._host(str(name))
        role = role_name(data.get("role"))
        task = str(data.get("task") or "")
        res: dict[str, Any] = data["res"] if isinstance(data.get("res"), dict) else {}
        facts = res.get("ansible_facts")
        if isinstance(facts, dict) and isinstance(facts.get("waa_azure_status"), dict):
            host.azure = facts["waa_azure_status"]
        host.seen(data.get("start"), data.get("end"))

        if kind == "runner_on_start":
            # Validation is one phase at the start; a role's own argument check is part of that role.
            validating = str(data.get("task_action") or "").endswith(_VALIDATE_ACTION)
            phase = "validate" if validating else role
            if phase and phase != host.phase:
                host.phase = phase
                self._emit(ProgressEvent("phase", host.name, phase=phase, message=task))
            return

        progress = res.get("pull_progress")
        if isinstance(progress, dict) and progress:
            now = self.clock()
            if host.pull_seen is None:
                host.pull_seen = now
            pull = PullProgress.from_dict(progress, observed_s=now - host.pull_seen)
            self._emit(ProgressEvent("pull", host.name, phase=host.phase, pull=pull, message=pull.line()))
        if kind == "runner_retry":
            if not progress:
                attempts = res.get("attempts")
                self._emit(ProgressEvent("retry", host.name, phase=host.phase,
                                         message=f"{task} (attempt {attempts})" if attempts else task))
            return

        status = _RESULT_EVENTS.get(kind)
        if status is None:
            return
        if status == "ok" and res.get("changed"):
            status = "changed"
        if status == "failed" and data.get("ignore_errors"):
            status = "ignored"
        verdict = codes.verdict_of_result(res, failed=status == "failed", unreachable=status == "unreachable",
                                          step=role or task, task=task)
        if status == "failed" and verdict is not None and verdict["exit_code"] == codes.UNREACHABLE:
            status = "unreachable"
        if isinstance(res.get("layers"), list):
            host.report = res
        duration = data.get("duration")
        step = StepResult(role=role, task=task, status=status,
                          duration_s=round(float(duration), 3) if isinstance(duration, (int, float)) else 0.0)
        host.steps.append(step)
        if status == "changed":
            host.changed += 1
        if status in ("ok", "changed") and verdict is not None:
            self._verdict(host, verdict, failure=False)
            if isinstance(res.get("layers"), list):  # a health report (not a step handing a verdict on)
                self._emit(ProgressEvent("health", host.name, phase=host.phase, message="ready" if verdict["exit_code"] ==
                                         codes.READY else f"not ready: {verdict.get('message')}"))
        elif status == "failed" and verdict is not None:
            self._verdict(host, verdict, failure=True)
            self._emit(ProgressEvent("host_failed", host.name, phase=host.phase, step=step,
                                     message=str(verdict.get("message") or "")))
        elif status == "unreachable" and verdict is not None:
            self._verdict(host, verdict, failure=True)
            self._emit(ProgressEvent("host_unreachable", host.name, phase=host.phase, step=step,
                                     message=str(verdict.get("message") or "")))
        else:
            self._emit(ProgressEvent("step", host.name, phase=host.phase, step=step, message=task))

    # ------------------------------------------------------------------------------ results
    def _stat(self, key: str, host: str) -> int:
        values = (self.stats or {}).get(key) or {}
        return int(values.get(host, 0)) if isinstance(values, dict) else 0

    def results(self, runner_status: str) -> dict[str, HostResult]:
        processed = (self.stats or {}).get("processed")
        for name in processed if isinstance(processed, dict) else {}:
            self._host(str(name))  # a host the play ran for without a single task result
        return {name: self._result(state, runner_status) for name, state in self.hosts.items()}

    def _result(self, host: _HostState, runner_status: str) -> HostResult:
        base: dict[str, Any] = dict(name=host.name, steps=host.steps, phase=host.phase, changed=host.changed,
                                    duration_s=host.duration(), azure=host.azure)
        report = host.report or {}
        layers = [LayerResult.from_dict(layer) for layer in report.get("layers") or [] if isinstance(layer, dict)]
        verdict, failure = host.verdict, host.verdict_is_failure
        if verdict is not None and failure and self.stats is not None and \
                self._stat("failures", host.name) == 0 and self._stat("dark", host.name) == 0:
            verdict, failure = None, False  # Ansible counted no failure: the play rescued it
            if host.report is not None and _valid_verdict(report):
                verdict = report[VERDICT_KEY]
        stopped = runner_status in _STOPPED_RUN
        if verdict is None:
            return self._without_verdict(host, runner_status, layers, base)
        code = int(verdict["exit_code"])
        if stopped and code != codes.READY and not failure:  # a host that failed keeps its own code
            return self._unfinished(host, runner_status, layers, base, verdict)
        status = status_of(verdict)
        message = str(verdict.get("message") or "")
        return HostResult(status=status, exit_code=code, message=message if code else (message or "ready"),
                          hint="" if code == codes.READY else str(verdict.get("hint") or codes.hint(code)),
                          failed_layer=None if code == codes.READY else (verdict.get("layer") or verdict.get("step")),
                          failure_class=verdict.get("failure_class"), layers=layers, **base)

    def _without_verdict(self, host: _HostState, runner_status: str, layers: list[LayerResult],
                         base: dict[str, Any]) -> HostResult:
        stopped = runner_status in _STOPPED_RUN
        powerstate = str((host.azure or {}).get("powerstate") or "running")
        if self.expects_health and not stopped and powerstate not in _AZURE_RUNNING:
            return HostResult(status=VM_STOPPED, exit_code=codes.VM_STOPPED,
                              message=f"the Azure VM {(host.azure or {}).get('vm') or host.name} is {powerstate}",
                              hint=codes.hint(codes.VM_STOPPED), **base)
        if stopped:
            return self._unfinished(host, runner_status, layers, base, None)
        if not self.expects_health:
            return HostResult(status=self.done_status, exit_code=codes.READY, message=f"{self.playbook} done", **base)
        if self.stats is not None:
            return HostResult(status=ABORTED, exit_code=codes.UNKNOWN,
                              message=f"the play ended for this host in {host.phase or 'setup'} before its verdict "
                                      f"(another host's failure stopped the run)",
                              hint="fix the failed hosts, then run again", layers=layers, **base)
        return HostResult(status=FAILED, exit_code=codes.UNKNOWN, message="the run ended without a verdict",
                          hint=codes.hint(codes.UNKNOWN), layers=layers, **base)

    def _unfinished(self, host: _HostState, runner_status: str, layers: list[LayerResult], base: dict[str, Any],
                    verdict: dict[str, Any] | None) -> HostResult:
        why = "the overall deadline (--timeout) passed" if runner_status == "timeout" else "the run was canceled"
        message = f"{why} while in {host.phase or 'setup'}"
        if verdict:
            message += f" (last verdict: {verdict.get('message')})"
        return HostResult(status=UNFINISHED, exit_code=codes.DEADLINE, message=message,
                          hint=codes.hint(codes.DEADLINE), failed_layer=(verdict or {}).get("layer"),
                          failure_class=(verdict or {}).get("failure_class"), layers=layers, **base)


def overall_exit_code(hosts: dict[str, HostResult], *, runner_status: str, rc: int | None,
                      no_hosts_matched: bool = False) -> int:
    """The run's code: 0 when every host is ready (down: stopped); the shared code of the failed hosts;
    NOT_ALL_READY when they differ. Hosts aborted by another host's failure follow that failure."""
    if not hosts:
        if runner_status in _STOPPED_RUN:
            return codes.DEADLINE
        if no_hosts_matched or rc == 0:
            return codes.USAGE
        return codes.UNKNOWN
    primary = [host.exit_code for host in hosts.values() if host.status != ABORTED]
    code = codes.overall(primary)
    if code == codes.READY and any(host.status == ABORTED for host in hosts.values()):
        return codes.UNKNOWN
    return code


def build_run_result(playbook: str, reducer: EventReducer, runner_status: str, rc: int | None, started: float,
                     artifact_dir: str | None, started_at: str = "") -> RunResult:
    hosts = reducer.results(runner_status)
    exit_code = overall_exit_code(hosts, runner_status=runner_status, rc=rc, no_hosts_matched=reducer.no_hosts_matched)
    duration = time.monotonic() - started
    good = READY if reducer.expects_health else reducer.done_status
    counts: dict[str, int] = {}
    for host in hosts.values():
        counts[host.status] = counts.get(host.status, 0) + 1
    others = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if status != good)
    summary = f"{playbook}: {counts.get(good, 0)}/{len(hosts)} hosts {good}" + (f", {others}" if others else "") + \
        f" in {duration:.1f}s"
    if not hosts:
        if runner_status in _STOPPED_RUN:
            summary = f"{playbook}: the run was stopped ({runner_status}) before any host reported"
        elif exit_code == codes.USAGE:
            summary = f"{playbook}: no host matched (check the inventory, its group 'waa', and --limit)"
        else:
            summary = f"{playbook}: ansible-playbook failed before any host ran (rc {rc}, status {runner_status})"
    return RunResult(playbook=playbook, exit_code=exit_code, hosts=hosts, duration_s=duration,
                     artifact_dir=artifact_dir, runner_status=runner_status, rc=rc, summary=summary,
                     started_at=started_at)
