"""Typed results of a run, and the reduction of ansible-runner's events into them.

The playbooks say what happened on each host through their events:
- the health probe's return value (ready, exit_code, failed_layer, layers, ...) is the verdict;
  the host's last one counts;
- a failed task (not ignored, not rescued) carries its own `exit_code`, or is mapped to its role's
  code through the one table;
- an unreachable host (or a task whose SSH connection died under it) gets UNREACHABLE;
- the latest of those three decides, so a failure after a ready report makes the host failed and
  a ready report after a rescued failure makes it ready.
This module is the one place that turns events into those answers; it imports no ansible.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable

from waa_runner import exit_codes as codes

SCHEMA_VERSION = 1
HEALTH_ROLE = "waa_health"
LOG = logging.getLogger("waa_runner")

# A task that fails because the SSH connection died under it is an unreachable host, not a failure
# of the task (Ansible reports some of these as failed with a module error).
CONNECTION_LOST = re.compile(r"Shared connection to \S+ closed|Failed to connect to the host via ssh|"
                             r"ssh: connect to host|Connection timed out during banner exchange|"
                             r"Broken pipe|kex_exchange_identification", re.IGNORECASE)
_RESULT_EVENTS = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
                  "runner_on_unreachable": "unreachable"}
_STOPPED_RUN = ("timeout", "canceled")

# Host statuses (docs/json-report.md).
READY, NOT_READY, FAILED, UNREACHABLE, UNFINISHED, ABORTED, STOPPED, VM_STOPPED, DONE = (
    "ready", "not_ready", "failed", "unreachable", "unfinished", "aborted", "stopped", "vm_stopped", "done")

# Tasks outside any role that still belong to one concern: the Azure tasks run on the controller
# (playbooks/tasks/azure_*.yml, provision.yml, teardown.yml) and count as the pseudo-role "azure".
_AZURE_TASK_FILES = ("/tasks/azure_power.yml", "/tasks/azure_status.yml", "/tasks/azure_vm_create.yml",
                     "/tasks/azure_vm_attempt.yml", "/playbooks/provision.yml", "/playbooks/teardown.yml")
# A started VM whose SSH never answered is unreachable, not an Azure failure; the input checks of
# provision/teardown are usage errors (nothing was created).
_TASK_EXIT_CODES = {"Azure | SSH did not answer": codes.UNREACHABLE,
                    "Validate every input before anything is created": codes.USAGE,
                    "Validate the inputs": codes.USAGE}
_AZURE_RUNNING = ("running", "starting")


def role_name(role: Any) -> str | None:
    """'openadapt.waa.winarena_container' and 'winarena_container' are the same role."""
    return str(role).rsplit(".", 1)[-1] if role else None


def first_line(text: Any) -> str:
    stripped = str(text or "").strip()
    return stripped.splitlines()[0].strip() if stripped else ""


@dataclass
class LayerResult:
    """One health layer of the probe's report (the module's own result model)."""
    layer: str
    healthy: bool
    message: str = ""
    duration_s: float = 0.0
    attempts: int = 1
    failure_class: str | None = None
    hint: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerResult":
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data and data[key] is not None}
        known.setdefault("layer", "?")
        known.setdefault("healthy", False)
        return cls(**known)


@dataclass
class StepResult:
    """One task result on one host."""
    role: str | None
    task: str
    status: str  # ok | changed | failed | skipped | unreachable | ignored
    duration_s: float = 0.0


@dataclass
class PullProgress:
    """An image pull's progress as the winarena_image role reports it, with an ETA."""
    image: str
    bytes_done: int
    bytes_total: int
    layers_done: int
    layers_total: int
    status: str
    elapsed_s: float = 0.0
    eta_s: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], observed_s: float | None = None) -> "PullProgress":
        """`observed_s`: seconds the controller has watched this pull, used when the host gives no elapsed_s."""
        done, total = int(data.get("bytes_done") or 0), int(data.get("bytes_total") or 0)
        elapsed = float(data.get("elapsed_s") or observed_s or 0.0)
        eta = None
        if 0 < done < total and elapsed > 0:
            eta = round((total - done) / (done / elapsed), 1)
        return cls(image=str(data.get("image") or ""), bytes_done=done, bytes_total=total,
                   layers_done=int(data.get("layers_done") or 0), layers_total=int(data.get("layers_total") or 0),
                   status=str(data.get("status") or ""), elapsed_s=elapsed, eta_s=eta)

    @property
    def fraction(self) -> float | None:
        return self.bytes_done / self.bytes_total if self.bytes_total else None

    def line(self) -> str:
        """'pulling 120/900 MB, 3/12 layers, ETA 40s'."""
        if self.status == "present":
            return "image present"
        unit, scale = ("GB", 1024 ** 3) if self.bytes_total >= 10 * 1024 ** 3 else ("MB", 1024 ** 2)
        fmt = "{:.1f}" if unit == "GB" else "{:.0f}"
        text = f"pulling {fmt.format(self.bytes_done / scale)}/{fmt.format(self.bytes_total / scale)} {unit}"
        if self.layers_total:
            text += f", {self.layers_done}/{self.layers_total} layers"
        if self.eta_s is not None:
            text += f", ETA {self.eta_s:.0f}s"
        return text


