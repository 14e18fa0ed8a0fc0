"""What `waa-run` promises a user about a run's result (docs/exit-codes.md, docs/json-report.md),
under the verdict contract: every verdict travels as data under the result key `waa_verdict`.

The events are synthesised in the shape ansible-runner 2.4 gives them (event, event_data with
host, role, task, task_action, task_path, res, duration, start, end, ignore_errors), their
verdicts built with the collection's own `verdict()` / `verdict_of_report()`; plus a recording
of a real `up` run against the emulator (data/runner_events_up.json)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from waa_runner import exit_codes as codes
from waa_runner.collection import load_module_util
from waa_runner.results import EventReducer, HostResult, ProgressEvent, PullProgress, RunResult, build_run_result, \
    overall_exit_code

DATA = Path(__file__).resolve().parent / "data"
DOCS = Path(__file__).resolve().parents[2] / "docs"
LAYERS = ["docker_daemon", "container", "vm_boot", "waa_server", "accessibility"]
KEY = codes.VERDICT_KEY
verdict = codes.verdict
verdict_of_report = load_module_util("waa_exit_codes").verdict_of_report
VALIDATE_HINT = "fix the named variables (ansible-doc -t role openadapt.waa.<role> lists them); nothing was changed"


# ------------------------------------------------------------------------------ event builders
def event(kind: str, host: str, role: str | None = None, task: str = "t", res: dict[str, Any] | None = None,
          **extra: Any) -> dict[str, Any]:
    data = {"host": host, "role": role, "task": task, "res": res or {}, "duration": 0.5, **extra}
    return {"event": kind, "event_data": data}


def stats(**per_key: dict[str, int]) -> dict[str, Any]:
    """playbook_on_stats: failures={'a': 1}, dark={...}, rescued={...}."""
    return {"event": "playbook_on_stats", "event_data": {key: per_key.get(key, {}) for key in (
        "changed", "dark", "failures", "ignored", "ok", "processed", "rescued", "skipped")}}


def report(layer: str | None = None, *, code: int | None = None, hint: str = "", failure_class: str | None = None,
           message: str | None = None, layers: list[str] = LAYERS, with_verdict: bool = True) -> dict[str, Any]:
    """The health probe's result: ready when no layer failed; the first unhealthy layer otherwise."""
    until = layers.index(layer) if layer else len(layers)
    rows: list[dict[str, Any]] = [{"layer": name, "healthy": i < until, "message": "ok" if i < until else "down", "duration_s": 0.01,
             "attempts": 1, "failure_class": None if i < until else failure_class, "hint": "", "details": {}}
            for i, name in enumerate(layers[:until + 1])]
    ready = layer is None
    exit_code = 0 if layer is None else (code or codes.LAYER_EXIT_CODES[layer])
    out: dict[str, Any] = {
        "changed": False, "ready": ready, "failed_layer": layer, "failure_class": failure_class,
        "exit_code": exit_code, "hint": hint,
        "message": message or (f"{layer}: down" if layer else f"ready: {', '.join(layers)} healthy"),
        "layers": rows, "breaker": {}, "duration_s": 0.2, "timed_out": False}
    if with_verdict:
        out[KEY] = verdict_of_report(out)
    return out


def probe_ok(host: str, rep: dict[str, Any], role: str = "waa_health", **extra: Any) -> dict[str, Any]:
    return event("runner_on_ok", host, role=role, task="Probe the health layers", res=rep,
                 task_action="openadapt.waa.waa_health_probe", **extra)


def failed(host: str, found: dict[str, Any], role: str | None = None, task: str = "Fail",
           action: str = "openadapt.waa.waa_fail", **res: Any) -> dict[str, Any]:
    """A failed task that carries its verdict (openadapt.waa.waa_fail, a module's fail_json)."""
    body = {"failed": True, "changed": False, "msg": found["message"], KEY: found, **res}
    return event("runner_on_failed", host, role=role, task=task, res=body, task_action=action)


def crashed(host: str, role: str | None = None, task: str = "t", **res: Any) -> dict[str, Any]:
    """A failed task without a verdict: nobody planned it."""
    return event("runner_on_failed", host, role=role, task=task, res={"failed": True, **res})


def health_fail(host: str, rep: dict[str, Any]) -> dict[str, Any]:
    """waa_health's 'Fail a host that is not ready': waa_fail with the report's verdict."""
    found = rep[KEY]
    return failed(host, verdict(found["exit_code"], found["message"], step="waa_health", layer=found["layer"],
                                failure_class=found["failure_class"], hint=found["hint"]),
                  role="openadapt.waa.waa_health", task="Fail a host that is not ready")


def reduce(events: list[dict[str, Any]], status: str = "successful", playbook: str = "up",
           rc: int | None = None) -> tuple[RunResult, list[ProgressEvent]]:
    seen: list[ProgressEvent] = []
    reducer = EventReducer(playbook, on_event=seen.append,
                           expects_health=playbook not in ("down", "provision", "teardown"))
    for item in events:
        assert reducer(item) is True
    if rc is None:
        rc = {"successful": 0, "timeout": 254, "canceled": 254}.get(status, 2)
    return build_run_result(playbook, reducer, status, rc, time.monotonic(), "/runs/x"), seen


def line_of(result: RunResult, name: str) -> str:
    found = [line for line in result.summary_lines() if line.split()[:1] == [name]]
    assert len(found) == 1, result.summary_lines()
    return found[0]


def assert_line_and_json_agree(result: RunResult) -> None:
    """What a user reads in the summary and what --json says are the same facts, host by host."""
    data = json.loads(json.dumps(result.to_dict()))
    assert (data["exit_code"], data["exit_name"], data["ok"]) == (result.exit_code, codes.name(result.exit_code),
                                                                   result.exit_code == 0)
    assert set(data["hosts"]) == set(result.hosts)
    for name, host in result.hosts.items():
        entry = data["hosts"][name]
        assert (entry["status"], entry["exit_code"], entry["exit_name"], entry["message"], entry["hint"],
                entry["failed_layer"]) == (host.status, host.exit_code, codes.name(host.exit_code), host.message,
                                           host.hint, host.failed_layer), name
        line = line_of(result, name)
        assert "\n" not in line and line.split()[1:3] == [host.status, str(host.exit_code)], line
        assert host.message, name
        shown = host.message
        if host.failed_layer and shown.startswith(f"{host.failed_layer}: "):
            shown = shown[len(host.failed_layer) + 2:]
        assert shown in line, line
        if host.exit_code == codes.READY:
            assert "hint:" not in line and host.hint == ""
        else:
            assert host.hint, name
            assert line.count(host.hint) == 1, line
            azure = f"  [{host.azure_line()}]" if host.azure else ""
            assert line.endswith(f"  hint: {host.hint}{azure}"), line
    if not result.ok:
        assert f"exit {result.exit_code} ({codes.name(result.exit_code)}): " in "\n".join(result.summary_lines())


