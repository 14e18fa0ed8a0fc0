"""inventory/azure_rm.yml and playbooks/tasks/azure_power.yml with the real azure.azcollection code
(ansible-inventory / ansible-playbook processes) against the local Azure double: groups from tags,
filters by tag and resource group, paging, deallocated VMs kept with their power state, what
throttling and server errors do, and a power task that starts exactly the deallocated VMs of a
pool, waits for SSH with a deadline and deallocates on request."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from tests.azure_double.fixture import (REPO_ROOT, azure_deps, azure_double, azure_double_server,  # noqa: F401
                                        azure_env, run_ansible)

pytestmark = pytest.mark.azure

RG = "openadapt-waa"  # the resource group the shipped inventory file names
SHIPPED = REPO_ROOT / "inventory" / "azure_rm.yml"
POWER_TASKS = REPO_ROOT / "playbooks" / "tasks" / "azure_power.yml"


def waa(pool: str, **extra: str) -> dict[str, str]:
    return {"openadapt-role": "waa", "openadapt-pool": pool, **extra}


def seed_fleet(state) -> None:
    """7 VMs in the shipped file's resource group (5 WAA hosts in 2 pools, 2 others), 1 elsewhere."""
    state.page_size = 2  # 7 VMs: 4 pages
    state.add_vm(RG, "waa-a-01", tags=waa("a"), power="running")
    state.add_vm(RG, "waa-a-02", tags=waa("a"), power="deallocated")
    state.add_vm(RG, "waa-a-03", tags=waa("a", **{"openadapt-admin-user": "bench"}), power="stopped")
    state.add_vm(RG, "waa-b-01", tags=waa("b"), power="running", address="127.0.1.5:2222")
    state.add_vm(RG, "waa-b-02", tags=waa("b"), power="deallocated")
    state.add_vm(RG, "build-agent", tags={"team": "ci"})
    state.add_vm(RG, "not-waa", tags={"openadapt-role": "other", "openadapt-pool": "a"})
    state.add_vm("other-rg", "waa-c-01", tags=waa("c"), location="westeurope")


def graph(text: str) -> dict[str, set[str]]:
    """`ansible-inventory --graph` output -> {group: {hosts}} (direct members)."""
    groups: dict[str, set[str]] = {}
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        item = line.lstrip(" |-")
        if not item:
            continue
        depth = len(line) - len(item)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if item.startswith("@"):
            name = item[1:].rstrip(":")
            groups.setdefault(name, set())
            stack.append((depth, name))
        elif stack:
            groups[stack[-1][1]].add(item)
    return groups