@dataclass
class ProgressEvent:
    """What an `on_event` callback receives while a run goes on.

    kind: phase (a host entered a role), step (a task finished), retry (a task is retrying),
    pull (image pull progress), health (a health report arrived), host_failed, host_unreachable,
    lock_wait (waiting for another run on the same targets; host is '').
    """
    kind: str
    host: str
    phase: str | None = None
    message: str = ""
    pull: PullProgress | None = None
    step: StepResult | None = None
    at: float = field(default_factory=time.time)


@dataclass
class HostResult:
    name: str
    status: str  # ready | not_ready | failed | unreachable | unfinished | aborted | stopped
    exit_code: int
    message: str = ""
    hint: str = ""
    failed_layer: str | None = None
    failure_class: str | None = None
    layers: list[LayerResult] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    phase: str | None = None
    changed: int = 0
    duration_s: float = 0.0
    azure: dict[str, Any] | None = None  # Azure hosts: vm, resource_group, size, powerstate, price_per_hour, ...

    @property
    def ok(self) -> bool:
        return self.exit_code == codes.READY

    @property
    def exit_name(self) -> str:
        return codes.name(self.exit_code)

    def timings(self) -> dict[str, float]:
        """Seconds spent per role (tasks outside any role count as 'play')."""
        out: dict[str, float] = {}
        for step in self.steps:
            key = step.role or "play"
            out[key] = round(out.get(key, 0.0) + step.duration_s, 3)
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit_name"] = self.exit_name
        data["timings"] = self.timings()
        return data

    def azure_line(self) -> str:
        """'azure: running Standard_D8ds_v5 $0.452/h' for an Azure host, else ''."""
        if not self.azure:
            return ""
        price = _price(self.azure.get("price_per_hour"))
        cost = f"${price:.3f}/h" if price is not None else "price unknown"
        return f"azure: {self.azure.get('powerstate') or '?'} {self.azure.get('size') or '?'} {cost}"

    def summary_line(self) -> str:
        """One line: name, status, exit code, failing layer, message and hint (and the Azure VM's state)."""
        line = f"{self.name:<16} {self.status:<11} {self.exit_code:>3}"
        azure = f"  [{self.azure_line()}]" if self.azure else ""
        if self.ok:
            return f"{line}  {self.message or 'ok'} ({self.duration_s:.1f}s, {self.changed} changed){azure}"
        layer = self.failed_layer
        message = self.message
        if layer and message.startswith(f"{layer}: "):
            message = message[len(layer) + 2:]
        where = f"{layer}: " if layer else ""
        return f"{line}  {where}{message}  hint: {self.hint or '-'}{azure}"


