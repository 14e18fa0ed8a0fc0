"""How `waa-run` shows results (waa_runner.render): the one line per host, the summary, the
`waa-run status` table with what the running Azure VMs cost. Built from HostResult/RunResult
data as the reducer hands it out (waa_runner.model)."""
from __future__ import annotations

from typing import Any

import pytest

from waa_runner import exit_codes as codes
from waa_runner import render
from waa_runner.collection import load_module_util
from waa_runner.model import HostResult, RunResult

TABLE = load_module_util("waa_exit_codes")
AZURE = {"vm": "waa-a-01", "resource_group": "openadapt-waa", "location": "eastus", "size": "Standard_D8ds_v5",
         "powerstate": "running", "price_per_hour": "0.452", "currency": "USD", "action": "started"}


def host(name: str, status: str = "ready", code: int = 0, message: str = "", hint: str = "", **extra: Any) -> HostResult:
    if code and not hint:
        hint = codes.hint(code)
    return HostResult(name=name, status=status, exit_code=code, message=message, hint=hint, **extra)


def run(*hosts: HostResult, playbook: str = "up", exit_code: int | None = None, artifact_dir: str | None = "/runs/x",
        summary: str = "up: summary") -> RunResult:
    code = codes.overall(h.exit_code for h in hosts) if exit_code is None else exit_code
    return RunResult(playbook=playbook, exit_code=code, hosts={h.name: h for h in hosts}, duration_s=1.0,
                     artifact_dir=artifact_dir, runner_status="successful" if code == 0 else "failed",
                     summary=summary)


# ------------------------------------------------------------------------------ one line per host
def test_a_ready_hosts_line_gives_its_verdict_time_and_changes() -> None:
    line = render.host_line(host("waa-1", message="ready: 5 layers healthy", duration_s=17.94, changed=2))
    assert line.split()[:3] == ["waa-1", "ready", "0"]
    assert line.endswith("  ready: 5 layers healthy (17.9s, 2 changed)") and "hint" not in line
    assert render.host_line(host("waa-2")).endswith("  ok (0.0s, 0 changed)")


def test_columns_line_up_for_every_status() -> None:
    lines = [render.host_line(host(f"h-{status}", status, code, "m")) for status, code in (
        ("ready", 0), ("not_ready", 6), ("failed", 3), ("unreachable", 10), ("usage", 64), ("unfinished", 8),
        ("aborted", 9), ("vm_stopped", 15))]
    for line in lines:
        assert line[16] == " " and line[17:28].strip() in line.split()[1] and line[28] == " "
        assert line[29:32].strip().isdigit()
    assert all(line[32:34] == "  " and line[34] != " " for line in lines), "the message starts in the same column"


@pytest.mark.parametrize("layer,message,shown", [
    ("waa_server", "waa_server: /probe failed: connection refused", "waa_server: /probe failed: connection refused"),
    ("winarena_image", "pull failed: manifest unknown", "winarena_image: pull failed: manifest unknown"),
    ("azure", "waa-a-01: Azure VM rg/waa-a-01 could not be started", "azure: waa-a-01: Azure VM rg/waa-a-01 could"),
    (None, "MODULE FAILURE: KeyError: 'Id'", "9  MODULE FAILURE: KeyError: 'Id'"),
])
def test_a_failing_hosts_line_names_the_layer_once_then_message_and_hint(layer: str | None, message: str,
                                                                         shown: str) -> None:
    item = host("h", "failed", 9 if layer is None else 6, message, hint="do this", failed_layer=layer)
    line = render.host_line(item)
    assert shown in line and "\n" not in line
    if layer:
        assert line.count(f"{layer}:") == 1
    assert line.endswith("  hint: do this") and line.count("do this") == 1


def test_a_line_without_a_hint_says_so_and_an_azure_host_shows_its_vm() -> None:
    assert render.host_line(host("h", "failed", 9, "x", hint="", failed_layer=None)).endswith("hint: " +
                                                                                                codes.hint(9))
    bare = HostResult(name="h", status="failed", exit_code=9, message="x")
    assert render.host_line(bare).endswith("  x  hint: -")
    ready = render.host_line(host("waa-a-01", message="ready", azure=AZURE))
    assert ready.endswith("(0.0s, 0 changed)  [azure: running Standard_D8ds_v5 $0.452/h]")
    failing = render.host_line(host("waa-a-01", "not_ready", 5, "vm_boot: black", failed_layer="vm_boot",
                                    azure=AZURE))
    assert failing.endswith(f"hint: {codes.hint(5)}  [azure: running Standard_D8ds_v5 $0.452/h]")


def test_the_line_is_the_same_the_summary_callback_prints_for_a_verdict() -> None:
    """waa-run's line and the waa_summary callback's line come from the same verdict data."""
    line_of_verdict = getattr(TABLE, "host_line", None)
    if line_of_verdict is None:
        pytest.skip("plugins/module_utils/waa_exit_codes.py has no host_line yet")
    for found in (TABLE.verdict("waa_server", "waa_server: /probe refused", step="waa_health", layer="waa_server",
                                hint="restart it"),
                  TABLE.verdict("image_pull", "pull failed", step="winarena_image"),
                  TABLE.verdict("unknown", "MODULE FAILURE: KeyError: 'Id'"),
                  TABLE.verdict("usage", "invalid input (1): waa_ram_size=8: must be like 8G", step="validate")):
        item = host("waa-1", TABLE.status_of(found), found["exit_code"], found["message"], found["hint"],
                    failed_layer=found["layer"] or found["step"])
        assert render.host_line(item) == line_of_verdict("waa-1", found)