# ------------------------------------------------------------------------------ a ready host
def test_a_ready_host_its_phases_steps_layers_and_timings() -> None:
    result, seen = reduce([
        event("runner_on_start", "a", task="Validate every input", task_action="openadapt.waa.waa_validate"),
        event("runner_on_ok", "a", task="Validate every input", task_action="openadapt.waa.waa_validate",
              res={"changed": False, "msg": "every input is valid"}, start="2026-01-01T00:00:00+00:00"),
        event("runner_on_start", "a", role="openadapt.waa.winarena_container",
              task="Validating arguments against arg spec 'main'", task_action="ansible.builtin.validate_argument_spec"),
        event("runner_on_ok", "a", role="openadapt.waa.winarena_container", task="Validating arguments",
              task_action="ansible.builtin.validate_argument_spec"),
        event("runner_on_start", "a", role="openadapt.waa.winarena_container", task="Ensure"),
        event("runner_on_ok", "a", role="openadapt.waa.winarena_container", task="Ensure", res={"changed": True},
              end="2026-01-01T00:00:02+00:00"),
        event("runner_on_start", "a", role="waa_health", task="Probe the health layers"),
        probe_ok("a", report(), end="2026-01-01T00:00:05+00:00"),
        stats(ok={"a": 4}, changed={"a": 1}, processed={"a": 1}),
    ])
    host = result.hosts["a"]
    assert (result.exit_code, result.ok, host.status, host.exit_code, host.changed) == (0, True, "ready", 0, 1)
    assert (host.message, host.hint, host.failed_layer) == (f"ready: {', '.join(LAYERS)} healthy", "", None)
    assert host.phase == "waa_health"
    assert [layer.layer for layer in host.layers] == LAYERS and all(layer.healthy for layer in host.layers)
    assert [(s.role, s.status) for s in host.steps] == [
        (None, "ok"), ("winarena_container", "ok"), ("winarena_container", "changed"), ("waa_health", "ok")]
    assert host.duration_s == 5.0
    assert host.timings() == {"play": 0.5, "winarena_container": 1.0, "waa_health": 0.5}
    assert result.summary.startswith("up: 1/1 hosts ready in ")
    assert [e.message for e in seen if e.kind == "health"] == ["ready"]
    assert_line_and_json_agree(result)


# ------------------------------------------------------------------------------ planned failures
def _usage() -> dict[str, Any]:
    message = "invalid input (1): waa_health_timeout=-5: must be a whole number of seconds >= 1"
    found = verdict(codes.USAGE, message, step="validate", failure_class="permanent", hint=VALIDATE_HINT)
    return failed("h", found, task="Validate every input", action="openadapt.waa.waa_validate",
                  problems=["waa_health_timeout=-5: must be a whole number of seconds >= 1"])


ENGINE_DOWN = report("docker_daemon", layers=["docker_daemon"], failure_class="permanent",
                     hint="start the engine: systemctl start docker", message="docker_daemon: no answer on the socket")
VM_BOOT = report("vm_boot", hint="look at the desktop", failure_class="recoverable", message="vm_boot: black screen")
SERVER = report("waa_server", hint="restart the container once", failure_class="recoverable",
                message="waa_server: /probe failed: connection refused")
A11Y = report("accessibility", hint="probe again later", failure_class="transient",
              message="accessibility: the tree is empty")

