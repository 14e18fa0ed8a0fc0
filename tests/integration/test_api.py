"""waa_runner's Python API against this machine and the emulator on the real engine: typed
results, live progress events, a not-ready probe, down; and a harness's KeyboardInterrupt."""
from __future__ import annotations

import json
import threading
import time

import pytest

import waa_runner
from waa_runner import processes
from waa_runner.results import HostResult, LayerResult, ProgressEvent, RunResult, StepResult
from tests.integration.test_cli import FAST_ENV, LAYERS, target  # noqa: F401  (the fixture)
from tests.support.emulator import docker, poll_until

pytestmark = pytest.mark.docker


def test_up_probe_and_down_return_typed_results(target):  # noqa: F811
    events: list[ProgressEvent] = []
    variables = target["variables"]
    result = waa_runner.up(local=True, emulator=True, extra_vars=variables, state_dir=target["state"],
                           on_event=events.append)
    assert isinstance(result, RunResult) and result.ok and result.exit_code == 0, result.summary_lines()
    host = result.hosts["localhost"]
    assert isinstance(host, HostResult) and host.status == "ready" and host.exit_name == "ready"
    assert all(isinstance(layer, LayerResult) and layer.healthy for layer in host.layers)
    assert [layer.layer for layer in host.layers] == LAYERS
    assert all(isinstance(step, StepResult) for step in host.steps) and host.duration_s > 0
    phases = [e.phase for e in events if e.kind == "phase"]
    assert phases[0] == "validate" and phases[-1] == "waa_health"
    assert [e.message for e in events if e.kind == "health"][-1] == "ready"
    assert json.loads(json.dumps(result.to_dict()))["hosts"]["localhost"]["status"] == "ready"

    docker("exec", variables["waa_container_name"], "waa-emu-fault", "empty_tree")
    probe = waa_runner.probe(local=True, extra_vars=variables, state_dir=target["state"])
    host = probe.hosts["localhost"]
    assert (probe.exit_code, host.status, host.failed_layer, host.failure_class) == (
        7, "not_ready", "accessibility", "transient")
    assert [layer.healthy for layer in host.layers] == [True, True, True, True, False] and host.hint

    down = waa_runner.down(local=True, extra_vars=variables, state_dir=target["state"])
    assert down.ok and down.hosts["localhost"].status == "stopped"


def test_a_keyboard_interrupt_stops_ansible_and_is_raised(target):  # noqa: F811
    variables = {**target["variables"], "waa_container_env": {**FAST_ENV, "WAA_EMU_SERVER_S": 300},
                 "waa_health_timeout": 600}
    interrupted = threading.Event()

    def on_event(event: ProgressEvent) -> None:
        if event.kind == "phase" and event.phase == "waa_health" and not interrupted.is_set():
            interrupted.set()
            import _thread
            _thread.interrupt_main()  # what Ctrl-C does to a harness

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        waa_runner.up(local=True, emulator=True, extra_vars=variables, state_dir=target["state"],
                      on_event=on_event)
    assert time.monotonic() - started < 120
    runs = sorted((target["state"] / "runs").iterdir())
    poll_until(lambda: processes.leftovers(str(runs[-1] / "artifacts" / "run")) == [], deadline_s=10,
               what="ansible's processes to be gone")