@dataclass
class RunResult:
    playbook: str
    exit_code: int
    hosts: dict[str, HostResult]
    duration_s: float
    artifact_dir: str | None
    runner_status: str
    rc: int | None = None
    summary: str = ""
    started_at: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == codes.READY

    @property
    def exit_name(self) -> str:
        return codes.name(self.exit_code)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (docs/json-report.md)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "playbook": self.playbook,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "exit_name": self.exit_name,
            "hint": "" if self.ok else codes.hint(self.exit_code),
            "summary": self.summary,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "runner_status": self.runner_status,
            "rc": self.rc,
            "artifact_dir": self.artifact_dir,
            "hosts": {name: host.to_dict() for name, host in sorted(self.hosts.items())},
        }

    def status_lines(self) -> list[str]:
        """`waa-run status`: one row per host (Azure power state, size, price while running, readiness)
        and what the running Azure VMs cost per hour together."""
        rows = [("HOST", "POWER", "SIZE", "$/H", "READINESS")]
        running_cost = 0.0
        for host in sorted(self.hosts.values(), key=lambda h: h.name):
            azure = host.azure or {}
            price = _price(azure.get("price_per_hour"))
            power = str(azure.get("powerstate") or "-") if azure else "-"
            if azure and power in _AZURE_RUNNING and price is not None:
                running_cost += price
            readiness = host.status if host.ok else f"{host.status} ({host.exit_code}): {first_line(host.message)}"
            rows.append((host.name, power, str(azure.get("size") or "-"), f"{price:.3f}" if price is not None else "-",
                         readiness))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [self.summary] + ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
                                  for row in rows]
        if any(host.azure for host in self.hosts.values()):
            lines.append(f"running Azure VMs cost ${running_cost:.3f}/h (list prices, playbooks/vars/azure_prices.yml)")
        if not self.ok:
            lines += [host.summary_line() for host in sorted(self.hosts.values(), key=lambda h: h.name) if not host.ok]
            row = codes.describe(self.exit_code)
            lines.append(f"exit {self.exit_code} ({row.name}): {row.summary}")
        return lines

    def summary_lines(self) -> list[str]:
        lines = [self.summary]
        lines += [host.summary_line() for host in sorted(self.hosts.values(), key=lambda h: (h.ok, h.name))]
        if not self.ok:
            row = codes.describe(self.exit_code)
            lines.append(f"exit {self.exit_code} ({row.name}): {row.summary}")
            if self.artifact_dir:
                lines.append(f"run artifacts: {self.artifact_dir}")
        return lines


def _is_validation(event_data: dict[str, Any]) -> bool:
    """Input checks of every role run first; they are one phase, not a tour of the roles."""
    path = str(event_data.get("task_path") or "")
    return "validate" in path.rsplit("/", 1)[-1] or "argument_specs" in path or \
        str(event_data.get("task", "")).startswith("Validating arguments")


def _price(value: Any) -> float | None:
    try:
        return None if value in (None, "", "None") else float(value)
    except (TypeError, ValueError):
        return None


def _task_file_role(event_data: dict[str, Any]) -> str | None:
    path = str(event_data.get("task_path") or "").rsplit(":", 1)[0]
    return "azure" if path.endswith(_AZURE_TASK_FILES) else None


def _failure_message(res: dict[str, Any], task: str) -> str:
    message = first_line(res.get("msg"))
    if message.startswith("MODULE FAILURE"):
        detail = [line for line in str(res.get("module_stderr") or res.get("module_stdout") or "").splitlines()
                  if line.strip()]
        if detail:
            message = f"{message}: {detail[-1].strip()}"
    return message or f"task '{task}' failed"


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