# id, events of host 'h', expected (status, exit code, failed_layer, failure_class), words of the message, hint
PLANNED = [
    ("usage", [_usage()], ("usage", 64, "validate", "permanent"), "waa_health_timeout=-5", VALIDATE_HINT),
    ("preflight", [failed("h", verdict("preflight", "preflight failed: /dev/kvm is missing", step="nested_virt_check",
                                       failure_class="permanent", hint="enable nested virtualization"),
                          role="openadapt.waa.nested_virt_check", task="Stop here when the host cannot run WAA")],
     ("failed", 1, "nested_virt_check", "permanent"), "/dev/kvm is missing", "enable nested virtualization"),
    ("docker_daemon-refused-distribution",
     [failed("h", verdict("docker_daemon", "docker_daemon installs the engine on Debian and Ubuntu only; this host is "
                          "RedHat", step="docker_daemon", failure_class="permanent",
                          hint="install Docker yourself and set waa_docker_install=false"), role="docker_daemon")],
     ("failed", 2, "docker_daemon", "permanent"), "this host is RedHat",
     "install Docker yourself and set waa_docker_install=false"),
    ("docker_daemon-engine-wait",  # the probe module's own failure: msg with the hint, verdict without
     [event("runner_on_failed", "h", role="docker_daemon", task="Wait until the engine API answers",
            task_action="openadapt.waa.waa_health_probe",
            res={**ENGINE_DOWN, "failed": True, "msg": f"{ENGINE_DOWN['message']} (hint: {ENGINE_DOWN['hint']})"})],
     ("not_ready", 2, "docker_daemon", "permanent"), "no answer on the socket", ENGINE_DOWN["hint"]),
    ("image_pull", [failed("h", verdict("image_pull", "pull of windowsarena/winarena:latest failed: manifest unknown",
                                        step="winarena_image"), role="winarena_image", task="Pull the image",
                           action="openadapt.waa.waa_image")],
     ("failed", 3, "winarena_image", None), "manifest unknown", codes.hint(codes.IMAGE_PULL)),
    ("container", [failed("h", verdict("container", "container waa-1 does not exist", step="winarena_container",
                                       layer="container", failure_class="permanent",
                                       hint="run vm_setup (or waa-run vm-setup) first"), role="winarena_container",
                          task="Fail when there is no container to start or restart")],
     ("not_ready", 4, "container", "permanent"), "container waa-1 does not exist",
     "run vm_setup (or waa-run vm-setup) first"),
    ("vm_boot", [probe_ok("h", VM_BOOT), health_fail("h", VM_BOOT)], ("not_ready", 5, "vm_boot", "recoverable"),
     "black screen", "look at the desktop"),
    ("waa_server", [probe_ok("h", SERVER), health_fail("h", SERVER)], ("not_ready", 6, "waa_server", "recoverable"),
     "/probe failed: connection refused", "restart the container once"),
    ("accessibility", [probe_ok("h", A11Y), health_fail("h", A11Y)],
     ("not_ready", 7, "accessibility", "transient"), "the tree is empty", "probe again later"),
    ("azure", [failed("h", verdict("azure", "h: Azure VM rg/h could not be started: Error powering on virtual "
                                   "machine h - (InternalServerError)", step="azure"),
                      task="Azure | could not start the VM")],
     ("failed", 14, "azure", None), "(InternalServerError)", codes.hint(codes.AZURE)),
    ("azure-ssh", [failed("h", verdict("unreachable", "h: Azure VM rg/h is started but SSH to azureuser@10.0.0.4:22 "
                                       "did not answer within 600 s", step="azure", failure_class="transient"),
                          task="Azure | SSH did not answer")],
     ("unreachable", 10, "azure", "transient"), "did not answer within 600 s", codes.hint(codes.UNREACHABLE)),
    ("unreachable", [event("runner_on_unreachable", "h", task="Gathering Facts", res={
        "changed": False, "unreachable": True,
        "msg": "Failed to connect to the host via ssh: ssh: connect to host 127.1.2.3 port 22: Connection refused"})],
     ("unreachable", 10, "Gathering Facts", None), "connect to host 127.1.2.3 port 22", codes.hint(codes.UNREACHABLE)),
    ("ssh-rc-255", [crashed("h", role="waa_health", task="Probe the health layers", rc=255,
                            msg="MODULE FAILURE\nSee stdout/stderr for the exact error",
                            module_stderr="Shared connection to 127.1.2.3 closed.\r\n")],
     ("unreachable", 10, "waa_health", None), "MODULE FAILURE", codes.hint(codes.UNREACHABLE)),
]


@pytest.mark.parametrize("events,expected,words,hint", [case[1:] for case in PLANNED], ids=[c[0] for c in PLANNED])
def test_each_planned_failure_gives_its_code_status_layer_message_and_hint(
        events: list[dict[str, Any]], expected: tuple[Any, ...], words: str, hint: str) -> None:
    dark = {"h": 1} if expected[0] == "unreachable" and events[-1]["event"] == "runner_on_unreachable" else {}
    result, seen = reduce([*events, stats(failures={} if dark else {"h": 1}, dark=dark)], status="failed")
    host = result.hosts["h"]
    assert (host.status, host.exit_code, host.failed_layer, host.failure_class) == expected
    assert words in host.message and "\n" not in host.message
    assert host.hint == hint and host.exit_name == codes.name(host.exit_code)
    assert result.exit_code == host.exit_code
    kinds = [e.kind for e in seen if e.kind in ("host_failed", "host_unreachable")]
    assert kinds == ["host_unreachable" if host.status == "unreachable" else "host_failed"]
    assert_line_and_json_agree(result)


def test_a_usage_error_names_the_variable_in_the_validate_phase() -> None:
    result, seen = reduce([event("runner_on_start", "h", task="Validate every input",
                                 task_action="openadapt.waa.waa_validate"), _usage(), stats(failures={"h": 1})],
                          status="failed")
    host = result.hosts["h"]
    assert (host.status, host.exit_code, host.phase, result.exit_code) == ("usage", 64, "validate", 64)
    assert host.message.startswith("invalid input (1): waa_health_timeout=-5")
    assert [e.phase for e in seen if e.kind == "phase"] == ["validate"]


# ------------------------------------------------------------------------------ unplanned failures
TRACEBACK = "Traceback (most recent call last):\n  File \"x.py\", line 1\nModuleNotFoundError: No module named 'docker'\n"
IMPORT = ("Failed to import the required Python library (requests) on waa-1's Python /usr/bin/python3. "
          "Please read the module documentation and install it in the appropriate location.")
UNPLANNED: list[tuple[Any, ...]] = [
    ("module-failure-in-winarena_image",
     crashed("h", role="openadapt.waa.winarena_image", task="Pull the image", rc=1,
             msg="MODULE FAILURE\nSee stdout/stderr for the exact error", module_stderr=TRACEBACK),
     "MODULE FAILURE: ModuleNotFoundError: No module named 'docker'"),
    ("import-error-in-winarena_container",
     crashed("h", role="winarena_container", task="Ensure the container runs", msg=IMPORT), IMPORT),
    ("a-preflight-task-without-a-verdict",
     crashed("h", role="nested_virt_check", task="Check the host (read-only)", msg="no KVM\nmore detail"), "no KVM"),
    ("a-task-named-like-a-fail-site",
     crashed("h", role="docker_daemon", task="Fail when the engine does not answer",
             task_path="/c/roles/docker_daemon/tasks/service.yml:30",
             msg="docker_daemon: no answer (exit code 2; hint: start it)"),
     "docker_daemon: no answer (exit code 2; hint: start it)"),
    ("an-azure-task-without-a-verdict",
     crashed("h", task="Azure | start the VM when it is deallocated or stopped",
             task_path="/c/playbooks/tasks/azure_power.yml:40", msg="Error powering on virtual machine h"),
     "Error powering on virtual machine h"),
    ("an-exit_code-outside-waa_verdict",
     crashed("h", role="waa_health", msg="waa_server: refused", exit_code=6, failed_layer="waa_server", hint="h"),
     "waa_server: refused"),
    ("a-malformed-verdict",
     crashed("h", role="winarena_image", msg="odd", waa_verdict={"exit_code": "3", "message": "x"}), "odd"),
    ("a-verdict-whose-code-is-a-bool",
     crashed("h", role="winarena_image", msg="odd too", waa_verdict={"exit_code": True}), "odd too"),
    ("no-message-at-all", crashed("h", role="winarena_container", task="Create the storage directory"),
     "task 'Create the storage directory' failed"),
]


