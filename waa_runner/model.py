"""The data model of a run's results: what `waa-run`, `--json` and the Python API hand out.

One HostResult per host (its status, exit code, message and hint come from the host's verdict,
waa_runner.reducer), one RunResult per run. Rendering lives in waa_runner.render; this module
holds data and imports no ansible.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from waa_runner import exit_codes as codes

SCHEMA_VERSION = 1

# Host statuses (docs/json-report.md). The verdict decides: exit 0 ready; 64 usage; 10 unreachable;
# a verdict on a health layer not_ready; any other verdict failed. The rest describe runs that
# ended without a verdict for the host.
READY, NOT_READY, FAILED, UNREACHABLE, USAGE = "ready", "not_ready", "failed", "unreachable", "usage"
UNFINISHED, ABORTED, STOPPED, VM_STOPPED, DONE = "unfinished", "aborted", "stopped", "vm_stopped", "done"


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


class _HasExitCode:
    """ok and exit_name, for a host's result and a run's: both are judged by their exit code."""
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == codes.READY

    @property
    def exit_name(self) -> str:
        return codes.name(self.exit_code)


@dataclass
class HostResult(_HasExitCode):
    name: str
    status: str  # ready | not_ready | failed | unreachable | usage | unfinished | aborted | stopped | vm_stopped | done
    exit_code: int
    message: str = ""
    hint: str = ""
    failed_layer: str | None = None  # the verdict's layer, else its step
    failure_class: str | None = None
    layers: list[LayerResult] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    phase: str | None = None
    changed: int = 0
    duration_s: float = 0.0
    azure: dict[str, Any] | None = None  # Azure hosts: vm, resource_group, size, powerstate, price_per_hour, ...

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
        from waa_runner import render

        return render.azure_line(self)

    def summary_line(self) -> str:
        """One line: name, status, exit code, failing layer, message and hint (and the Azure VM's state)."""
        from waa_runner import render

        return render.host_line(self)


@dataclass
class RunResult(_HasExitCode):
    playbook: str
    exit_code: int
    hosts: dict[str, HostResult]
    duration_s: float
    artifact_dir: str | None
    runner_status: str
    rc: int | None = None
    summary: str = ""
    started_at: str = ""

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
        """`waa-run status`: one row per host and what the running Azure VMs cost per hour together."""
        from waa_runner import render

        return render.status_lines(self)

    def summary_lines(self) -> list[str]:
        """The summary `waa-run` prints: the run's line, one line per host, the exit code's meaning."""
        from waa_runner import render

        return render.summary_lines(self)
