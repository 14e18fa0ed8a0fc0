"""playbooks/provision.yml and teardown.yml with the real azure.azcollection modules against the
local Azure double (tests/azure_double): inputs validated before any Azure call, a pool created
in parallel with the WAA settings (Standard security type, 128 GB disk, tags, SSH-only NSG,
auto-shutdown), a size fallback when Azure has no capacity, a second run that writes nothing,
and a teardown that removes exactly the pool."""
from __future__ import annotations

import pytest

from tests.azure_double.fixture import azure_deps, azure_double, azure_double_server, azure_env, run_ansible  # noqa: F401

pytestmark = pytest.mark.azure

RG = "openadapt-waa"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRvdWJsZS10ZXN0LWtleS1ub3QtYS1yZWFsLW9uZQ waa-test"
CIDR = "203.0.113.7/32"
WAA_PORTS = ("8006", "5000", "3389", "7200")


def provision(env: dict[str, str], *extra: str, check: bool = False):
    # provision.yml runs on the implicit localhost: no inventory is given, as users run it
    env = {k: v for k, v in env.items() if k != "ANSIBLE_INVENTORY_UNPARSED_FAILED"}
    args = ["playbooks/provision.yml", "-e", f"waa_ssh_public_key='{KEY}'", "-e", "waa_provision_poll_seconds=1",
            *extra]
    return run_ansible("ansible-playbook", args, env, check=check)


def output(proc) -> str:
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("extra,needles,absent", [
    (["-e", "waa_pool=Bad_Pool", "-e", "waa_pool_size=51", "-e", "waa_vm_size=Standard_D8ps_v5",
      "-e", "waa_ssh_source_cidr=0.0.0.0/0"],
     ["waa_pool=Bad_Pool", "waa_pool_size=51", "Standard_D8ps_v5", "ARM (Ampere)", "0.0.0.0/0",
      "waa_ssh_allow_any=true"], []),
    (["-e", "waa_pool=a", "-e", "waa_pool_size=0", "-e", '{"waa_vm_size_fallbacks": ["Standard_D8as_v4", "D8s"]}',
      "-e", "waa_ssh_source_cidr=10.1.2.300/32", "-e", "waa_ssh_public_key_file=/nonexistent.pub",
      "-e", "waa_ssh_public_key=''"],
     ["waa_pool_size=0", "Standard_D8as_v4", "Dasv4", "'D8s'", "not Azure size names", "10.1.2.300/32",
      "no OpenSSH public key"], ["waa_pool="]),
    # the whole internet is accepted only when asked; the other problems are still reported
    (["-e", "waa_pool=9lives", "-e", "waa_ssh_source_cidr=*", "-e", "waa_ssh_allow_any=true",
      "-e", '{"waa_location": "East US"}'],
     ["waa_pool=9lives", "waa_location=East US"], ["opens SSH to the whole internet"]),
    (["-e", "waa_pool=a"], ["waa_ssh_source_cidr is not set"], []),
])
def test_invalid_inputs_are_reported_together_before_any_azure_call(azure_double, azure_env, extra, needles,
                                                                    absent):
    proc = provision(azure_env, *extra)
    text = output(proc)
    assert proc.returncode != 0, text[-3000:]
    assert "invalid input(s)" in text, text[-3000:]
    for needle in needles:
        assert needle in text, f"{needle!r} not in the failure:\n{text[-3000:]}"
    for needle in absent:
        assert needle not in text, f"{needle!r} should not be reported:\n{text[-3000:]}"
    assert azure_double.state.calls == [], "validation must fail before any Azure call"


def test_teardown_refuses_without_the_pool_name_repeated(azure_double, azure_env):
    azure_double.state.add_vm(RG, "waa-a-01", tags={"openadapt-role": "waa", "openadapt-pool": "a"})
    env = {k: v for k, v in azure_env.items() if k != "ANSIBLE_INVENTORY_UNPARSED_FAILED"}
    proc = run_ansible("ansible-playbook", ["playbooks/teardown.yml", "-e", "waa_pool=a"], env)
    assert proc.returncode != 0
    assert "waa_confirm_teardown=a" in output(proc)
    assert azure_double.state.calls == []


def _vm_puts(state, name: str):
    return [c for c in state.calls_matching("PUT", rf"/virtualMachines/{name}$")]