@pytest.mark.parametrize("failure,message", [pytest.param(*case[1:3], id=case[0], marks=case[3:])
                                             for case in UNPLANNED])
def test_an_unplanned_failure_is_exit_9_in_its_own_words_never_a_roles_code(
        failure: dict[str, Any], message: str) -> None:
    result, seen = reduce([failure, stats(failures={"h": 1})], status="failed")
    host = result.hosts["h"]
    assert (host.status, host.exit_code, host.exit_name, result.exit_code) == ("failed", 9, "unknown", 9)
    assert host.message == message
    assert host.hint == codes.hint(codes.UNKNOWN)
    assert [e.message for e in seen if e.kind == "host_failed"] == [message]
    assert_line_and_json_agree(result)


# ------------------------------------------------------------------------------ which verdict counts
def test_the_latest_verdict_counts() -> None:
    late_failure = failed("late", verdict("container", "container waa-1 was OOM-killed", layer="container",
                                          step="winarena_container"), role="winarena_container")
    result, seen = reduce([
        probe_ok("worse", VM_BOOT), probe_ok("worse", A11Y),
        probe_ok("better", SERVER), probe_ok("better", report()),
        probe_ok("late", report()), late_failure,
        probe_ok("crash", report()), crashed("crash", role="waa_health", task="Record", msg="boom"),
        probe_ok("deadline", SERVER),
        health_fail("deadline", {**SERVER, KEY: {**SERVER[KEY], "message": SERVER[KEY]["message"] +
                                                  " (the deadline waa_health_timeout=120s ended the wait)"}}),
    ], playbook="probe")
    hosts = result.hosts
    assert (hosts["worse"].status, hosts["worse"].exit_code, hosts["worse"].failed_layer, hosts["worse"].hint,
            hosts["worse"].failure_class) == ("not_ready", 7, "accessibility", "probe again later", "transient")
    assert (hosts["better"].status, hosts["better"].exit_code) == ("ready", 0)
    assert (hosts["late"].status, hosts["late"].exit_code, hosts["late"].message) == (
        "not_ready", 4, "container waa-1 was OOM-killed")
    assert (hosts["crash"].status, hosts["crash"].exit_code, hosts["crash"].message) == ("failed", 9, "boom")
    assert hosts["deadline"].message.endswith("(the deadline waa_health_timeout=120s ended the wait)")
    assert result.exit_code == codes.NOT_ALL_READY
    assert [e.message for e in seen if e.kind == "health" and e.host == "worse"] == [
        "not ready: vm_boot: black screen", "not ready: accessibility: the tree is empty"]
    assert_line_and_json_agree(result)


def test_a_failure_the_play_rescued_does_not_count() -> None:
    oom = verdict("container", "container waa-1 could not be started: OOM", layer="container",
                  step="winarena_container")
    result, _ = reduce([
        # the container step failed inside a block, its rescue recovered and the host became ready
        failed("recovered", oom, role="winarena_container"),
        event("runner_on_ok", "recovered", role="winarena_container", task="Rescue: recreate it"),
        probe_ok("recovered", report()),
        # the same failure, not rescued: it counts
        failed("counted", oom, role="winarena_container"),
        stats(failures={"counted": 1}, rescued={"recovered": 1}),
    ], status="failed")
    hosts = result.hosts
    assert (hosts["recovered"].status, hosts["recovered"].exit_code) == ("ready", 0)
    assert (hosts["counted"].status, hosts["counted"].exit_code) == ("not_ready", 4)
    assert result.exit_code == codes.CONTAINER
    assert_line_and_json_agree(result)


def rescued_and_failed_again(host: str, first: dict[str, Any], published: dict[str, Any]) -> list[dict[str, Any]]:
    """What every playbook does with a failure (playbooks/tasks/publish_failure.yml): its block's rescue
    publishes the verdict (waa_publish, an ok result) and fails the host again with it (waa_fail)."""
    return [first,
            event("runner_on_ok", host, task="Publish the verdict and fail again",
                  task_action="ansible.builtin.include_tasks"),
            event("runner_on_ok", host, task="Publish the failure's verdict (job artifacts)",
                  task_action="openadapt.waa.waa_publish",
                  res={"changed": False, "msg": f"{host}: exit code {published['exit_code']}", KEY: published}),
            failed(host, published, task="The host stays failed, with that verdict")]


def test_a_failure_the_play_publishes_and_fails_again_keeps_its_verdict() -> None:
    """The shape of a real `up` whose image is missing (recorded 2026-12-01 against the emulator)."""
    missing = verdict("image_pull", "image waa-missing:latest is not present and waa_image_pull is false: load or "
                                    "pull it first", step="winarena_image", failure_class="permanent",
                      hint="load the image on the host (docker load) or pass --pull / waa_image_pull: true")
    planned = failed("a", missing, role="winarena_image", task="Refuse to pull when pulling is off")
    crash = crashed("b", role="winarena_image", task="Look for the image", rc=1,
                    msg="MODULE FAILURE\nSee stdout/stderr for the exact error", module_stderr=TRACEBACK)
    own_words = verdict("unknown", "MODULE FAILURE: ModuleNotFoundError: No module named 'docker'",
                        step="Look for the image")
    result, seen = reduce([*rescued_and_failed_again("a", planned, missing),
                           *rescued_and_failed_again("b", crash, own_words),
                           stats(failures={"a": 1, "b": 1}, rescued={"a": 1, "b": 1})], status="failed")
    a, b = result.hosts["a"], result.hosts["b"]
    assert (a.status, a.exit_code, a.failed_layer, a.failure_class) == ("failed", 3, "winarena_image", "permanent")
    assert a.message == missing["message"] and a.hint == missing["hint"]
    assert (b.status, b.exit_code, b.message) == ("failed", 9, "MODULE FAILURE: ModuleNotFoundError: No module "
                                                                "named 'docker'")
    assert result.exit_code == codes.NOT_ALL_READY
    assert [e.message for e in seen if e.kind == "host_failed" and e.host == "a"] == [missing["message"]] * 2
    assert_line_and_json_agree(result)


