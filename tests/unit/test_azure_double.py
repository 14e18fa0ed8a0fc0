"""The Azure double itself (tests/azure_double), without Ansible: the proxy answers only
management.azure.com with a certificate clients verify, the token endpoint checks its header,
and ARM semantics the integration tests rely on hold (paging, long-running operations, faults,
/batch, in-use resources)."""
from __future__ import annotations

import json
import socket
import ssl

import pytest

from tests.azure_double import AzureDouble

RG = "rg-test"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    double = AzureDouble(tmp_path_factory.mktemp("double")).start()
    yield double
    double.stop()


@pytest.fixture
def double(server):
    server.reset()
    return server


def sub(double) -> str:
    return f"/subscriptions/{double.state.subscription_id}"


def test_listens_on_loopback_only_and_refuses_other_hosts(double):
    assert double.proxy_url.startswith("http://127.0.0.1:")
    with socket.create_connection(("127.0.0.1", double.port), timeout=5) as s:
        s.sendall(b"CONNECT login.microsoftonline.com:443 HTTP/1.1\r\nHost: login.microsoftonline.com:443\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.1 403")
    with socket.create_connection(("127.0.0.1", double.port), timeout=5) as s:
        s.sendall(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.1 403")
    assert double.state.refused == ["CONNECT login.microsoftonline.com:443", "GET http://example.com/"]


def test_tls_for_arm_is_verified_against_the_test_ca_only(double):
    status, _, body = double.request("GET", sub(double))
    assert status == 200 and body["subscriptionId"] == double.state.subscription_id
    # the system trust store does not know the test CA: a client without it fails the handshake
    with socket.create_connection(("127.0.0.1", double.port), timeout=5) as s:
        s.sendall(b"CONNECT management.azure.com:443 HTTP/1.1\r\nHost: management.azure.com:443\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.1 200")
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(s, server_hostname="management.azure.com")


def test_token_endpoint_needs_the_identity_header(double):
    import urllib.request

    url = f"{double.token_url}?api-version=2019-08-01&resource=https://management.azure.com"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=5)
    assert err.value.code == 401
    req = urllib.request.Request(url, headers={"X-IDENTITY-HEADER": double.identity_header})
    with urllib.request.urlopen(req, timeout=5) as resp:
        token = json.load(resp)
    assert token["token_type"] == "Bearer" and int(token["expires_on"]) > 0
    assert double.state.token_requests == 1


def test_arm_requires_a_bearer_token_and_an_api_version(double):
    assert double.request("GET", sub(double), token=None)[0] == 401
    status, _, body = double.request("GET", sub(double), api_version=None)
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"


def test_vm_list_pages_with_next_link(double):
    double.state.page_size = 2
    for i in range(5):
        double.state.add_vm(RG, f"vm-{i}")
    names, path, pages = [], f"{sub(double)}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines", 0
    while path:
        status, _, body = double.request("GET", path, api_version=None if "api-version" in path else "2024-07-01")
        assert status == 200
        names += [vm["name"] for vm in body["value"]]
        path = body.get("nextLink", "").replace("https://management.azure.com", "")
        pages += 1
    assert names == [f"vm-{i}" for i in range(5)] and pages == 3


def test_power_actions_are_long_running_operations(double):
    double.state.add_vm(RG, "vm-1", power="deallocated")
    vm = f"{sub(double)}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/vm-1"
    status, headers, body = double.request("POST", f"{vm}/start")
    assert status == 202 and body is None
    assert "azure-asyncoperation" in headers and "location" in headers and "retry-after-ms" in headers
    op = headers["azure-asyncoperation"].replace("https://management.azure.com", "")
    assert double.request("GET", op, api_version=None)[2]["status"] == "InProgress"
    assert double.request("GET", op, api_version=None)[2]["status"] == "Succeeded"
    result = headers["location"].replace("https://management.azure.com", "")
    assert double.request("GET", result, api_version=None)[0] == 204
    view = double.request("GET", f"{vm}/instanceView")[2]
    assert "PowerState/running" in [s["code"] for s in view["statuses"]]
    assert double.state.power_of(RG, "vm-1") == "running"