def unwrap(value):
    """ansible-inventory --list marks values as {"__ansible_unsafe": v}; the plain value."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def inventory(env, *args: str, source: Path = SHIPPED):
    return run_ansible("ansible-inventory", ["-i", str(source), *args], env)


def test_graph_has_waa_and_pool_groups_from_tags_across_pages(azure_double, azure_env):
    state = azure_double.state
    seed_fleet(state)
    proc = inventory(azure_env, "--graph")
    assert proc.returncode == 0, proc.stderr[-3000:]
    groups = graph(proc.stdout)
    assert groups["waa"] == {"waa-a-01", "waa-a-02", "waa-a-03", "waa-b-01", "waa-b-02"}
    assert groups["waa_pool_a"] == {"waa-a-01", "waa-a-02", "waa-a-03"}
    assert groups["waa_pool_b"] == {"waa-b-01", "waa-b-02"}
    # deallocated and stopped VMs are kept, grouped by power state
    assert groups["waa_azure_power_deallocated"] == {"waa-a-02", "waa-b-02"}
    assert groups["waa_azure_power_stopped"] == {"waa-a-03"}
    # VMs without openadapt-role=waa, and resource groups not named in the file, are not hosts
    everything = set().union(*groups.values())
    assert not everything & {"build-agent", "not-waa", "waa-c-01"}, everything
    assert "waa_pool_c" not in groups
    # one listing of the resource group, in 4 pages (nextLink followed), nothing subscription-wide
    lists = state.calls_matching("GET", r"/providers/Microsoft\.Compute/virtualMachines$")
    assert [c.query.get("$skiptoken") for c in lists] == [None, "2", "4", "6"], lists
    assert all(f"/resourceGroups/{RG}/" in c.path for c in lists), lists
    assert {c.api_version for c in lists} == {"2024-07-01"}
    assert state.token_requests >= 1, "the managed identity token endpoint was not used"


def test_hostvars_give_connection_and_power_state(azure_double, azure_env):
    state = azure_double.state
    seed_fleet(state)
    proc = inventory(azure_env, "--list")
    assert proc.returncode == 0, proc.stderr[-3000:]
    hostvars = unwrap(json.loads(proc.stdout)["_meta"]["hostvars"])

    def public_ip(name: str) -> str:
        return state.get(state.resource_id(RG, "Microsoft.Network/publicIPAddresses", f"{name}-ip"))["properties"]["ipAddress"]

    a2 = hostvars["waa-a-02"]
    assert a2["waa_azure_powerstate"] == a2["powerstate"] == "deallocated"
    assert a2["waa_azure_vm_name"] == "waa-a-02" and a2["waa_azure_resource_group"] == RG
    assert a2["waa_pool"] == "a" and a2["waa_azure_location"] == "eastus"
    assert a2["waa_azure_vm_size"] == "Standard_D8ds_v5"
    assert a2["ansible_host"] == public_ip("waa-a-02") and a2["ansible_host"].startswith("127.")
    assert a2["ansible_user"] == "azureuser" and a2["ansible_port"] == 22
    assert hostvars["waa-a-03"]["waa_azure_powerstate"] == "stopped"
    assert hostvars["waa-a-03"]["ansible_user"] == "bench"
    # a VM mapped to a local test host by its waa-test-address tag
    b1 = hostvars["waa-b-01"]
    assert (b1["ansible_host"], b1["ansible_port"], b1["waa_azure_powerstate"]) == ("127.0.1.5", 2222, "running")


def test_resource_groups_from_the_file_and_private_addresses(azure_double, azure_env, tmp_path):
    state = azure_double.state
    seed_fleet(state)
    shipped = yaml.safe_load(SHIPPED.read_text())
    copy = dict(shipped, include_vm_resource_groups=["other-rg", "no-such-rg"])
    source = tmp_path / "test.azure_rm.yml"
    source.write_text(yaml.safe_dump(copy))
    env = dict(azure_env, WAA_AZURE_ADDRESS="private")
    proc = inventory(env, "--list", source=source)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = unwrap(json.loads(proc.stdout))
    assert set(data["_meta"]["hostvars"]) == {"waa-c-01"}
    assert data["waa_pool_c"]["hosts"] == ["waa-c-01"]
    c1 = data["_meta"]["hostvars"]["waa-c-01"]
    assert c1["ansible_host"] == c1["private_ipv4_addresses"][0] != c1["public_ipv4_address"][0]
    # a resource group that does not exist is skipped without an error (docs/azure.md warns)
    missing = state.calls_matching("GET", r"/resourceGroups/no-such-rg/")
    assert [c.status for c in missing] == [404]


def test_throttled_requests_are_retried(azure_double, azure_env):
    state = azure_double.state
    state.add_vm(RG, "waa-a-01", tags=waa("a"), power="deallocated")
    state.add_vm(RG, "waa-a-02", tags=waa("a"))
    # the plugin's own batched requests: it retries a 429/5xx sub-request after a fixed backoff
    state.inject_fault(rf"/resourceGroups/{RG}/providers/Microsoft\.Compute/virtualMachines$", 429, times=1,
                       retry_after=1, where="batch")
    # the SDK's direct instanceView call for each host: it honours Retry-After
    state.inject_fault(r"/virtualMachines/waa-a-01/instanceView$", 429, times=1, retry_after=1, where="direct")
    started = time.monotonic()
    proc = inventory(azure_env, "--graph")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert graph(proc.stdout)["waa_pool_a"] == {"waa-a-01", "waa-a-02"}
    listing = state.calls_matching("GET", r"/virtualMachines$")
    assert [c.status for c in listing] == [429, 200]
    view = [c for c in state.calls_matching("GET", r"/virtualMachines/waa-a-01/instanceView$") if not c.via_batch]
    assert [c.status for c in view] == [429, 200]
    assert view[1].at - view[0].at >= 1.0, "the SDK did not wait for Retry-After"
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("status", [500, 429])
def test_a_failing_batch_endpoint_fails_the_inventory(azure_double, azure_env, status):
    """The plugin sends its reads through ARM's /batch endpoint and does not retry that call:
    a 5xx or 429 there fails the source with the plugin's own words (docs/azure.md explains them)."""
    state = azure_double.state
    state.add_vm(RG, "waa-a-01", tags=waa("a"))
    state.inject_fault(r"^/batch$", status, times=-1, retry_after=1 if status == 429 else None)
    proc = inventory(azure_env, "--graph")
    assert proc.returncode != 0
    assert "Unable to parse" in proc.stderr and str(SHIPPED) in proc.stderr, proc.stderr[-2000:]
    assert "didn't find expected key responses/value in batch response" in proc.stderr
    assert [c.status for c in state.calls_matching("POST", r"^/batch$")] == [status]