def test_only_a_health_report_is_a_health_event() -> None:
    missing = verdict("image_pull", "image waa-missing:latest is not present", step="winarena_image")
    _, seen = reduce([*rescued_and_failed_again("a", failed("a", missing, role="winarena_image"), missing),
                      stats(failures={"a": 1}, rescued={"a": 1})], status="failed")
    assert not [e for e in seen if e.kind == "health"]


def test_a_rescued_failure_after_a_not_ready_report_leaves_the_reports_verdict() -> None:
    result, _ = reduce([
        probe_ok("reported", SERVER),
        crashed("reported", role="waa_health", task="Restart once", msg="restart failed"),
        event("runner_on_ok", "reported", role="waa_health", task="Rescue: carry on"),
        stats(rescued={"reported": 1}, ok={"reported": 2}),
    ], playbook="probe")
    host = result.hosts["reported"]
    assert (host.status, host.exit_code, host.message, host.hint) == (
        "not_ready", 6, SERVER["message"], "restart the container once")
    assert result.exit_code == codes.WAA_SERVER


def test_ignored_errors_do_not_count() -> None:
    result, seen = reduce([
        event("runner_on_failed", "a", role="winarena_container", task="Stop it", ignore_errors=True,
              res={"failed": True, "msg": "stop failed", KEY: verdict("container", "stop failed", layer="container")}),
        event("runner_on_failed", "a", role="winarena_container", task="Remove it", ignore_errors=True,
              res={"failed": True, "msg": "no such container"}),
        probe_ok("a", report()),
        stats(ignored={"a": 2}, ok={"a": 1}),
    ])
    host = result.hosts["a"]
    assert (host.status, host.exit_code, result.exit_code) == ("ready", 0, 0)
    assert [s.status for s in host.steps] == ["ignored", "ignored", "ok"]
    assert not [e for e in seen if e.kind == "host_failed"]


# ------------------------------------------------------------------------------ stopped runs
def test_a_deadline_keeps_ready_hosts_and_makes_the_others_unfinished() -> None:
    result, _ = reduce([
        probe_ok("done", report()),
        event("runner_on_start", "waiting", role="waa_health", task="Probe the health layers"),
        probe_ok("stuck", VM_BOOT),
        event("runner_on_start", "stuck", role="waa_health", task="Wait again until the deadline"),
    ], status="timeout")
    hosts = result.hosts
    assert (hosts["done"].status, hosts["done"].exit_code) == ("ready", 0)
    assert (hosts["waiting"].status, hosts["waiting"].exit_code) == ("unfinished", codes.DEADLINE)
    assert "deadline (--timeout) passed while in waa_health" in hosts["waiting"].message
    assert (hosts["stuck"].status, hosts["stuck"].exit_code, hosts["stuck"].failed_layer) == (
        "unfinished", codes.DEADLINE, "vm_boot")
    assert "vm_boot: black screen" in hosts["stuck"].message and hosts["stuck"].hint == codes.hint(codes.DEADLINE)
    assert result.exit_code == codes.DEADLINE
    assert_line_and_json_agree(result)
    result, _ = reduce([event("runner_on_start", "a", role="waa_health")], status="canceled")
    assert result.exit_code == codes.DEADLINE and "canceled" in result.hosts["a"].message


def test_a_deadline_keeps_the_code_of_a_host_that_had_already_failed() -> None:
    result, _ = reduce([
        probe_ok("done", report()),
        failed("broken", verdict("image_pull", "pull failed: manifest unknown", step="winarena_image"),
               role="winarena_image"),
        event("runner_on_start", "waiting", role="waa_health"),
    ], status="timeout")
    assert (result.hosts["broken"].status, result.hosts["broken"].exit_code) == ("failed", codes.IMAGE_PULL)
    assert result.hosts["waiting"].exit_code == codes.DEADLINE
    assert result.exit_code == codes.NOT_ALL_READY


def test_hosts_stopped_by_another_hosts_failure_are_aborted_and_follow_that_failure() -> None:
    # strategy linear + max_fail_percentage: the play ends for every host after b1 fails
    no_kvm = verdict("preflight", "preflight failed: /dev/kvm is missing", step="nested_virt_check")
    result, _ = reduce([
        event("runner_on_start", "b1", role="nested_virt_check", task="Check the host"),
        event("runner_on_start", "b2", role="nested_virt_check", task="Check the host"),
        event("runner_on_ok", "b1", role="nested_virt_check", task="Check the host"),
        event("runner_on_ok", "b2", role="nested_virt_check", task="Check the host"),
        failed("b1", no_kvm, role="nested_virt_check"),
        event("runner_on_skipped", "b2", role="nested_virt_check", task="Stop here when the host cannot run WAA"),
        stats(failures={"b1": 1}, ok={"b1": 1, "b2": 1}, processed={"b1": 1, "b2": 1, "b3": 1}),
    ], status="failed")
    b2, b3 = result.hosts["b2"], result.hosts["b3"]
    assert (b2.status, b2.exit_code, b2.phase) == ("aborted", codes.UNKNOWN, "nested_virt_check")
    assert "another host's failure" in b2.message and b2.hint
    assert (b3.status, b3.exit_code) == ("aborted", codes.UNKNOWN), "a host the play ran for without a task result"
    assert result.exit_code == codes.PREFLIGHT
    assert result.summary.startswith("up: 0/3 hosts ready, 2 aborted, 1 failed")
    assert_line_and_json_agree(result)


def test_a_fresh_host_stopped_by_another_hosts_failure_is_aborted_in_a_real_run() -> None:
    recorded = json.loads((DATA / "runner_events_up.json").read_text())["events"]
    setup = next(i for i, e in enumerate(recorded) if e["event_data"].get("task", "").startswith("Set up what a host"))
    no_kvm = verdict("preflight", "preflight failed: /dev/kvm is missing", step="nested_virt_check")
    result, _ = reduce([*recorded[:setup], failed("other", no_kvm, role="nested_virt_check"),
                        stats(failures={"other": 1}, processed={"localhost": 1, "other": 1})], status="failed")
    assert (result.hosts["localhost"].status, result.exit_code) == ("aborted", codes.PREFLIGHT)


