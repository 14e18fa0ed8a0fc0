"""waa_runner without Ansible: the event reduction, exit-code aggregation, the lock, artifact
rotation, the CLI's usage errors and start-up time, and the documented table."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from waa_runner import exit_codes as codes
from waa_runner import state
from waa_runner.cli import USAGE_EXIT, build_parser, parse_extra_vars, CliError
from waa_runner.results import EventReducer, build_run_result

REPO = Path(__file__).resolve().parents[2]


def event(kind, host, role=None, task="t", res=None, **extra):
    data = {"host": host, "role": role, "task": task, "res": res or {}, "duration": 0.5, **extra}
    return {"event": kind, "event_data": data}


def report(ready, code=0, layer=None, hint="", failure_class=None):
    return {"ready": ready, "exit_code": code, "failed_layer": layer, "hint": hint, "message": f"{layer}: x",
            "failure_class": failure_class,
            "layers": [{"layer": "docker_daemon", "healthy": True, "message": "ok"}]}


def reduce(events, status="successful", playbook="up"):
    phases = []
    reducer = EventReducer(playbook, on_event=phases.append, expects_health=playbook != "down")
    for item in events:
        reducer.feed(item)
    return build_run_result(playbook, reducer, status, 0 if status == "successful" else 2, time.monotonic(), "/x"), phases


def test_ready_hosts_and_phases():
    result, seen = reduce([
        event("runner_on_start", "a", role="openadapt.waa.winarena_container"),
        event("runner_on_ok", "a", role="winarena_container", res={"changed": True}),
        event("runner_on_start", "a", role="waa_health"),
        event("runner_on_ok", "a", role="waa_health", res=report(True)),
    ])
    host = result.hosts["a"]
    assert result.exit_code == 0 and host.status == "ready" and host.changed == 1
    assert [e.phase for e in seen if e.kind == "phase"] == ["winarena_container", "waa_health"]
    assert host.layers[0].layer == "docker_daemon"


def test_a_failed_role_maps_to_its_code_and_the_probe_report_wins_for_waa_health():
    result, _ = reduce([
        event("runner_on_failed", "img", role="winarena_image", res={"msg": "pull failed\nmore"}),
        event("runner_on_ok", "srv", role="waa_health", res=report(False, 6, "waa_server", "restart it", "recoverable")),
        event("runner_on_failed", "srv", role="waa_health", res={"msg": "waa_server: down"}),
        event("runner_on_failed", "pre", role="nested_virt_check", res={"msg": "preflight failed: kvm"}),
        event("runner_on_failed", "own", role="winarena_image", res={"msg": "x", "exit_code": 2, "hint": "h"}),
    ])
    hosts = result.hosts
    assert (hosts["img"].exit_code, hosts["img"].message) == (3, "pull failed")
    assert (hosts["srv"].exit_code, hosts["srv"].failed_layer, hosts["srv"].hint) == (6, "waa_server", "restart it")
    assert hosts["pre"].exit_code == 1 and "nested virtualization" in hosts["pre"].hint
    assert hosts["own"].exit_code == 2 and hosts["own"].hint == "h"
    assert result.exit_code == codes.NOT_ALL_READY


def test_ignored_errors_unreachable_and_timeouts():
    result, _ = reduce([
        event("runner_on_failed", "a", role="winarena_container", ignore_errors=True),
        event("runner_on_ok", "a", role="waa_health", res=report(True)),
        event("runner_on_unreachable", "b", res={"msg": "ssh: connect to host b port 22: Connection refused"}),
    ])
    assert result.hosts["a"].status == "ready"
    assert (result.hosts["b"].status, result.hosts["b"].exit_code) == ("unreachable", codes.UNREACHABLE)
    assert result.exit_code == codes.UNREACHABLE
    result, _ = reduce([event("runner_on_start", "a", role="waa_health")], status="timeout")
    assert result.hosts["a"].status == "unfinished" and result.exit_code == codes.DEADLINE


def test_pull_progress_reaches_the_callback_with_an_eta():
    _, seen = reduce([event("runner_retry", "a", role="winarena_image", res={"pull_progress": {
        "image": "i", "bytes_done": 100, "bytes_total": 400, "layers_done": 1, "layers_total": 4,
        "status": "Downloading", "elapsed_s": 10}})])
    pulls = [e.pull for e in seen if e.kind == "pull"]
    assert pulls and pulls[0].eta_s == 30.0 and "ETA 30s" in pulls[0].line()


def test_down_hosts_are_done_without_a_health_report():
    result, _ = reduce([event("runner_on_ok", "a", role="winarena_container")], playbook="down")
    assert result.hosts["a"].status == "done" and result.exit_code == 0


@pytest.mark.parametrize("per_host,overall", [([0, 0], 0), ([0, 6], 6), ([6, 6, 0], 6), ([6, 1, 0], 13), ([], 0)])
def test_overall_exit_code(per_host, overall):
    assert codes.overall(per_host) == overall


def test_lock_refuses_a_second_run_and_names_the_holder(tmp_path):
    with state.target_lock(tmp_path, "k", "waa-run up"):
        script = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from waa_runner import state; from pathlib import Path\n"
                  f"try:\n  ctx = state.target_lock(Path({str(tmp_path)!r}), 'k', 'second', wait_s=0.2); ctx.__enter__()\n"
                  f"except state.Busy as e: print(e)")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30).stdout
        assert "busy: pid" in out and "waa-run up" in out and "--wait-lock" in out
    with state.target_lock(tmp_path, "k", "third", wait_s=0):
        pass


def test_artifact_rotation_keeps_the_newest(tmp_path):
    for index in range(5):
        (tmp_path / "runs" / f"2026010{index}T000000Z-up-x").mkdir(parents=True)
    removed = state.rotate(tmp_path / "runs", keep=2)
    assert len(removed) == 3
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["20260103T000000Z-up-x", "20260104T000000Z-up-x"]


def test_extra_vars_parsing(tmp_path):
    (tmp_path / "v.yml").write_text("a: 1\nb: [x]\n")
    assert parse_extra_vars(["n=3", "s=text", "j={\"k\": true}", f"@{tmp_path / 'v.yml'}"]) == {
        "n": 3, "s": "text", "j": {"k": True}, "a": 1, "b": ["x"]}
    with pytest.raises(CliError, match="KEY=VALUE"):
        parse_extra_vars(["oops"])
    with pytest.raises(CliError, match="does not exist"):
        parse_extra_vars(["@/nope.yml"])


def test_usage_errors_exit_64(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["up", "--timeout", "-1"])
    assert exit_info.value.code == USAGE_EXIT == codes.USAGE
    assert "must be greater than 0" in capsys.readouterr().err


def test_help_answers_fast_without_importing_ansible():
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "waa_runner.cli", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0 and "vm-setup" in proc.stdout and "exit codes" in proc.stdout
    assert "ansible_runner" not in proc.stderr and "ansible." not in proc.stderr
    print(f"waa-run --help: {elapsed:.3f}s")


def test_docs_table_matches_the_one_source():
    text = (REPO / "docs" / "exit-codes.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (\w+) \| (.+?) \| (.+?) \|$", text, re.M)
    documented = {int(code): (name, summary, hint) for code, name, summary, hint in rows}
    expected = {code: (row.name, row.summary, row.hint or "-") for code, row in codes.EXIT_CODES.items()}
    assert documented == expected


def test_a_task_that_lost_its_ssh_connection_makes_the_host_unreachable():
    result, _ = reduce([event("runner_on_failed", "a", role="waa_health", res={
        "msg": "MODULE FAILURE", "module_stderr": "Shared connection to 127.1.2.3 closed.\r\n"})])
    assert result.hosts["a"].status == "unreachable" and result.exit_code == codes.UNREACHABLE