def power_playbook(tmp_path: Path, hosts: str, play_vars: dict | None = None,
                   host_vars: dict[str, dict] | None = None) -> Path:
    play = [{
        "name": "azure_power.yml as up.yml/down.yml use it",
        "hosts": hosts,
        "gather_facts": False,
        "vars": play_vars or {},
        "tasks": [
            {"ansible.builtin.include_tasks": str(POWER_TASKS)},
            {"ansible.builtin.debug": {"msg": "RESULT:{{ inventory_hostname }}:{{ r.action }}:{{ r.powerstate_before }}"
                                              ":{{ r.powerstate_after }}"},
             "vars": {"r": "{{ waa_azure_power_result }}"}},
        ],
    }]
    path = tmp_path / "power.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    for host, variables in (host_vars or {}).items():  # host_vars/ next to the playbook
        (tmp_path / "host_vars").mkdir(exist_ok=True)
        (tmp_path / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(variables))
    return path


def results(stdout: str) -> dict[str, dict]:
    """{host: {action, powerstate_before, powerstate_after}} from the test playbook's debug lines."""
    return {m.group(1): {"action": m.group(2), "powerstate_before": m.group(3), "powerstate_after": m.group(4)}
            for m in re.finditer(r"RESULT:([\w.-]+):(\w+):(\w+):(\w+)", stdout)}