# ------------------------------------------------------------------------------ the run's exit code
def hosts_of(*pairs: tuple[str, int]) -> dict[str, HostResult]:
    return {f"h{i}": HostResult(name=f"h{i}", status=status, exit_code=code) for i, (status, code) in enumerate(pairs)}


@pytest.mark.parametrize("pairs,overall", [
    ([("ready", 0), ("ready", 0)], 0),
    ([("ready", 0), ("not_ready", 6)], 6),
    ([("failed", 3), ("failed", 3), ("ready", 0)], 3),
    ([("failed", 3), ("not_ready", 6), ("ready", 0)], 13),
    ([("unreachable", 10), ("unreachable", 10)], 10),
    ([("unfinished", 8), ("ready", 0)], 8),
    ([("usage", 64), ("usage", 64)], 64),
    ([("failed", 1), ("aborted", 9), ("aborted", 9)], 1),
    ([("failed", 1), ("aborted", 9), ("not_ready", 6)], 13),
    ([("failed", 9), ("aborted", 9)], 9),
    ([("stopped", 0), ("stopped", 0)], 0),
], ids=lambda value: str(value))
def test_the_runs_code_same_code_that_code_different_13_all_ready_0(pairs: list[tuple[str, int]],
                                                                    overall: int) -> None:
    assert overall_exit_code(hosts_of(*pairs), runner_status="failed", rc=2) == overall


def test_a_run_whose_only_other_hosts_were_aborted_is_not_ok() -> None:
    assert overall_exit_code(hosts_of(("ready", 0), ("aborted", 9)), runner_status="failed", rc=2) != codes.READY


def test_no_hosts_is_a_usage_error_and_early_failures_are_unknown() -> None:
    reducer = EventReducer("up")
    reducer({"event": "playbook_on_no_hosts_matched", "event_data": {}})
    result = build_run_result("up", reducer, "successful", 0, time.monotonic(), "/x")
    assert (result.exit_code, result.hosts) == (codes.USAGE, {}) and "no host matched" in result.summary
    result = build_run_result("up", EventReducer("up"), "successful", 0, time.monotonic(), "/x")
    assert result.exit_code == codes.USAGE
    result = build_run_result("up", EventReducer("up"), "failed", 4, time.monotonic(), "/x")
    assert result.exit_code == codes.UNKNOWN and "before any host ran (rc 4" in result.summary
    result = build_run_result("up", EventReducer("up"), "timeout", 254, time.monotonic(), "/x")
    assert result.exit_code == codes.DEADLINE and "stopped (timeout)" in result.summary
    assert json.loads(json.dumps(result.to_dict()))["hosts"] == {}


# ------------------------------------------------------------------------------ what the user reads
def test_the_summary_and_the_json_report_agree_on_every_host() -> None:
    result, _ = reduce([
        probe_ok("ready-1", report()),
        probe_ok("health-6", SERVER), health_fail("health-6", SERVER),
        _usage() | {"event_data": {**_usage()["event_data"], "host": "usage-64"}},
        failed("pull-3", verdict("image_pull", "pull failed: manifest unknown", step="winarena_image"),
               role="winarena_image"),
        event("runner_on_unreachable", "ssh-10", res={"unreachable": True, "msg": "ssh: connection timed out"}),
        crashed("bug-9", role="winarena_container", msg="MODULE FAILURE", module_stderr="KeyError: 'Id'\n"),
        event("runner_on_ok", "off-15", task="Azure | state of the VM", res={"ansible_facts": {"waa_azure_status": {
            "vm": "off-15", "size": "Standard_D8ds_v5", "powerstate": "deallocated", "price_per_hour": 0.452}}}),
        event("runner_on_ok", "aborted", role="nested_virt_check", task="Check the host"),
        stats(failures={"health-6": 1, "usage-64": 1, "pull-3": 1, "bug-9": 1}, dark={"ssh-10": 1}),
    ], status="failed")
    statuses = {name: (host.status, host.exit_code) for name, host in result.hosts.items()}
    assert statuses == {"ready-1": ("ready", 0), "health-6": ("not_ready", 6), "usage-64": ("usage", 64),
                        "pull-3": ("failed", 3), "ssh-10": ("unreachable", 10), "bug-9": ("failed", 9),
                        "off-15": ("vm_stopped", 15), "aborted": ("aborted", 9)}
    assert result.hosts["bug-9"].message == "MODULE FAILURE: KeyError: 'Id'"
    assert result.exit_code == codes.NOT_ALL_READY
    assert result.summary.startswith(
        "up: 1/8 hosts ready, 1 aborted, 2 failed, 1 not_ready, 1 unreachable, 1 usage, 1 vm_stopped in ")
    lines = result.summary_lines()
    assert lines[0] == result.summary and lines[-2:] == [
        f"exit 13 (not_all_ready): {codes.describe(13).summary}", "run artifacts: /runs/x"]
    assert [line.split()[0] for line in lines[1:-2]] == [
        "aborted", "bug-9", "health-6", "off-15", "pull-3", "ssh-10", "usage-64", "ready-1"], "failures first"
    assert_line_and_json_agree(result)


def test_the_json_report_has_the_documented_shape() -> None:
    result, _ = reduce([probe_ok("a", SERVER)], playbook="probe")
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {"schema_version", "playbook", "ok", "exit_code", "exit_name", "hint", "summary",
                         "started_at", "duration_s", "runner_status", "rc", "artifact_dir", "hosts"}
    assert (data["schema_version"], data["exit_code"], data["exit_name"], data["ok"]) == (1, 6, "waa_server", False)
    assert data["hint"] == codes.hint(6)
    host = data["hosts"]["a"]
    assert set(host) == {"name", "status", "exit_code", "exit_name", "message", "hint", "failed_layer",
                         "failure_class", "layers", "steps", "phase", "changed", "duration_s", "timings", "azure"}
    assert (host["status"], host["failed_layer"], host["failure_class"], host["hint"]) == (
        "not_ready", "waa_server", "recoverable", "restart the container once")
    assert set(host["layers"][0]) == {"layer", "healthy", "message", "duration_s", "attempts", "failure_class",
                                      "hint", "details"}
    assert set(host["steps"][0]) == {"role", "task", "status", "duration_s"}
    documented = (DOCS / "json-report.md").read_text()
    for key in list(data) + list(host):
        assert f"`{key}`" in documented or f'"{key}"' in documented, key
    for status in ("ready", "not_ready", "failed", "unreachable", "unfinished", "aborted", "stopped", "vm_stopped",
                   "done"):
        assert f"`{status}`" in documented, status