# ------------------------------------------------------------------------------ Azure
@pytest.mark.parametrize("azure,line", [
    (AZURE, "azure: running Standard_D8ds_v5 $0.452/h"),
    ({**AZURE, "price_per_hour": None}, "azure: running Standard_D8ds_v5 price unknown"),
    ({**AZURE, "price_per_hour": "None"}, "azure: running Standard_D8ds_v5 price unknown"),
    ({**AZURE, "price_per_hour": "n/a"}, "azure: running Standard_D8ds_v5 price unknown"),
    ({"vm": "x"}, "azure: ? ? price unknown"),
    (None, ""),
])
def test_the_azure_line(azure: dict[str, Any] | None, line: str) -> None:
    assert render.azure_line(host("h", azure=azure)) == line


def test_status_sums_the_price_of_running_vms_only() -> None:
    result = run(host("a", message="ready", azure=AZURE),
                 host("b", "ready", 0, "ready", azure={**AZURE, "vm": "b", "powerstate": "starting",
                                                      "price_per_hour": 1.5}),
                 host("c", "vm_stopped", 15, "the Azure VM c is deallocated",
                      azure={**AZURE, "vm": "c", "powerstate": "deallocated"}),
                 host("d", "not_ready", 6, "waa_server: down", failed_layer="waa_server",
                      azure={**AZURE, "vm": "d", "price_per_hour": None}),
                 host("local", message="ready"), summary="probe: 3/5 hosts ready")
    lines = result.status_lines()
    assert lines[0] == "probe: 3/5 hosts ready"
    assert lines[1].split() == ["HOST", "POWER", "SIZE", "$/H", "READINESS"]
    assert [line.split()[:4] for line in lines[2:7]] == [
        ["a", "running", "Standard_D8ds_v5", "0.452"], ["b", "starting", "Standard_D8ds_v5", "1.500"],
        ["c", "deallocated", "Standard_D8ds_v5", "0.452"], ["d", "running", "Standard_D8ds_v5", "-"],
        ["local", "-", "-", "-"]]
    assert lines[4].endswith("vm_stopped (15): the Azure VM c is deallocated")
    assert lines[5].endswith("not_ready (6): waa_server: down") and lines[6].endswith("  ready")
    assert lines[7] == "running Azure VMs cost $1.952/h (list prices, playbooks/vars/azure_prices.yml)"
    assert lines[8:10] == [render.host_line(result.hosts["c"]), render.host_line(result.hosts["d"])]
    assert lines[10] == f"exit 13 (not_all_ready): {codes.describe(13).summary}" and len(lines) == 11
    readiness_column = {line.index(line.split()[4]) for line in lines[1:7]}
    assert len(readiness_column) == 1, "the READINESS column is aligned"


def test_status_without_azure_hosts_has_no_cost_line() -> None:
    lines = run(host("a", message="ready"), summary="probe: 1/1 hosts ready").status_lines()
    assert lines == ["probe: 1/1 hosts ready", lines[1], lines[2]] and not any("cost" in line for line in lines)


# ------------------------------------------------------------------------------ the summary
def test_the_summary_puts_failing_hosts_first_then_the_codes_meaning_and_the_artifacts() -> None:
    result = run(host("a-ready", message="ready"), host("z-bad", "failed", 3, "pull failed",
                                                        failed_layer="winarena_image"),
                 host("b-bad", "not_ready", 6, "waa_server: down", failed_layer="waa_server"),
                 summary="up: 1/3 hosts ready, 1 failed, 1 not_ready in 2.0s")
    lines = result.summary_lines()
    assert lines[0] == "up: 1/3 hosts ready, 1 failed, 1 not_ready in 2.0s"
    assert [line.split()[0] for line in lines[1:4]] == ["b-bad", "z-bad", "a-ready"]
    assert lines[4:] == [f"exit 13 (not_all_ready): {codes.describe(13).summary}", "run artifacts: /runs/x"]
    assert lines == render.summary_lines(result)


def test_a_ready_run_has_no_exit_line_and_a_failed_run_without_artifacts_none_either() -> None:
    assert run(host("a", message="ready"), summary="s").summary_lines() == [
        "s", render.host_line(host("a", message="ready"))]
    lines = run(artifact_dir=None, exit_code=64, summary="up: no host matched").summary_lines()
    assert lines == ["up: no host matched", f"exit 64 (usage): {codes.describe(64).summary}"]


def test_an_unknown_code_is_shown_as_unknown_with_its_number() -> None:
    lines = run(host("h", "failed", 99, "odd"), summary="s").summary_lines()
    assert lines[-2] == f"exit 99 (unknown): {codes.describe(9).summary}"
    assert lines[1].split()[:3] == ["h", "failed", "99"]
