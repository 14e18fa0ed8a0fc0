"""ansible-runner events → per-host results and the overall exit code (waa_runner.results).

The events are synthesised in the shape ansible-runner 2.4 gives them (event, event_data with
host, role, task, task_path, res, duration, start, end, ignore_errors), plus a recording of a real
`up` run against the emulator (data/runner_events_up.json)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from waa_runner import exit_codes as codes
from waa_runner.results import EventReducer, HostResult, PullProgress, build_run_result, overall_exit_code

DATA = Path(__file__).resolve().parent / "data"
LAYERS = ["docker_daemon", "container", "vm_boot", "waa_server", "accessibility"]


def event(kind, host, role=None, task="t", res=None, **extra):
    data = {"host": host, "role": role, "task": task, "res": res or {}, "duration": 0.5, **extra}
    return {"event": kind, "event_data": data}


def stats(**per_key):
    """playbook_on_stats: failures={'a': 1}, dark={...}."""
    return {"event": "playbook_on_stats", "event_data": {key: per_key.get(key, {}) for key in (
        "changed", "dark", "failures", "ignored", "ok", "processed", "rescued", "skipped")}}


def report(ready, code=0, layer=None, hint="", failure_class=None, message=None):
    healthy_until = LAYERS.index(layer) if layer else len(LAYERS)
    layers = [{"layer": name, "healthy": i < healthy_until, "message": "ok" if i < healthy_until else "down",
               "duration_s": 0.01, "attempts": 1, "failure_class": None if i < healthy_until else failure_class,
               "hint": "", "details": {}} for i, name in enumerate(LAYERS[:healthy_until + 1])]
    return {"ready": ready, "exit_code": code, "failed_layer": layer, "hint": hint, "failure_class": failure_class,
            "message": message or (f"{layer}: x" if layer else "ready"), "layers": layers, "breaker": {},
            "duration_s": 0.2}


def reduce(events, status="successful", playbook="up", rc=None):
    seen = []
    without_health = ("down", "provision", "teardown")
    reducer = EventReducer(playbook, on_event=seen.append, expects_health=playbook not in without_health)
    for item in events:
        reducer(item)
    if rc is None:
        rc = {"successful": 0, "timeout": 254, "canceled": 254}.get(status, 2)
    return build_run_result(playbook, reducer, status, rc, time.monotonic(), "/runs/x"), seen


def test_a_ready_host_its_phases_steps_and_layers():
    result, seen = reduce([
        event("runner_on_start", "a", role="openadapt.waa.nested_virt_check", task="Validating arguments",
              task_path="/c/roles/nested_virt_check/tasks/validate.yml:2"),
        event("runner_on_ok", "a", role="openadapt.waa.nested_virt_check", task="Validating arguments"),
        event("runner_on_start", "a", role="openadapt.waa.winarena_container", task="Ensure"),
        event("runner_on_ok", "a", role="openadapt.waa.winarena_container", task="Ensure", res={"changed": True},
              start="2026-01-01T00:00:00+00:00", end="2026-01-01T00:00:02+00:00"),
        event("runner_on_start", "a", role="waa_health", task="Probe"),
        event("runner_on_ok", "a", role="waa_health", task="Probe", res=report(True),
              end="2026-01-01T00:00:05+00:00"),
    ])
    host = result.hosts["a"]
    assert (result.exit_code, result.ok, host.status, host.exit_code, host.changed) == (0, True, "ready", 0, 1)
    assert [e.phase for e in seen if e.kind == "phase"] == ["validate", "winarena_container", "waa_health"]
    assert [layer.layer for layer in host.layers] == LAYERS and all(layer.healthy for layer in host.layers)
    assert [(s.role, s.status) for s in host.steps] == [
        ("nested_virt_check", "ok"), ("winarena_container", "changed"), ("waa_health", "ok")]
    assert host.duration_s == 5.0 and host.timings() == {"nested_virt_check": 0.5, "winarena_container": 0.5,
                                                          "waa_health": 0.5}
    assert result.summary.startswith("up: 1/1 hosts ready in ")
    assert any(e.kind == "health" and e.message == "ready" for e in seen)


def test_failed_roles_map_through_the_table_and_own_codes_win():
    result, _ = reduce([
        event("runner_on_failed", "img", role="openadapt.waa.winarena_image", res={"msg": "pull failed\nmore"}),
        event("runner_on_failed", "pre", role="nested_virt_check", res={"msg": "no KVM"}),
        event("runner_on_failed", "own", role="winarena_image", res={"msg": "x", "exit_code": 2, "hint": "h",
                                                                     "failed_layer": "docker_daemon"}),
        event("runner_on_failed", "norole", res={"msg": "boom"}),
    ])
    hosts = result.hosts
    assert (hosts["img"].exit_code, hosts["img"].message, hosts["img"].failed_layer) == (3, "pull failed",
                                                                                         "winarena_image")
    assert hosts["img"].hint == codes.hint(codes.IMAGE_PULL)
    assert hosts["pre"].exit_code == codes.PREFLIGHT and "nested virtualization" in hosts["pre"].hint
    assert (hosts["own"].exit_code, hosts["own"].hint, hosts["own"].failed_layer) == (2, "h", "docker_daemon")
    assert hosts["norole"].exit_code == codes.UNKNOWN
    assert all(h.status == "failed" for h in hosts.values())
    assert result.exit_code == codes.NOT_ALL_READY


def test_the_health_role_failing_after_a_report_takes_the_reports_code_and_hint():
    result, seen = reduce([
        event("runner_on_ok", "srv", role="waa_health", res=report(False, 6, "waa_server", "restart it",
                                                                   "recoverable", "waa_server: /probe refused")),
        event("runner_on_failed", "srv", role="openadapt.waa.waa_health", task="Fail a host that is not ready",
              res={"msg": "waa_server: /probe refused (exit code 6; hint: restart it)"}),
    ])
    host = result.hosts["srv"]
    assert (host.status, host.exit_code, host.failed_layer, host.failure_class, host.hint) == (
        "failed", 6, "waa_server", "recoverable", "restart it")
    assert host.message.startswith("waa_server: /probe refused") and len(host.layers) == 4
    assert result.exit_code == 6
    assert [e.kind for e in seen if e.host == "srv"] == ["health", "step", "host_failed"]


def test_probe_reports_not_ready_without_failing_and_the_last_report_counts():
    result, _ = reduce([
        event("runner_on_ok", "a", role="waa_health", res=report(False, 5, "vm_boot", "wait", "recoverable")),
        event("runner_on_ok", "a", role="waa_health", res=report(False, 7, "accessibility", "busy", "transient")),
        event("runner_on_ok", "b", role="waa_health", res=report(False, 5, "vm_boot")),
        event("runner_on_ok", "b", role="waa_health", res=report(True)),
    ], playbook="probe")
    a, b = result.hosts["a"], result.hosts["b"]
    assert (a.status, a.exit_code, a.failed_layer, a.hint, a.failure_class) == (
        "not_ready", 7, "accessibility", "busy", "transient")
    assert (b.status, b.exit_code) == ("ready", 0)
    assert result.exit_code == 7


def test_a_failure_after_a_ready_report_fails_the_host_and_a_rescued_one_does_not():
    result, _ = reduce([
        event("runner_on_ok", "late", role="waa_health", res=report(True)),
        event("runner_on_failed", "late", role="winarena_container", res={"msg": "later"}),
        event("runner_on_failed", "rescued", role="winarena_container", res={"msg": "first try"}),
        event("runner_on_ok", "rescued", role="waa_health", res=report(True)),
        event("runner_on_failed", "rescued2", role="winarena_container", res={"msg": "rescued, no report after"}),
        event("runner_on_ok", "rescued2", role="winarena_container"),
        event("runner_on_ok", "rescued2", role="waa_health", res=report(True)),
        stats(failures={"late": 1}, rescued={"rescued": 1, "rescued2": 1}),
    ])
    assert (result.hosts["late"].status, result.hosts["late"].exit_code) == ("failed", codes.CONTAINER)
    assert result.hosts["rescued"].status == "ready" and result.hosts["rescued2"].status == "ready"
    assert result.exit_code == codes.CONTAINER


def test_ignored_errors_do_not_count_and_unreachable_hosts_get_their_code():
    result, seen = reduce([
        event("runner_on_failed", "a", role="winarena_container", ignore_errors=True, res={"msg": "ignored"}),
        event("runner_on_ok", "a", role="waa_health", res=report(True)),
        event("runner_on_unreachable", "b", res={"msg": "ssh: connect to host b port 22: Connection refused",
                                                 "unreachable": True}),
        event("runner_on_failed", "c", role="waa_health", res={
            "msg": "MODULE FAILURE\nSee stdout/stderr", "module_stderr": "Shared connection to 127.1.2.3 closed.\r\n"}),
    ])
    assert result.hosts["a"].status == "ready" and result.hosts["a"].steps[0].status == "ignored"
    assert (result.hosts["b"].status, result.hosts["b"].exit_code) == ("unreachable", codes.UNREACHABLE)
    assert result.hosts["b"].message.startswith("ssh: connect to host b") and "SSH" in result.hosts["b"].hint
    assert (result.hosts["c"].status, result.hosts["c"].exit_code) == ("unreachable", codes.UNREACHABLE)
    assert result.exit_code == codes.UNREACHABLE
    assert {e.kind for e in seen if e.host in ("b", "c")} == {"host_unreachable"}


def test_module_failures_show_the_last_line_of_the_modules_stderr():
    result, _ = reduce([event("runner_on_failed", "a", role="winarena_container", res={
        "msg": "MODULE FAILURE\nSee stdout/stderr for the exact error", "module_stderr": "Traceback\nValueError: bad\n"})])
    assert result.hosts["a"].message == "MODULE FAILURE: ValueError: bad"


def test_a_deadline_keeps_finished_hosts_and_marks_the_others_unfinished():
    result, _ = reduce([
        event("runner_on_ok", "done", role="waa_health", res=report(True)),
        event("runner_on_start", "waiting", role="waa_health"),
        event("runner_on_ok", "stuck", role="waa_health", res=report(False, 5, "vm_boot", message="vm_boot: black")),
        event("runner_on_start", "stuck", role="waa_health"),
        event("runner_on_failed", "broken", role="winarena_image", res={"msg": "pull failed"}),
    ], status="timeout")
    hosts = result.hosts
    assert hosts["done"].status == "ready"
    assert (hosts["waiting"].status, hosts["waiting"].exit_code) == ("unfinished", codes.DEADLINE)
    assert "deadline passed while in waa_health" in hosts["waiting"].message
    assert (hosts["stuck"].status, hosts["stuck"].exit_code, hosts["stuck"].failed_layer) == (
        "unfinished", codes.DEADLINE, "vm_boot")
    assert "vm_boot: black" in hosts["stuck"].message
    assert hosts["broken"].exit_code == codes.IMAGE_PULL
    assert result.exit_code == codes.NOT_ALL_READY
    result, _ = reduce([event("runner_on_start", "a", role="waa_health")], status="canceled")
    assert result.exit_code == codes.DEADLINE and "canceled" in result.hosts["a"].message


def test_hosts_stopped_by_another_hosts_failure_follow_that_failure():
    # strategy linear + max_fail_percentage: the play ends for every host after pool-b-1 fails
    result, _ = reduce([
        event("runner_on_ok", "b1", role="nested_virt_check"),
        event("runner_on_ok", "b2", role="nested_virt_check"),
        event("runner_on_failed", "b1", role="nested_virt_check", res={"msg": "no KVM"}),
        event("runner_on_ok", "b2", role="nested_virt_check"),
        stats(failures={"b1": 1}, ok={"b1": 1, "b2": 2}),
    ])
    assert (result.hosts["b2"].status, result.hosts["b2"].exit_code) == ("aborted", codes.UNKNOWN)
    assert "before its health verdict" in result.hosts["b2"].message
    assert result.exit_code == codes.PREFLIGHT


def test_down_hosts_are_stopped_without_a_health_report():
    result, _ = reduce([event("runner_on_ok", "a", role="winarena_container"),
                        event("runner_on_ok", "b", role="winarena_container")], playbook="down")
    assert {h.status for h in result.hosts.values()} == {"stopped"} and result.exit_code == 0
    assert result.summary.startswith("down: 2/2 hosts stopped")


def test_no_hosts_and_early_failures():
    reducer = EventReducer("up")
    reducer({"event": "playbook_on_no_hosts_matched", "event_data": {}})
    result = build_run_result("up", reducer, "successful", 0, time.monotonic(), "/x")
    assert result.exit_code == codes.USAGE and "no host matched" in result.summary
    result = build_run_result("up", EventReducer("up"), "failed", 4, time.monotonic(), "/x")
    assert result.exit_code == codes.UNKNOWN and "before any host ran" in result.summary
    result = build_run_result("up", EventReducer("up"), "timeout", 254, time.monotonic(), "/x")
    assert result.exit_code == codes.DEADLINE


def test_pull_progress_reaches_the_callback_with_an_eta():
    progress = {"image": "i", "bytes_done": 100 * 2 ** 20, "bytes_total": 400 * 2 ** 20, "layers_done": 1,
                "layers_total": 4, "status": "Downloading", "elapsed_s": 10}
    _, seen = reduce([event("runner_retry", "a", role="winarena_image", res={"pull_progress": progress,
                                                                              "attempts": 3})])
    pulls = [e.pull for e in seen if e.kind == "pull"]
    assert pulls and pulls[0].eta_s == 30.0
    assert pulls[0].line() == "pulling 100/400 MB, 1/4 layers, ETA 30s"
    assert not [e for e in seen if e.kind == "retry"], "a pull retry is shown as pull progress, not as a retry"


def test_pull_eta_without_elapsed_uses_the_controllers_clock():
    clock = iter([100.0, 110.0])
    reducer = EventReducer("up", on_event=(seen := []).append, clock=lambda: next(clock))
    for done in (0, 50):
        reducer(event("runner_retry", "a", role="winarena_image", res={"pull_progress": {
            "bytes_done": done * 2 ** 20, "bytes_total": 100 * 2 ** 20, "layers_done": 0, "layers_total": 2}}))
    assert [e.pull.eta_s for e in seen] == [None, 10.0]
    big = PullProgress.from_dict({"bytes_done": 3 * 2 ** 30, "bytes_total": 15 * 2 ** 30, "elapsed_s": 60})
    assert big.line() == "pulling 3.0/15.0 GB, ETA 240s" and big.fraction == 0.2


def test_other_retries_are_reported_as_retries():
    _, seen = reduce([event("runner_retry", "a", role="docker_daemon", task="Wait for the engine",
                            res={"attempts": 2, "msg": "not yet"})])
    assert [(e.kind, e.message) for e in seen] == [("retry", "Wait for the engine (attempt 2)")]


def test_a_broken_progress_callback_or_odd_event_does_not_break_the_reduction():
    def explode(_event):
        raise RuntimeError("callback bug")

    reducer = EventReducer("up", on_event=explode)
    assert reducer({"event": "runner_on_ok", "event_data": {"host": "a", "role": "waa_health", "res": report(True)}})
    assert reducer({"event": "runner_on_ok", "event_data": {"host": "a", "res": "not a dict", "duration": "x"}})
    assert reducer({"event": "verbose", "stdout": "hello"}) and reducer({})
    result = build_run_result("up", reducer, "successful", 0, time.monotonic(), "/x")
    assert result.hosts["a"].status == "ready"


@pytest.mark.parametrize("per_host,overall", [([0, 0], 0), ([0, 6], 6), ([6, 6, 0], 6), ([6, 1, 0], 13), ([], 0),
                                              ([10, 10], 10), ([8, 0], 8)])
def test_overall_exit_code(per_host, overall):
    assert codes.overall(per_host) == overall
    hosts = {str(i): HostResult(name=str(i), status="failed" if c else "ready", exit_code=c)
             for i, c in enumerate(per_host)}
    if hosts:
        assert overall_exit_code(hosts, runner_status="failed", rc=2) == overall


def test_the_json_report_has_the_documented_shape():
    result, _ = reduce([event("runner_on_ok", "a", role="waa_health", res=report(False, 6, "waa_server", "h"))],
                       playbook="probe")
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {"schema_version", "playbook", "ok", "exit_code", "exit_name", "hint", "summary",
                         "started_at", "duration_s", "runner_status", "rc", "artifact_dir", "hosts"}
    assert (data["schema_version"], data["exit_code"], data["exit_name"], data["ok"]) == (1, 6, "waa_server", False)
    host = data["hosts"]["a"]
    assert set(host) == {"name", "status", "exit_code", "exit_name", "message", "hint", "failed_layer",
                         "failure_class", "layers", "steps", "phase", "changed", "duration_s", "timings", "azure"}
    assert set(host["layers"][0]) == {"layer", "healthy", "message", "duration_s", "attempts", "failure_class",
                                      "hint", "details"}
    assert set(host["steps"][0]) == {"role", "task", "status", "duration_s"}
    documented = (Path(__file__).resolve().parents[2] / "docs" / "json-report.md").read_text()
    for key in list(data) + list(host):
        assert f"`{key}`" in documented or f'"{key}"' in documented, key


def test_summary_lines_give_one_line_per_host_with_code_layer_message_and_hint():
    result, _ = reduce([
        event("runner_on_ok", "ok-host", role="waa_health", res=report(True)),
        event("runner_on_ok", "bad-host", role="waa_health", res=report(
            False, 6, "waa_server", "restart the container once", message="waa_server: /probe refused")),
    ], playbook="probe")
    lines = result.summary_lines()
    assert lines[0].startswith("probe: 1/2 hosts ready, 1 not_ready")
    bad = next(line for line in lines if line.startswith("bad-host"))
    assert "not_ready" in bad and "  6  " in bad and "waa_server: /probe refused" in bad
    assert bad.endswith("hint: restart the container once") and "\n" not in bad
    assert lines[-2].startswith("exit 6 (waa_server)") and lines[-1] == "run artifacts: /runs/x"


def test_a_recorded_up_run_reduces_to_a_ready_host():
    recorded = json.loads((DATA / "runner_events_up.json").read_text())
    result, seen = reduce(recorded["events"], status=recorded["status"], rc=recorded["rc"])
    host = result.hosts["localhost"]
    assert result.exit_code == 0 and host.status == "ready"
    assert [layer.layer for layer in host.layers] == LAYERS
    phases = [e.phase for e in seen if e.kind == "phase"]
    assert phases[0] == "validate" and phases[-1] == "waa_health"
    assert {"winarena_container", "waa_health"} <= set(host.timings())


def test_a_single_layer_wait_of_another_role_is_no_verdict_but_explains_its_failure():
    engine = {**report(True), "layers": report(True)["layers"][:1]}
    result, seen = reduce([
        event("runner_on_ok", "a", role="docker_daemon", task="Wait until the engine API answers", res=engine),
        event("runner_on_start", "a", role="winarena_image"),
        event("runner_on_ok", "b", role="docker_daemon", res={**report(False, 2, "docker_daemon", "start it",
                                                                        "permanent"), "failed": True}),
        event("runner_on_failed", "b", role="docker_daemon", task="Fail when the engine does not answer",
              res={"msg": "docker_daemon: no answer"}),
    ], status="timeout")
    assert (result.hosts["a"].status, result.hosts["a"].exit_code) == ("unfinished", codes.DEADLINE)
    assert not [e for e in seen if e.kind == "health"]
    b = result.hosts["b"]
    assert (b.status, b.exit_code, b.failed_layer, b.hint, b.failure_class) == (
        "failed", 2, "docker_daemon", "start it", "permanent")


AZURE_TASKS = "/c/openadapt/waa/playbooks/tasks/azure_power.yml:40"


def azure_status(powerstate, action="none"):
    return {"ansible_facts": {"waa_azure_status": {
        "vm": "waa-a-01", "resource_group": "openadapt-waa", "location": "eastus", "size": "Standard_D8ds_v5",
        "powerstate": powerstate, "price_per_hour": "0.452", "currency": "USD", "action": action}}}


def test_a_deallocated_azure_vm_without_a_probe_is_vm_stopped_with_its_price():
    result, _ = reduce([event("runner_on_ok", "waa-a-01", task="Azure | state of the VM",
                              res=azure_status("deallocated"),
                              task_path="/c/openadapt/waa/playbooks/tasks/azure_status.yml:12"),
                        event("runner_on_ok", "waa-a-02", role="waa_health", res=report(True))], playbook="probe")
    host = result.hosts["waa-a-01"]
    assert (host.status, host.exit_code, result.exit_code) == ("vm_stopped", 15, 15)
    assert host.message == "the Azure VM waa-a-01 is deallocated" and "waa-run up" in host.hint
    assert host.azure_line() == "azure: deallocated Standard_D8ds_v5 $0.452/h"
    assert host.timings() == {"azure": 0.5}
    table = result.status_lines()
    assert table[1].split() == ["HOST", "POWER", "SIZE", "$/H", "READINESS"]
    assert table[2].split()[:5] == ["waa-a-01", "deallocated", "Standard_D8ds_v5", "0.452", "vm_stopped"]
    assert table[3].split() == ["waa-a-02", "-", "-", "-", "ready"]
    assert "running Azure VMs cost $0.000/h" in table[4]


def test_a_failed_azure_call_is_code_14_and_ssh_that_never_answers_is_unreachable():
    result, _ = reduce([
        event("runner_on_failed", "a", task="Azure | start the VM when it is deallocated or stopped",
              task_path=AZURE_TASKS, res={"msg": "Error powering on virtual machine a - (InternalServerError)"}),
        event("runner_on_failed", "b", task="Azure | SSH did not answer", task_path=AZURE_TASKS,
              res={"msg": "b: Azure VM rg/b is started but SSH to azureuser@10.0.0.4:22 did not answer within 600 s."}),
        stats(failures={"a": 1, "b": 1})])
    a, b = result.hosts["a"], result.hosts["b"]
    assert (a.status, a.exit_code, a.failed_layer) == ("failed", 14, "azure")
    assert a.message.startswith("Error powering on virtual machine a") and "credentials" in a.hint
    assert (b.exit_code, b.failed_layer) == (10, "azure")
    assert result.exit_code == 13


def test_provision_finishes_as_done():
    result, _ = reduce([event("runner_on_ok", "localhost", task="Create the VMs", res={"changed": True})],
                       playbook="provision")
    assert (result.hosts["localhost"].status, result.exit_code) == ("done", 0)
    assert result.summary.startswith("provision: 1/1 hosts done")