def test_every_status_and_code_a_host_can_get_is_in_the_docs() -> None:
    exit_doc = (DOCS / "exit-codes.md").read_text()
    for code in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 64):
        assert f"| {code} | {codes.name(code)} |" in exit_doc, code


# ------------------------------------------------------------------------------ progress
def test_progress_events_phases_health_failures() -> None:
    _, seen = reduce([
        event("runner_on_start", "a", task="Validate every input", task_action="openadapt.waa.waa_validate"),
        event("runner_on_ok", "a", task="Validate every input", task_action="openadapt.waa.waa_validate"),
        event("runner_on_start", "a", task="Look up", role="openadapt.waa.winarena_container",
              task_action="openadapt.waa.waa_health_probe"),
        event("runner_on_start", "a", task="Validating arguments against arg spec 'main'", role="nested_virt_check",
              task_action="ansible.builtin.validate_argument_spec"),
        event("runner_on_start", "a", task="Validate again", task_action="waa_validate"),
        event("runner_on_start", "a", role="waa_health", task="Probe the health layers"),
        probe_ok("a", SERVER),
        probe_ok("a", report()),
        event("runner_on_start", "b", task="Validate every input", task_action="openadapt.waa.waa_validate"),
        _usage() | {"event_data": {**_usage()["event_data"], "host": "b"}},
        event("runner_on_unreachable", "c", res={"unreachable": True, "msg": "ssh: no route to host\nmore"}),
    ])
    assert [(e.host, e.phase) for e in seen if e.kind == "phase"] == [
        ("a", "validate"), ("a", "winarena_container"), ("a", "nested_virt_check"), ("a", "validate"),
        ("a", "waa_health"), ("b", "validate")]
    assert [(e.host, e.phase, e.message) for e in seen if e.kind == "health"] == [
        ("a", "waa_health", "not ready: waa_server: /probe failed: connection refused"), ("a", "waa_health", "ready")]
    failures = [e for e in seen if e.kind == "host_failed"]
    assert [(e.host, e.phase) for e in failures] == [("b", "validate")]
    assert failures[0].message.startswith("invalid input (1): waa_health_timeout=-5")
    assert failures[0].step is not None and failures[0].step.status == "failed"
    assert [(e.host, e.message) for e in seen if e.kind == "host_unreachable"] == [("c", "ssh: no route to host")]


def test_a_partial_wait_inside_another_role_is_no_verdict_but_its_failure_is() -> None:
    # the docker_daemon role's engine wait reports a verdict only when it fails (report_verdict: false)
    engine_ok = report(layers=["docker_daemon"], with_verdict=False)
    result, seen = reduce([
        probe_ok("a", engine_ok, role="docker_daemon"),
        event("runner_on_start", "a", role="winarena_image", task="Pull the image"),
        probe_ok("b", engine_ok, role="docker_daemon"),
    ], status="timeout")
    assert (result.hosts["a"].status, result.hosts["a"].exit_code) == ("unfinished", codes.DEADLINE)
    assert "while in winarena_image" in result.hosts["a"].message
    assert not [e for e in seen if e.kind == "health"]
    assert result.hosts["b"].status == "unfinished"
    result, _ = reduce([probe_ok("b", engine_ok, role="docker_daemon"),
                        event("runner_on_failed", "c", role="docker_daemon", task="Wait until the engine API answers",
                              res={**ENGINE_DOWN, "failed": True, "msg": ENGINE_DOWN["message"]}),
                        stats(failures={"c": 1}, ok={"b": 1})], status="failed")
    assert (result.hosts["b"].status, result.hosts["b"].exit_code) == ("aborted", codes.UNKNOWN)
    c = result.hosts["c"]
    assert (c.exit_code, c.failed_layer, c.failure_class) == (2, "docker_daemon", "permanent")


def test_pull_progress_reaches_the_callback_with_an_eta() -> None:
    progress = {"image": "i", "bytes_done": 100 * 2 ** 20, "bytes_total": 400 * 2 ** 20, "layers_done": 1,
                "layers_total": 4, "status": "Downloading", "elapsed_s": 10}
    _, seen = reduce([event("runner_retry", "a", role="winarena_image", res={"pull_progress": progress,
                                                                              "attempts": 3})])
    pulls = [e.pull for e in seen if e.kind == "pull"]
    assert pulls and pulls[0] is not None and pulls[0].eta_s == 30.0
    assert pulls[0].line() == "pulling 100/400 MB, 1/4 layers, ETA 30s"
    assert not [e for e in seen if e.kind == "retry"], "a pull retry is shown as pull progress, not as a retry"


def test_pull_eta_without_elapsed_uses_the_controllers_clock() -> None:
    clock = iter([100.0, 110.0])
    seen: list[ProgressEvent] = []
    reducer = EventReducer("up", on_event=seen.append, clock=lambda: next(clock))
    for done in (0, 50):
        reducer(event("runner_retry", "a", role="winarena_image", res={"pull_progress": {
            "bytes_done": done * 2 ** 20, "bytes_total": 100 * 2 ** 20, "layers_done": 0, "layers_total": 2}}))
    assert [e.pull.eta_s if e.pull else "-" for e in seen] == [None, 10.0]
    big = PullProgress.from_dict({"bytes_done": 3 * 2 ** 30, "bytes_total": 15 * 2 ** 30, "elapsed_s": 60})
    assert big.line() == "pulling 3.0/15.0 GB, ETA 240s" and big.fraction == 0.2
    assert PullProgress.from_dict({"status": "present"}).line() == "image present"