def test_create_update_and_in_use_rules(double):
    double.state.add_resource_group(RG)
    nsg = f"{sub(double)}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/nsg-1"
    body = {"location": "eastus", "properties": {"securityRules": [
        {"name": "ssh", "properties": {"priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                                       "sourceAddressPrefix": "203.0.113.7/32", "destinationPortRange": "22",
                                       "sourcePortRange": "*", "destinationAddressPrefix": "*"}}]}}
    assert double.request("PUT", nsg, body, api_version="2024-03-01")[0] == 201
    assert double.request("PUT", nsg, body, api_version="2024-03-01")[0] == 200
    nic = f"{sub(double)}/resourceGroups/{RG}/providers/Microsoft.Network/networkInterfaces/nic-1"
    status, _, created = double.request("PUT", nic, {"location": "eastus", "properties": {
        "networkSecurityGroup": {"id": nsg}, "ipConfigurations": [{"name": "ipconfig1", "properties": {}}]}})
    assert status == 201
    assert created["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"].startswith("127.")
    status, _, err = double.request("DELETE", nsg)
    assert status == 400 and err["error"]["code"] == "InUseNetworkSecurityGroupCannotBeDeleted"
    assert double.request("DELETE", nic)[0] == 202
    assert double.request("DELETE", nsg)[0] == 202
    assert double.request("DELETE", nsg)[0] == 204  # already gone
    assert double.request("GET", nsg)[0] == 404


def test_faults_are_injected_n_times_and_logged(double):
    double.state.add_vm(RG, "vm-1")
    path = f"{sub(double)}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/vm-1"
    double.state.inject_fault(r"/virtualMachines/vm-1$", 429, times=2, retry_after=3)
    first = double.request("GET", path)
    assert first[0] == 429 and first[1]["retry-after"] == "3" and first[2]["error"]["code"] == "TooManyRequests"
    assert double.request("GET", path)[0] == 429
    assert double.request("GET", path)[0] == 200
    assert [c.status for c in double.state.calls_matching("GET", r"/vm-1$")] == [429, 429, 200]
    assert all(c.api_version == "2024-07-01" for c in double.state.calls)


def test_batch_answers_each_request_and_applies_batch_only_faults(double):
    double.state.add_vm(RG, "vm-1")
    vm = f"https://management.azure.com{sub(double)}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/vm-1"
    double.state.inject_fault(r"/instanceView$", 500, times=-1, where="batch")
    status, _, body = double.request("POST", "/batch", {"requests": [
        {"httpMethod": "GET", "url": f"{vm}?api-version=2024-07-01", "name": "a"},
        {"httpMethod": "GET", "url": f"{vm}/instanceView?api-version=2024-07-01", "name": "b"},
    ]}, api_version="2015-11-01")
    assert status == 200
    by_name = {r["name"]: r for r in body["responses"]}
    assert by_name["a"]["httpStatusCode"] == 200 and by_name["a"]["content"]["name"] == "vm-1"
    assert by_name["b"]["httpStatusCode"] == 500
    # the same path outside /batch is not affected
    assert double.request("GET", f"{sub(double)}/resourceGroups/{RG}/providers/Microsoft.Compute/"
                                 "virtualMachines/vm-1/instanceView")[0] == 200


def test_test_address_tag_maps_a_vm_to_a_loopback_host(double):
    vm = double.state.add_vm(RG, "vm-1", address="127.0.1.5:2222")
    assert vm["tags"]["openadapt-ssh-port"] == "2222"
    nic = double.state.get(vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"])
    ipc = nic["properties"]["ipConfigurations"][0]["properties"]
    pip = double.state.get(ipc["publicIPAddress"]["id"])
    assert ipc["privateIPAddress"] == pip["properties"]["ipAddress"] == "127.0.1.5"
    with pytest.raises(Exception, match="loopback"):
        double.state.add_vm(RG, "vm-2", address="10.0.0.4")


def test_unknown_or_unavailable_sizes_are_refused(double):
    double.state.add_resource_group(RG)
    double.state.unavailable_sizes = {"Standard_D8ds_v5"}
    double.state.add_vm(RG, "ok", size="Standard_D8s_v5")
    with pytest.raises(Exception, match="SkuNotAvailable"):
        double.state.add_vm(RG, "busy", size="Standard_D8ds_v5")
    with pytest.raises(Exception, match="not valid"):
        double.state.add_vm(RG, "bogus", size="Standard_Z99")
