"""Typed results of a run, and the reduction of ansible-runner's events into them.

The playbooks say what happened on each host through their events: the health probe's return
value (ready, exit_code, layers, ...) is the verdict; a failed task elsewhere is mapped to its
role's exit code; an unreachable host gets its own code. This module is the one place that turns
events into those answers.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from waa_runner import exit_codes as codes

SCHEMA_VERSION = 1
HEALTH_ROLE = "waa_health"
# A task that fails because the SSH connection died under it is an unreachable host, not a failure
# of the task (Ansible reports some of these as failed with a module error).
CONNECTION_LOST = re.compile(r"Shared connection to \S+ closed|Failed to connect to the host via ssh|"
                             r"ssh: connect to host|Connection timed out during banner exchange|"
                             r"Broken pipe|kex_exchange_identification", re.IGNORECASE)


@dataclass
class LayerResult:
    layer: str
    healthy: bool
    message: str
    duration_s: float = 0.0
    attempts: int = 1
    failure_class: str | None = None
    hint: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerResult":
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass
class StepResult:
    role: str | None
    task: str
    status: str  # ok | changed | failed | skipped | unreachable
    duration_s: float = 0.0


@dataclass
class PullProgress:
    image: str
    bytes_done: int
    bytes_total: int
    layers_done: int
    layers_total: int
    status: str
    elapsed_s: float = 0.0
    eta_s: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PullProgress":
        done, total, elapsed = data.get("bytes_done", 0), data.get("bytes_total", 0), data.get("elapsed_s", 0.0)
        eta = None
        if done and total and elapsed and done < total:
            eta = round((total - done) / (done / elapsed), 1)
        return cls(image=data.get("image", ""), bytes_done=done, bytes_total=total,
                   layers_done=data.get("layers_done", 0), layers_total=data.get("layers_total", 0),
                   status=data.get("status", ""), elapsed_s=elapsed, eta_s=eta)

    def line(self) -> str:
        mb = 1024 * 1024
        eta = f", ETA {self.eta_s:.0f}s" if self.eta_s is not None else ""
        return (f"pulling {self.bytes_done / mb:.0f}/{self.bytes_total / mb:.0f} MB, "
                f"{self.layers_done}/{self.layers_total} layers{eta}")


@dataclass
class ProgressEvent:
    """What a progress callback receives: a host changed phase, pulled bytes, or finished a step."""
    kind: str  # phase | pull | step | host_failed | host_unreachable
    host: str
    phase: str | None = None
    message: str = ""
    pull: PullProgress | None = None
    step: StepResult | None = None


@dataclass
class HostResult:
    name: str
    status: str  # ready | not_ready | failed | unreachable | stopped | done | unfinished
    exit_code: int
    message: str = ""
    hint: str = ""
    failed_layer: str | None = None
    failure_class: str | None = None
    layers: list[LayerResult] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    phase: str | None = None
    changed: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == codes.READY

    def summary_line(self) -> str:
        line = f"{self.name:<20} {self.status:<11} {self.exit_code:>2}"
        if self.ok:
            detail = self.message or f"{len(self.steps)} steps, {self.changed} changed"
            return f"{line}  {detail}"
        layer = f"{self.failed_layer}: " if self.failed_layer and not self.message.startswith(self.failed_layer) else ""
        return f"{line}  {layer}{self.message}\n{'':<36}hint: {self.hint}"


@dataclass
class RunResult:
    playbook: str
    exit_code: int
    hosts: dict[str, HostResult]
    duration_s: float
    artifact_dir: str | None
    runner_status: str
    summary: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == codes.READY

    def to_dict(self) -> dict[str, Any]:
        row = codes.describe(self.exit_code)
        return {
            "schema_version": SCHEMA_VERSION,
            "playbook": self.playbook,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "exit_name": row.name,
            "hint": row.hint if not self.ok else "",
            "summary": self.summary,
            "duration_s": round(self.duration_s, 3),
            "runner_status": self.runner_status,
            "artifact_dir": self.artifact_dir,
            "hosts": {name: asdict(host) for name, host in sorted(self.hosts.items())},
        }


def _role_name(event_data: dict[str, Any]) -> str | None:
    role = event_data.get("role")
    return role.rsplit(".", 1)[-1] if role else None


def _is_validation(event_data: dict[str, Any]) -> bool:
    """Input checks of every role run first; they are one phase, not a tour of the roles."""
    path = str(event_data.get("task_path") or "")
    return "validate" in path.rsplit("/", 1)[-1] or "argument_specs" in path or \
        str(event_data.get("task", "")).startswith("Validating arguments")


def _first_line(text: Any) -> str:
    return str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""


class _HostState:
    def __init__(self, name: str) -> None:
        self.name = name
        self.phase: str | None = None
        self.report: dict[str, Any] | None = None
        self.failure: dict[str, Any] | None = None
        self.unreachable: str | None = None
        self.steps: list[StepResult] = []
        self.changed = 0


class EventReducer:
    """Feed it ansible-runner events in order; ask it for per-host results at the end."""

    def __init__(self, playbook: str, on_event: Callable[[ProgressEvent], None] | None = None,
                 expects_health: bool = True) -> None:
        self.playbook = playbook
        self.on_event = on_event
        self.expects_health = expects_health
        self.hosts: dict[str, _HostState] = {}

    def _host(self, name: str) -> _HostState:
        if name not in self.hosts:
            self.hosts[name] = _HostState(name)
        return self.hosts[name]

    def _emit(self, event: ProgressEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        name = data.get("host")
        if not name or not kind.startswith("runner_"):
            return
        host = self._host(name)
        role = _role_name(data)
        res = data.get("res") or {}
        task = data.get("task", "")
        if kind == "runner_on_start":
            # Validation is one phase at the start; a role's own input check later is part of that role.
            phase = ("validate" if host.phase is None else host.phase) if _is_validation(data) else role
            if phase and phase != host.phase:
                host.phase = phase
                self._emit(ProgressEvent("phase", name, phase=phase, message=task))
            return
        if isinstance(res, dict) and "pull_progress" in res and res["pull_progress"]:
            self._emit(ProgressEvent("pull", name, phase=host.phase, pull=PullProgress.from_dict(res["pull_progress"])))
        if kind == "runner_retry":
            return
        if isinstance(res, dict) and "layers" in res and "exit_code" in res:
            host.report = res
        status = {"runner_on_ok": "changed" if res.get("changed") else "ok", "runner_on_failed": "failed",
                  "runner_on_skipped": "skipped", "runner_on_unreachable": "unreachable"}.get(kind)
        if status is None:
            return
        if status == "failed" and data.get("ignore_errors"):
            status = "ok"
        if status == "failed" and (res.get("unreachable") or CONNECTION_LOST.search(
                " ".join(str(res.get(key) or "") for key in ("msg", "module_stderr", "stderr")))):
            status = "unreachable"
        step = StepResult(role=role, task=task, status=status, duration_s=round(float(data.get("duration") or 0), 3))
        host.steps.append(step)
        if status == "changed":
            host.changed += 1
        if status == "failed":
            host.failure = {"role": role, "task": task, "res": res}
            self._emit(ProgressEvent("host_failed", name, phase=host.phase, message=_first_line(res.get("msg"))))
        elif status == "unreachable":
            host.unreachable = _first_line(res.get("msg")) or "unreachable"
            self._emit(ProgressEvent("host_unreachable", name, phase=host.phase, message=host.unreachable))
        else:
            self._emit(ProgressEvent("step", name, phase=host.phase, step=step))

    def results(self, runner_status: str) -> dict[str, HostResult]:
        out: dict[str, HostResult] = {}
        for name, host in self.hosts.items():
            out[name] = self._result(host, runner_status)
        return out

    def _result(self, host: _HostState, runner_status: str) -> HostResult:
        base = dict(name=host.name, steps=host.steps, phase=host.phase, changed=host.changed)
        report = host.report or {}
        layers = [LayerResult.from_dict(layer) for layer in report.get("layers", [])]
        if host.unreachable:
            row = codes.describe(codes.UNREACHABLE)
            return HostResult(status="unreachable", exit_code=row.code, message=host.unreachable, hint=row.hint,
                              layers=layers, **base)
        if host.failure:
            res = host.failure["res"] if isinstance(host.failure["res"], dict) else {}
            role = host.failure["role"]
            code = res.get("exit_code")
            failed_layer = res.get("failed_layer")
            failure_class = res.get("failure_class")
            hint = res.get("hint")
            if not isinstance(code, int):
                if role == HEALTH_ROLE and report:
                    code, failed_layer = report.get("exit_code", codes.UNKNOWN), report.get("failed_layer")
                    failure_class, hint = report.get("failure_class"), hint or report.get("hint")
                else:
                    code = codes.ROLE_EXIT_CODES.get(role or "", codes.UNKNOWN)
            message = _first_line(res.get("msg")) or f"task '{host.failure['task']}' failed"
            return HostResult(status="failed", exit_code=code, message=message,
                              hint=hint or codes.describe(code).hint, failed_layer=failed_layer or role,
                              failure_class=failure_class, layers=layers, **base)
        if runner_status in ("timeout", "canceled"):
            row = codes.describe(codes.DEADLINE)
            return HostResult(status="unfinished", exit_code=row.code,
                              message=f"the run stopped ({runner_status}) while in {host.phase or 'setup'}",
                              hint=row.hint, layers=layers, **base)
        if report:
            ready = bool(report.get("ready"))
            return HostResult(status="ready" if ready else "not_ready", exit_code=int(report.get("exit_code", 0)),
                              message=report.get("message", ""), hint=report.get("hint", ""),
                              failed_layer=report.get("failed_layer"), failure_class=report.get("failure_class"),
                              layers=layers, **base)
        if self.expects_health:
            row = codes.describe(codes.UNKNOWN)
            return HostResult(status="failed", exit_code=row.code, message="no health report was produced",
                              hint=row.hint, **base)
        return HostResult(status="done", exit_code=codes.READY, message="done", **base)


def build_run_result(playbook: str, reducer: EventReducer, runner_status: str, rc: int, started: float,
                     artifact_dir: str | None) -> RunResult:
    hosts = reducer.results(runner_status)
    if hosts:
        exit_code = codes.overall([host.exit_code for host in hosts.values()])
    elif runner_status in ("timeout", "canceled"):
        exit_code = codes.DEADLINE
    else:
        exit_code = codes.READY if rc == 0 else codes.UNKNOWN
    ready = sum(1 for host in hosts.values() if host.ok)
    summary = f"{playbook}: {ready}/{len(hosts)} hosts ok in {time.monotonic() - started:.1f}s"
    if not hosts and rc != 0:
        summary = f"{playbook}: ansible-playbook failed before any host ran (rc {rc}, status {runner_status})"
    return RunResult(playbook=playbook, exit_code=exit_code, hosts=hosts, duration_s=time.monotonic() - started,
                     artifact_dir=artifact_dir, runner_status=runner_status, summary=summary)