def test_other_retries_are_reported_as_retries() -> None:
    _, seen = reduce([event("runner_retry", "a", role="docker_daemon", task="Wait for the engine",
                            res={"attempts": 2, "msg": "not yet"})])
    assert [(e.kind, e.message) for e in seen] == [("retry", "Wait for the engine (attempt 2)")]


def test_a_broken_progress_callback_or_odd_event_does_not_break_the_reduction() -> None:
    def explode(_event: ProgressEvent) -> None:
        raise RuntimeError("callback bug")

    reducer = EventReducer("up", on_event=explode)
    assert reducer({"event": "runner_on_ok", "event_data": {"host": "a", "role": "waa_health", "res": report()}})
    assert reducer({"event": "runner_on_ok", "event_data": {"host": "a", "res": "not a dict", "duration": "x"}})
    assert reducer({"event": "runner_on_failed", "event_data": {"host": "b", "res": {KEY: "not a dict"}}})
    assert reducer({"event": "verbose", "stdout": "hello"}) and reducer({})
    result = build_run_result("up", reducer, "failed", 2, time.monotonic(), "/x")
    assert result.hosts["a"].status == "ready"
    assert (result.hosts["b"].status, result.hosts["b"].exit_code) == ("failed", 9)


# ------------------------------------------------------------------------------ playbooks without health, Azure
def test_down_hosts_are_stopped_and_provision_hosts_done() -> None:
    result, _ = reduce([event("runner_on_ok", "a", role="winarena_container"),
                        event("runner_on_ok", "b", role="winarena_container")], playbook="down")
    assert {h.status for h in result.hosts.values()} == {"stopped"} and result.exit_code == 0
    assert result.summary.startswith("down: 2/2 hosts stopped")
    result, _ = reduce([event("runner_on_ok", "localhost", task="Create the VMs", res={"changed": True})],
                       playbook="provision")
    assert (result.hosts["localhost"].status, result.exit_code) == ("done", 0)
    assert result.summary.startswith("provision: 1/1 hosts done")


def test_down_with_a_usage_error_on_one_host() -> None:
    refused = verdict("usage", "b is not an Azure VM of inventory/azure_rm.yml (no waa_azure_vm_name), so "
                               "waa_deallocate=true (--deallocate) cannot apply to it", step="validate",
                      failure_class="permanent")
    result, _ = reduce([event("runner_on_ok", "a", role="winarena_container"), failed("b", refused),
                        stats(failures={"b": 1}, ok={"a": 1})], playbook="down", status="failed")
    assert (result.hosts["a"].status, result.hosts["b"].status, result.hosts["b"].exit_code) == (
        "stopped", "usage", 64)
    assert result.exit_code == codes.USAGE and result.summary.startswith("down: 1/2 hosts stopped, 1 usage")
    assert_line_and_json_agree(result)


def azure_status(powerstate: str, action: str = "none") -> dict[str, Any]:
    return {"ansible_facts": {"waa_azure_status": {
        "vm": "waa-a-01", "resource_group": "openadapt-waa", "location": "eastus", "size": "Standard_D8ds_v5",
        "powerstate": powerstate, "price_per_hour": "0.452", "currency": "USD", "action": action}}}


def test_a_deallocated_azure_vm_without_a_probe_is_vm_stopped_with_its_price() -> None:
    result, _ = reduce([event("runner_on_ok", "waa-a-01", task="Azure | state of the VM",
                              res=azure_status("deallocated"),
                              task_path="/c/openadapt/waa/playbooks/tasks/azure_status.yml:12"),
                        probe_ok("waa-a-02", report())], playbook="probe")
    host = result.hosts["waa-a-01"]
    assert (host.status, host.exit_code, result.exit_code) == ("vm_stopped", 15, 15)
    assert host.message == "the Azure VM waa-a-01 is deallocated" and "waa-run up" in host.hint
    assert host.azure_line() == "azure: deallocated Standard_D8ds_v5 $0.452/h"
    assert host.timings() == {"play": 0.5}
    table = result.status_lines()
    assert table[1].split() == ["HOST", "POWER", "SIZE", "$/H", "READINESS"]
    assert table[2].split()[:5] == ["waa-a-01", "deallocated", "Standard_D8ds_v5", "0.452", "vm_stopped"]
    assert table[3].split() == ["waa-a-02", "-", "-", "-", "ready"]
    assert "running Azure VMs cost $0.000/h" in table[4]
    assert table[-1].startswith("exit 15 (vm_stopped): ")
    assert_line_and_json_agree(result)


def test_a_running_azure_vm_with_a_verdict_shows_its_price_on_its_line() -> None:
    result, _ = reduce([event("runner_on_ok", "waa-a-01", task="Azure | state of the VM",
                              res=azure_status("running", action="started")),
                        probe_ok("waa-a-01", SERVER)], playbook="probe")
    host = result.hosts["waa-a-01"]
    assert (host.status, host.exit_code) == ("not_ready", 6) and host.azure and host.azure["action"] == "started"
    line = host.summary_line()
    assert line.endswith("  [azure: running Standard_D8ds_v5 $0.452/h]") and line.count(host.hint) == 1
    assert "running Azure VMs cost $0.452/h" in "\n".join(result.status_lines())


# ------------------------------------------------------------------------------ a real run
def test_a_recorded_up_run_reduces_to_a_ready_host() -> None:
    recorded = json.loads((DATA / "runner_events_up.json").read_text())
    result, seen = reduce(recorded["events"], status=recorded["status"], rc=recorded["rc"])
    host = result.hosts["localhost"]
    assert result.exit_code == 0 and host.status == "ready" and host.hint == ""
    assert [layer.layer for layer in host.layers] == LAYERS and all(layer.healthy for layer in host.layers)
    phases = [e.phase for e in seen if e.kind == "phase"]
    assert phases[0] == "validate" and phases[-1] == "waa_health"
    assert {"winarena_container", "waa_health"} <= set(host.timings())
    verdicts = [e["event_data"]["res"][KEY] for e in recorded["events"] if KEY in e["event_data"].get("res", {})]
    assert verdicts and verdicts[-1]["exit_code"] == 0 and verdicts[-1]["step"] == "waa_health"
    assert host.message == verdicts[-1]["message"]
    assert_line_and_json_agree(result)