class _HostState:
    def __init__(self, name: str) -> None:
        self.name = name
        self.phase: str | None = None
        self.report: dict[str, Any] | None = None  # the last verdict (waa_health or a bare probe task)
        self.report_seq = -1
        self.role_reports: dict[str | None, dict[str, Any]] = {}  # the last report of each role
        self.failure: dict[str, Any] | None = None
        self.failure_seq = -1
        self.unreachable: str | None = None
        self.unreachable_seq = -1
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

    `expects_health`: hosts of this playbook end with a health verdict (all but `down`).
    """

    def __init__(self, playbook: str, on_event: Callable[[ProgressEvent], None] | None = None,
                 expects_health: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.playbook = playbook
        self.on_event = on_event
        self.expects_health = expects_health
        # what a host without a health verdict is at the end: down stops hosts; provision/teardown just finish
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
        role = role_name(data.get("role")) or _task_file_role(data)
        task = str(data.get("task") or "")
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        facts = res.get("ansible_facts")
        if isinstance(facts, dict) and isinstance(facts.get("waa_azure_status"), dict):
            host.azure = facts["waa_azure_status"]
        host.seen(data.get("start"), data.get("end"))

        if kind == "runner_on_start":
            # Validation is one phase at the start; a role's own input check later is part of that role.
            phase = ("validate" if host.phase is None else host.phase) if _is_validation(data) else role
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
        if "layers" in res and "exit_code" in res:
            host.role_reports[role] = res
            # Other roles wait on single layers through the probe (docker_daemon on the engine):
            # those reports explain their own role's failure but are no verdict on the host.
            if role in (HEALTH_ROLE, None):
                host.report, host.report_seq = res, self._seq
                verdict = "ready" if res.get("ready") else f"not ready: {first_line(res.get('message'))}"
                self._emit(ProgressEvent("health", host.name, phase=host.phase, message=verdict))
        if status == "ok" and res.get("changed"):
            status = "changed"
        if status == "failed" and data.get("ignore_errors"):
            status = "ignored"
        if status == "failed" and (res.get("unreachable") or CONNECTION_LOST.search(
                " ".join(str(res.get(key) or "") for key in ("msg", "module_stderr", "stderr")))):
            status = "unreachable"
        duration = data.get("duration")
        step = StepResult(role=role, task=task, status=status,
                          duration_s=round(float(duration), 3) if isinstance(duration, (int, float)) else 0.0)
        host.steps.append(step)
        if status == "changed":
            host.changed += 1
        if status == "failed":
            host.failure, host.failure_seq = {"role": role, "task": task, "res": res}, self._seq
            self._emit(ProgressEvent("host_failed", host.name, phase=host.phase, step=step,
                                     message=_failure_message(res, task)))
        elif status == "unreachable":
            host.unreachable, host.unreachable_seq = first_line(res.get("msg")) or "unreachable", self._seq
            self._emit(ProgressEvent("host_unreachable", host.name, phase=host.phase, step=step,
                                     message=host.unreachable))
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
        base = dict(name=host.name, steps=host.steps, phase=host.phase, changed=host.changed,
                    duration_s=host.duration(), azure=host.azure)
        report = host.report or {}
        layers = [LayerResult.from_dict(layer) for layer in report.get("layers") or [] if isinstance(layer, dict)]
        failure_seq, unreachable_seq = host.failure_seq, host.unreachable_seq
        if self.stats is not None and self._stat("failures", host.name) == 0 and self._stat("dark", host.name) == 0:
            failure_seq = unreachable_seq = -1  # Ansible counted no failure: it was rescued
        latest = max((host.report_seq, "report"), (failure_seq, "failure"), (unreachable_seq, "unreachable"))
        stopped = runner_status in _STOPPED_RUN

        if latest[0] < 0:  # no verdict at all
            powerstate = str((host.azure or {}).get("powerstate") or "running")
            if self.expects_health and not stopped and powerstate not in _AZURE_RUNNING:
                return HostResult(status=VM_STOPPED, exit_code=codes.VM_STOPPED,
                                  message=f"the Azure VM {(host.azure or {}).get('vm') or host.name} is {powerstate}",
                                  hint=codes.hint(codes.VM_STOPPED), **base)
            if stopped:
                return self._unfinished(host, runner_status, layers, base, None)
            if not self.expects_health:
                return HostResult(status=self.done_status, exit_code=codes.READY, message=f"{self.playbook} done",
                                  **base)
            if self.stats is not None:
                return HostResult(status=ABORTED, exit_code=codes.UNKNOWN,
                                  message=f"the play ended for this host in {host.phase or 'setup'} before its health "
                                          f"verdict (another host's failure stopped the run: max_fail_percentage)",
                                  hint="fix the failed hosts, then run again", layers=layers, **base)
            return HostResult(status=FAILED, exit_code=codes.UNKNOWN,
                              message="the run ended without a health verdict", hint=codes.hint(codes.UNKNOWN),
                              layers=layers, **base)
        if latest[1] == "unreachable":
            return HostResult(status=UNREACHABLE, exit_code=codes.UNREACHABLE, message=host.unreachable or "",
                              hint=codes.hint(codes.UNREACHABLE), failed_layer=None, layers=layers, **base)
        if latest[1] == "failure":
            return self._failed(host, layers, base)
        ready = bool(report.get("ready"))
        if ready:
            return HostResult(status=READY, exit_code=codes.READY, message=first_line(report.get("message")) or "ready",
                              layers=layers, **base)
        if stopped:
            return self._unfinished(host, runner_status, layers, base, report)
        code = report.get("exit_code")
        if not isinstance(code, int) or code == codes.READY:
            code = codes.LAYER_EXIT_CODES.get(report.get("failed_layer") or "", codes.UNKNOWN)
        return HostResult(status=NOT_READY, exit_code=code, message=first_line(report.get("message")),
                          hint=report.get("hint") or codes.hint(code), failed_layer=report.get("failed_layer"),
                          failure_class=report.get("failure_class"), layers=layers, **base)

    def _failed(self, host: _HostState, layers: list[LayerResult], base: dict[str, Any]) -> HostResult:
        failure = host.failure or {}
        res = failure.get("res") or {}
        role = failure.get("role")
        code = res.get("exit_code", _TASK_EXIT_CODES.get(str(failure.get("task") or "")))
        failed_layer, failure_class, hint = res.get("failed_layer"), res.get("failure_class"), res.get("hint")
        report = host.role_reports.get(role) or {}
        if not isinstance(code, int) or isinstance(code, bool):
            if report and not report.get("ready"):
                # "Fail a host that is not ready" (or a role's wait on one layer): its report says why.
                code = report.get("exit_code") if isinstance(report.get("exit_code"), int) else codes.UNKNOWN
                failed_layer = failed_layer or report.get("failed_layer")
                failure_class = failure_class or report.get("failure_class")
                hint = hint or report.get("hint")
            else:
                code = codes.role_code(role)
        if code == codes.READY:
            code = codes.UNKNOWN
        return HostResult(status=FAILED, exit_code=code, message=_failure_message(res, failure.get("task", "")),
                          hint=hint or codes.hint(code), failed_layer=failed_layer or role,
                          failure_class=failure_class, layers=layers, **base)

    def _unfinished(self, host: _HostState, runner_status: str, layers: list[LayerResult], base: dict[str, Any],
                    report: dict[str, Any] | None) -> HostResult:
        why = "the overall deadline passed" if runner_status == "timeout" else "the run was canceled"
        message = f"{why} while in {host.phase or 'setup'}"
        if report:
            message += f" (last health report: {first_line(report.get('message'))})"
        return HostResult(status=UNFINISHED, exit_code=codes.DEADLINE, message=message,
                          hint=codes.hint(codes.DEADLINE), failed_layer=(report or {}).get("failed_layer"),
                          failure_class=(report or {}).get("failure_class"), layers=layers, **base)


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