def test_provision_parallel_with_fallback_idempotent_then_teardown(azure_double, azure_env):
    state = azure_double.state
    # another pool in the same resource group: teardown of pool a must leave it alone
    state.add_vm(RG, "waa-b-01", tags={"openadapt-role": "waa", "openadapt-pool": "b"}, location="eastus")
    # no capacity for the default size when waa-a-02 asks for it: that VM falls back to the next size
    state.inject_fault(r"/virtualMachines/waa-a-02$", 409, times=1, method="PUT", code="SkuNotAvailable",
                       message="The requested VM size Standard_D8ds_v5 is currently not available in location "
                               "'eastus'. Please try another size or deploy to a different location.")
    # VM creation takes a few polls, so creations that overlap are visible in the operation log
    state.lro_polls_by_type["microsoft.compute/virtualmachines"] = 4
    state.poll_delay_ms = 250

    provision(azure_env, "-e", "waa_pool=a", "-e", "waa_pool_size=2", "-e", f"waa_ssh_source_cidr={CIDR}",
                      check=True)

    vms = {vm["name"]: vm for vm in state.vms(pool="a")}
    assert sorted(vms) == ["waa-a-01", "waa-a-02"]
    # the default size first; waa-a-02 was refused for capacity and got the first fallback
    expected_sizes = {"waa-a-01": ["Standard_D8ds_v5"], "waa-a-02": ["Standard_D8ds_v5", "Standard_D8s_v5"]}
    for name, vm in vms.items():
        props = vm["properties"]
        sizes = [c.body["properties"]["hardwareProfile"]["vmSize"] for c in _vm_puts(state, name)]
        assert sizes == expected_sizes[name], (name, sizes)
        assert props["hardwareProfile"]["vmSize"] == expected_sizes[name][-1]
        assert vm["tags"]["openadapt-role"] == "waa" and vm["tags"]["openadapt-pool"] == "a"
        assert vm["tags"]["openadapt-admin-user"] == "azureuser"
        assert props["storageProfile"]["osDisk"]["diskSizeGB"] == 128
        assert props["storageProfile"]["osDisk"]["managedDisk"]["storageAccountType"] == "Premium_LRS"
        # security type Standard: no TrustedLaunch, and a Gen1 image that TrustedLaunch cannot use
        assert (props.get("securityProfile") or {}).get("securityType") in (None, "Standard")
        assert props["storageProfile"]["imageReference"]["sku"] == "22_04-lts"
        linux = props["osProfile"]["linuxConfiguration"]
        assert linux["disablePasswordAuthentication"] is True
        assert linux["ssh"]["publicKeys"][0]["keyData"] == KEY
        nic = state.get(props["networkProfile"]["networkInterfaces"][0]["id"])
        assert nic["name"] == f"{name}-nic"
        assert nic["properties"]["networkSecurityGroup"]["id"].endswith("/networkSecurityGroups/waa-a-nsg")
        pip = state.get(nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"])
        assert pip["sku"]["name"] == "Standard" and pip["properties"]["publicIPAllocationMethod"] == "Static"
        schedule = state.get(f"/subscriptions/{state.subscription_id}/resourceGroups/{RG}/providers/"
                             f"Microsoft.DevTestLab/schedules/shutdown-computevm-{name}")
        assert schedule is not None, f"no auto-shutdown schedule for {name}"
        sp = schedule["properties"]
        assert sp["status"] == "Enabled" and sp["taskType"] == "ComputeVmShutdownTask"
        assert sp["dailyRecurrence"]["time"] == "1900" and sp["targetResourceId"].lower() == vm["id"].lower()

    # the VMs were requested together: waa-a-02's request came while waa-a-01 was still being created
    first_create = [op for op in state.operations_for(r"/virtualMachines/waa-a-01$") if op.action == "create"][0]
    second_request = _vm_puts(state, "waa-a-02")[0]
    assert second_request.at < first_create.done_at, "the VMs were created one after the other, not in parallel"

    nsg = state.get(f"/subscriptions/{state.subscription_id}/resourceGroups/{RG}/providers/"
                    "Microsoft.Network/networkSecurityGroups/waa-a-nsg")
    rules = nsg["properties"]["securityRules"]
    inbound_allow = [r["properties"] for r in rules
                     if r["properties"]["direction"] == "Inbound" and r["properties"]["access"] == "Allow"]
    assert len(inbound_allow) == 1, rules
    assert inbound_allow[0]["destinationPortRange"] == "22"
    assert inbound_allow[0]["sourceAddressPrefix"] == CIDR
    assert inbound_allow[0]["protocol"] == "Tcp"
    for rule in rules:
        ports = [rule["properties"].get("destinationPortRange")] + rule["properties"].get("destinationPortRanges", [])
        assert not set(ports) & set(WAA_PORTS), f"NSG rule opens a WAA port: {rule}"

    # second run: same inputs, nothing written (no PUT, PATCH, DELETE or action)
    state.reset_calls()
    provision(azure_env, "-e", "waa_pool=a", "-e", "waa_pool_size=2", "-e", f"waa_ssh_source_cidr={CIDR}",
              check=True)
    assert state.writes() == [], f"second provision run changed Azure: {state.writes()}"
    assert state.calls_matching("GET", r"/virtualMachines/waa-a-0[12]$"), "second run did not look at the VMs"

    # teardown: the pool's VMs, disks, NICs, public IPs, schedules and NSG go; pool b and the vnet stay
    state.reset_calls()
    before = state.snapshot()
    env = {k: v for k, v in azure_env.items() if k != "ANSIBLE_INVENTORY_UNPARSED_FAILED"}
    run_ansible("ansible-playbook", ["playbooks/teardown.yml", "-e", "waa_pool=a", "-e", "waa_confirm_teardown=a",
                                     "-e", "waa_teardown_poll_seconds=1"], env, check=True)
    left = [r["id"] for r in state.find_all() if "waa-a-" in r["id"].lower() or r["name"].startswith("waa-a")]
    assert left == [], f"teardown left pool a resources: {left}"
    assert [v["name"] for v in state.vms()] == ["waa-b-01"]
    assert state.names("Microsoft.Network/virtualNetworks", RG) == ["waa-vnet"]
    deleted = {c.path.rsplit("/providers/", 1)[1].split("/")[1] for c in state.calls_matching("DELETE")}
    assert {"virtualMachines", "disks", "networkInterfaces", "publicIPAddresses", "schedules",
            "networkSecurityGroups"} <= deleted, deleted
    assert len([k for k in before if "waa-a" in k]) >= 10, "the pool was not there before teardown"