def test_power_starts_exactly_the_deallocated_vms_of_a_pool_then_deallocates(azure_double, azure_env, tmp_path):
    state = azure_double.state
    state.add_vm(RG, "waa-a-01", tags=waa("a"), power="deallocated")
    state.add_vm(RG, "waa-a-02", tags=waa("a"), power="stopped")
    state.add_vm(RG, "waa-a-03", tags=waa("a"), power="running")
    state.add_vm(RG, "waa-b-01", tags=waa("b"), power="deallocated")
    # Azure throttles the first start: the module's SDK waits Retry-After and starts it anyway
    state.inject_fault(r"/virtualMachines/waa-a-01/start$", 429, times=1, retry_after=1, method="POST")
    playbook = power_playbook(tmp_path, "waa_pool_a", {"waa_azure_wait_for_ssh": False})

    up = run_ansible("ansible-playbook", ["-i", str(SHIPPED), str(playbook)], azure_env, check=True)
    starts = state.calls_matching("POST", r"/virtualMachines/[^/]+/start$")
    assert [(c.path.split("/")[-2], c.status) for c in starts] in (
        [("waa-a-01", 429), ("waa-a-02", 202), ("waa-a-01", 202)],
        [("waa-a-02", 202), ("waa-a-01", 429), ("waa-a-01", 202)],
        [("waa-a-01", 429), ("waa-a-01", 202), ("waa-a-02", 202)],
    ), starts
    assert [c for c in state.writes() if "/start" not in c.path] == []
    assert {n: state.power_of(RG, n) for n in ("waa-a-01", "waa-a-02", "waa-a-03", "waa-b-01")} == {
        "waa-a-01": "running", "waa-a-02": "running", "waa-a-03": "running", "waa-b-01": "deallocated"}
    got = results(up.stdout)
    assert {h: r["action"] for h, r in got.items()} == {"waa-a-01": "started", "waa-a-02": "started",
                                                        "waa-a-03": "none"}, up.stdout[-3000:]
    assert got["waa-a-01"]["powerstate_before"] == "deallocated" and got["waa-a-01"]["powerstate_after"] == "running"

    state.reset_calls()
    run_ansible("ansible-playbook", ["-i", str(SHIPPED), str(playbook), "-e", "waa_azure_power=deallocated"],
                azure_env, check=True)
    deallocs = sorted(c.path.split("/")[-2] for c in state.calls_matching("POST", r"/deallocate$"))
    assert deallocs == ["waa-a-01", "waa-a-02", "waa-a-03"]
    assert len(state.writes()) == 3
    assert {state.power_of(RG, n) for n in ("waa-a-01", "waa-a-02", "waa-a-03")} == {"deallocated"}


def test_power_waits_for_ssh_with_a_deadline_and_reports_azure_errors(azure_double, azure_env, tmp_path):
    state = azure_double.state
    # reached by a local connection once started: the wait succeeds
    state.add_vm(RG, "waa-d-01", tags=waa("d"), power="deallocated", address="127.0.0.1")
    # running, but nothing listens on its SSH port: the wait times out, the VM is deallocated
    state.add_vm(RG, "waa-d-02", tags=waa("d"), power="running", address="127.0.0.1:1")
    # Azure answers 500 to every start: the host fails with the module's message
    state.add_vm(RG, "waa-d-03", tags=waa("d"), power="deallocated")
    state.inject_fault(r"/virtualMachines/waa-d-03/start$", 500, times=-1, method="POST")
    playbook = power_playbook(tmp_path, "waa_pool_d", {
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=1",
        "waa_azure_ssh_timeout": 4,
        "waa_azure_deallocate_on_ssh_timeout": True,
    }, host_vars={"waa-d-01": {"ansible_connection": "local"}})
    proc = run_ansible("ansible-playbook", ["-i", str(SHIPPED), str(playbook)], azure_env)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text[-3000:]
    recap = dict(re.findall(r"^(waa-d-0\d)\s+:\s+ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=(\d+)", proc.stdout, re.M))
    assert recap == {"waa-d-01": "0", "waa-d-02": "1", "waa-d-03": "1"}, proc.stdout[-2000:]
    assert results(proc.stdout)["waa-d-01"]["action"] == "started"
    assert state.power_of(RG, "waa-d-01") == "running"
    assert "SSH to azureuser@127.0.0.1:1 did not answer within 4 s (the VM was deallocated)" in " ".join(text.split())
    assert state.power_of(RG, "waa-d-02") == "deallocated"
    assert "Error powering on virtual machine waa-d-03" in text and "InternalServerError" in text
    assert state.power_of(RG, "waa-d-03") == "deallocated"
    # the SDK retried the 500 a bounded number of times, then gave up
    assert 2 <= len(state.calls_matching("POST", r"/waa-d-03/start$")) <= 4
