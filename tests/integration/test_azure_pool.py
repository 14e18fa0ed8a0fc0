"""The Azure pool scenario end to end, through `waa-run` and the shipped inventory/azure_rm.yml, with
the real azure.azcollection code against the local Azure double: a pool whose VMs are partly
deallocated comes up ready (exactly its deallocated VMs are started), `status` shows power state,
size and price, and `down --deallocate` deallocates the pool again. Each "VM" is a fleet test host
(tests/support/fleet.py) that the double powers off and on with the VM, so a deallocated VM really
is unreachable until `up` starts it. A failing Azure call ends with exit code 14 and Azure's words."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.azure_double.fixture import (REPO_ROOT, azure_deps, azure_double, azure_double_server,  # noqa: F401
                                        azure_env)
from tests.support.emulator import docker
from tests.support.fleet import start_fleet

pytestmark = [pytest.mark.azure, pytest.mark.docker, pytest.mark.slow]
WAA_RUN = str(Path(sys.executable).parent / "waa-run")
RG = "openadapt-waa"  # the resource group the shipped inventory names
# VM name in Azure -> fleet host name
VMS = {"waa-a-01": "pool-a-1", "waa-a-02": "pool-a-2", "waa-b-01": "pool-b-1"}


def waa_run(env: dict[str, str], *args: str, timeout: float = 600) -> tuple[int, dict, str]:
    proc = subprocess.run([WAA_RUN, *args, "--json"], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert proc.stdout.strip(), f"waa-run {args[0]} printed no report (rc {proc.returncode}): {proc.stderr[-3000:]}"
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def running(container: str) -> bool:
    return json.loads(docker("inspect", container).stdout)[0]["State"]["Running"]


def azure_inventory(directory: Path, group_vars: dict) -> Path:
    """The shipped inventory file as a user would use it: in a directory with their connection
    settings in group_vars/all.yml."""
    directory.mkdir()
    shutil.copy(REPO_ROOT / "inventory" / "azure_rm.yml", directory / "azure_rm.yml")
    (directory / "group_vars").mkdir()
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars, sort_keys=False))
    return directory


@pytest.fixture(scope="module")
def pool_fleet(docker_engine, tmp_path_factory):
    fleet = start_fleet({"waa_pool_a": 2, "waa_pool_b": 1}, directory=tmp_path_factory.mktemp("azure-fleet"))
    yield fleet
    fleet.remove()


def test_deallocated_pool_comes_up_ready_then_is_deallocated(azure_double, azure_env, pool_fleet, tmp_path):
    state = azure_double.state
    hosts = {vm: pool_fleet.host(name) for vm, name in VMS.items()}
    container_of = {vm: host.container for vm, host in hosts.items()}
    powered: list[tuple[str, str]] = []

    def power(vm: str, _before: str, after: str) -> None:
        """A deallocated VM is a machine that is off: stop its test host; a started one boots again."""
        powered.append((vm, after))
        if vm in container_of:
            docker("start" if after == "running" else "stop", container_of[vm], timeout=120)

    for vm, host in hosts.items():
        pool = vm.split("-")[1]
        power_state = "running" if vm == "waa-a-02" else "deallocated"
        state.add_vm(RG, vm, tags={"openadapt-role": "waa", "openadapt-pool": pool}, power=power_state,
                     address=host.address)
        if power_state == "deallocated":
            docker("stop", host.container, timeout=120)
    state.on_power = power
    fleet_vars = yaml.safe_load(pool_fleet.inventory.read_text())["waa"]["vars"]
    inventory = str(azure_inventory(tmp_path / "inventory", {**fleet_vars, "waa_azure_ssh_timeout": 180}))
    common = ["-i", inventory, "--state-dir", str(tmp_path / "state")]

    # up on pool a: waa-a-01 is started (and only it), both hosts end ready
    code, report, stderr = waa_run(azure_env, "up", *common, "--limit", "waa_pool_a", timeout=900)
    assert code == 0, (report["summary"], {h: (r["status"], r["message"]) for h, r in report["hosts"].items()})
    assert set(report["hosts"]) == {"waa-a-01", "waa-a-02"}
    assert {h: r["status"] for h, r in report["hosts"].items()} == {"waa-a-01": "ready", "waa-a-02": "ready"}
    starts = [c.path.split("/")[-2] for c in state.calls_matching("POST", r"/virtualMachines/[^/]+/start$")]
    assert starts == ["waa-a-01"]
    assert [c for c in state.writes() if not c.path.endswith("/start")] == []
    assert powered == [("waa-a-01", "running")]
    a01 = report["hosts"]["waa-a-01"]["azure"]
    assert (a01["action"], a01["powerstate"], a01["size"], a01["price_per_hour"]) == (
        "started", "running", "Standard_D8ds_v5", 0.452)
    assert report["hosts"]["waa-a-02"]["azure"]["action"] == "none"
    assert state.power_of(RG, "waa-b-01") == "deallocated" and not running(container_of["waa-b-01"])
    print(f"\nazure pool: up (1 of 2 VMs deallocated, both set up from scratch) {report['duration_s']:.1f}s; "
          f"waa-a-01 start + SSH {report['hosts']['waa-a-01']['timings'].get('azure', 0):.1f}s")

    # status of the whole inventory: pool a ready, waa-b-01 deallocated (reported without connecting)
    state.reset_calls()
    code, report, _ = waa_run(azure_env, "status", *common)
    assert code == 15, report["summary"]  # vm_stopped: the only failure is the deallocated VM
    assert {h: r["status"] for h, r in report["hosts"].items()} == {
        "waa-a-01": "ready", "waa-a-02": "ready", "waa-b-01": "vm_stopped"}
    b01 = report["hosts"]["waa-b-01"]
    assert b01["azure"]["powerstate"] == "deallocated" and "waa-b-01 is deallocated" in b01["message"]
    assert "waa-run up" in b01["hint"]
    assert state.writes() == []
    # the table a person reads
    proc = subprocess.run([WAA_RUN, "status", *common], env=azure_env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    table = proc.stdout.split("running Azure VMs cost")[0]
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.startswith("waa-")}
    assert rows["waa-a-01"][1:4] == ["running", "Standard_D8ds_v5", "0.452"], proc.stdout
    assert rows["waa-b-01"][1:4] == ["deallocated", "Standard_D8ds_v5", "0.452"], proc.stdout
    assert "running Azure VMs cost $0.904/h" in proc.stdout
    print(f"azure pool: status of 3 hosts {report['duration_s']:.1f}s")

    # down --deallocate on pool a: containers stopped, then both VMs deallocated
    state.reset_calls()
    powered.clear()
    code, report, _ = waa_run(azure_env, "down", *common, "--limit", "waa_pool_a", "--deallocate")
    assert code == 0, report["summary"]
    assert {h: r["status"] for h, r in report["hosts"].items()} == {"waa-a-01": "stopped", "waa-a-02": "stopped"}
    deallocated = sorted(c.path.split("/")[-2] for c in state.calls_matching("POST", r"/deallocate$"))
    assert deallocated == ["waa-a-01", "waa-a-02"]
    assert {state.power_of(RG, vm) for vm in ("waa-a-01", "waa-a-02")} == {"deallocated"}
    assert sorted(powered) == [("waa-a-01", "deallocated"), ("waa-a-02", "deallocated")]
    assert {h: r["azure"]["action"] for h, r in report["hosts"].items()} == {
        "waa-a-01": "deallocated", "waa-a-02": "deallocated"}
    print(f"azure pool: down --deallocate of 2 hosts {report['duration_s']:.1f}s")

    # down --deallocate again: nothing left to do, no Azure write
    state.reset_calls()
    code, report, _ = waa_run(azure_env, "down", *common, "--limit", "waa_pool_a", "--deallocate")
    assert code == 0 and state.writes() == [], report["summary"]


def test_a_failing_azure_start_is_exit_14_with_azure_words(azure_double, azure_env, tmp_path):
    state = azure_double.state
    state.add_vm(RG, "waa-c-01", tags={"openadapt-role": "waa", "openadapt-pool": "c"}, power="deallocated")
    state.inject_fault(r"/virtualMachines/waa-c-01/start$", 500, times=-1, method="POST")
    inventory = str(azure_inventory(tmp_path / "inventory", {}))
    code, report, _ = waa_run(azure_env, "up", "-i", inventory, "--limit", "waa_pool_c", "--state-dir",
                              str(tmp_path / "state"), timeout=300)
    host = report["hosts"]["waa-c-01"]
    assert (code, host["status"], host["exit_code"], host["failed_layer"]) == (14, "failed", 14, "azure"), host
    assert "waa-c-01" in host["message"] and "InternalServerError" in json.dumps(report)
    assert "credentials" in host["hint"]
    assert state.power_of(RG, "waa-c-01") == "deallocated"


def test_deallocate_refuses_a_host_that_is_not_an_azure_vm(tmp_path):
    """--deallocate against a plain inventory: a clear refusal before the container is touched."""
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"waa": {"hosts": {"plain-host": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    proc = subprocess.run([WAA_RUN, "down", "-i", str(tmp_path / "hosts.yml"), "--deallocate", "--json",
                           "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    report = json.loads(proc.stdout)
    host = report["hosts"]["plain-host"]
    assert (proc.returncode, host["status"], host["exit_code"]) == (64, "usage", 64)
    assert "plain-host is not an Azure VM" in host["message"] and "nothing was changed" in host["message"]
    # the refusal came before the container role: it never ran
    steps = [(step["role"], step["task"], step["status"]) for step in host["steps"]]
    assert (None, "Only Azure VMs can be deallocated", "failed") in steps
    assert not [step for step in steps if step[0] == "winarena_container"] and host["changed"] == 0


def test_waa_run_provision_creates_a_pool_once_and_refuses_bad_input(azure_double, azure_env, tmp_path):
    state = azure_double.state
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0ZXN0a2V5Zm9ydGhlYXp1cmVkb3VibGVvbmx5 test\n")
    args = ["provision", "--pool", "p", "--count", "2", "--ssh-source-cidr", "203.0.113.7/32",
            "-e", f"waa_ssh_public_key_file={key}", "--state-dir", str(tmp_path / "state")]
    code, report, _ = waa_run(azure_env, *args)
    assert code == 0, report["summary"]
    assert report["hosts"]["localhost"]["status"] == "done"
    assert sorted(vm["name"] for vm in state.vms(pool="p")) == ["waa-p-01", "waa-p-02"]
    state.reset_calls()
    code, report, _ = waa_run(azure_env, *args)
    assert code == 0 and [c for c in state.writes()] == [], report["summary"]

    state.reset_calls()
    code, report, stderr = waa_run(azure_env, "provision", "--pool", "Pool-1", "--ssh-source-cidr", "203.0.113.7/32",
                                   "--state-dir", str(tmp_path / "state"))
    assert code == 64 and "pool 'Pool-1' is not a pool name" in stderr and state.calls == []
    # the playbook's own checks (with Azure's rules) are usage errors too, before any Azure write
    code, report, _ = waa_run(azure_env, "provision", "--pool", "q", "--ssh-source-cidr", "0.0.0.0/0",
                              "-e", f"waa_ssh_public_key_file={key}", "--state-dir", str(tmp_path / "state"))
    host = report["hosts"]["localhost"]
    assert (code, host["exit_code"]) == (64, 64) and "0.0.0.0/0" in host["message"], host
    assert state.writes() == []
