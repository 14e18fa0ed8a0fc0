"""In-memory Azure Resource Manager state for the double: resources, power states, long-running
operations, the call log and injected faults.

Everything is keyed by the lower-cased resource ID (ARM paths are case-insensitive) and returned
with the casing it was created with. Every address the double hands out is a loopback address:
a "VM" can never send a client anywhere but 127.0.0.0/8.
"""
from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

DEFAULT_SUBSCRIPTION = "00000000-0000-4000-8000-0000000a2e00"

# Sizes the double offers in every location (name, cores, memory MB). ARM (D*ps) sizes are here
# on purpose: provision.yml must refuse them before it calls Azure.
DEFAULT_VM_SIZES: tuple[tuple[str, int, int], ...] = (
    ("Standard_D4s_v5", 4, 16384),
    ("Standard_D8s_v5", 8, 32768),
    ("Standard_D8ds_v5", 8, 32768),
    ("Standard_D8_v3", 8, 32768),
    ("Standard_D16ds_v5", 16, 65536),
    ("Standard_D8ps_v5", 8, 32768),
    ("Standard_B2s", 2, 4096),
)

# The tag a test puts on a VM to point it at a local test host ("127.0.1.5" or "127.0.1.5:2222").
TEST_ADDRESS_TAG = "waa-test-address"
# The tag the shipped inventory reads for a non-standard SSH port (inventory/azure_rm.yml).
SSH_PORT_TAG = "openadapt-ssh-port"

CANONICAL_TYPES = {
    "microsoft.compute/virtualmachines": "Microsoft.Compute/virtualMachines",
    "microsoft.compute/disks": "Microsoft.Compute/disks",
    "microsoft.network/networkinterfaces": "Microsoft.Network/networkInterfaces",
    "microsoft.network/publicipaddresses": "Microsoft.Network/publicIPAddresses",
    "microsoft.network/networksecuritygroups": "Microsoft.Network/networkSecurityGroups",
    "microsoft.network/virtualnetworks": "Microsoft.Network/virtualNetworks",
    "microsoft.network/virtualnetworks/subnets": "Microsoft.Network/virtualNetworks/subnets",
    "microsoft.devtestlab/schedules": "Microsoft.DevTestLab/schedules",
}


class ArmError(Exception):
    """An ARM error response: {"error": {"code", "message"}} with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class Call:
    """One request the double answered (or refused)."""

    method: str
    path: str  # as sent, without the query string
    api_version: str | None
    query: dict[str, str]
    status: int = 0
    body: Any = None  # parsed JSON body of PUT/POST/PATCH, if any
    via_batch: bool = False  # a sub-request of POST /batch
    at: float = field(default_factory=time.monotonic)

    def __repr__(self) -> str:  # compact, for assertion messages
        via = " (batch)" if self.via_batch else ""
        return f"{self.method} {self.path}?api-version={self.api_version} -> {self.status}{via}"


@dataclass
class Fault:
    pattern: re.Pattern[str]
    method: str | None
    status: int
    remaining: int  # < 0: forever
    retry_after: float | None
    code: str
    message: str
    where: str = "any"  # any | batch (inside POST /batch) | direct (a request of its own)
    hits: int = 0

    def matches(self, method: str, path: str, via_batch: bool = False) -> bool:
        if self.remaining == 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if (self.where == "batch" and not via_batch) or (self.where == "direct" and via_batch):
            return False
        return bool(self.pattern.search(path))


@dataclass
class Operation:
    """A long-running operation: InProgress for `polls_left` status polls, then done."""

    op_id: str
    namespace: str
    location: str
    polls_left: int
    resource_id: str = ""
    action: str = ""  # create, update, delete, start, deallocate, ...
    status: str = "InProgress"
    error: ArmError | None = None
    started_at: float = field(default_factory=time.monotonic)
    done_at: float | None = None


def _lower(s: str) -> str:
    return s.lower().rstrip("/")


class ArmState:
    """The double's whole world. Thread-safe: every public method takes the lock."""

    def __init__(self, subscription_id: str = DEFAULT_SUBSCRIPTION, page_size: int = 100,
                 lro_polls: int = 1, poll_delay_ms: int = 20):
        self.lock = threading.RLock()
        self.subscription_id = subscription_id
        self.page_size = page_size
        self.lro_polls = lro_polls
        self.lro_polls_by_type: dict[str, int] = {}  # "microsoft.compute/virtualmachines" -> polls
        self.poll_delay_ms = poll_delay_ms
        self.resource_groups: dict[str, dict[str, Any]] = {}
        self.resources: dict[str, dict[str, Any]] = {}
        self.power: dict[str, str] = {}  # lower VM id -> running|deallocated|stopped|starting|...
        self.operations: dict[str, Operation] = {}
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.refused: list[str] = []  # CONNECT targets and absolute-URI requests refused
        self.token_requests = 0
        self.vm_sizes: list[tuple[str, int, int]] = list(DEFAULT_VM_SIZES)
        self.unavailable_sizes: set[str] = set()  # PUT with these sizes fails: 409 SkuNotAvailable
        self.address_plan: dict[str, str] = {}  # VM name -> "127.0.1.5[:port]" for VMs created later
        # Called as on_power(vm_name, before, after) when start/deallocate/powerOff change a VM's power
        # state, before the operation is accepted: a test powers the VM's test host off and on with it.
        self.on_power: Callable[[str, str, str], None] | None = None
        self.image_versions = ["22.04.202409010", "22.04.202501150", "22.04.202503040"]
        self._next_ip = 0

    # ------------------------------------------------------------------ ids and lookups
    def rg_id(self, rg: str) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{rg}"

    def resource_id(self, rg: str, rtype: str, name: str) -> str:
        canonical = CANONICAL_TYPES.get(rtype.lower(), rtype)
        ns, _, t = canonical.partition("/")
        return f"{self.rg_id(self.resource_groups.get(rg.lower(), {}).get('name', rg))}/providers/{ns}/{t}/{name}"

    def get(self, rid: str) -> dict[str, Any] | None:
        with self.lock:
            return self.resources.get(_lower(rid))

    def find(self, rtype: str, rg: str | None = None) -> list[dict[str, Any]]:
        """Resources of a type ("Microsoft.Compute/virtualMachines"), optionally in one resource group."""
        with self.lock:
            out = []
            for res in self.resources.values():
                if res["type"].lower() != rtype.lower():
                    continue
                if rg is not None and res["_rg"].lower() != rg.lower():
                    continue
                out.append(res)
            return sorted(out, key=lambda r: r["id"].lower())

    def find_all(self, rg: str | None = None) -> list[dict[str, Any]]:
        """Every top-level resource (child resources such as subnets excluded)."""
        with self.lock:
            return sorted((r for r in self.resources.values()
                           if "_parent" not in r and (rg is None or r["_rg"].lower() == rg.lower())),
                          key=lambda r: r["id"].lower())

    # ------------------------------------------------------------------ addresses
    def allocate_ip(self, kind: str) -> str:
        """A fresh loopback address: private 127.0.10.x.., public 127.0.20.x.. (never a routable one)."""
        with self.lock:
            n = self._next_ip
            self._next_ip += 1
        base = 10 if kind == "private" else 20
        return f"127.0.{base + n // 250}.{2 + n % 250}"

    # ------------------------------------------------------------------ faults and call log
    def inject_fault(self, path_pattern: str, status: int = 500, times: int = 1, method: str | None = None,
                     retry_after: float | None = None, code: str | None = None,
                     message: str | None = None, where: str = "any") -> Fault:
        """Answer requests whose path matches `path_pattern` (regex, case-insensitive search) with
        `status` the next `times` times (times < 0: forever), with a Retry-After header when given.
        `where`: "any", "batch" (only sub-requests of POST /batch, which the inventory plugin
        sends) or "direct" (only requests of their own: the SDK's, the modules')."""
        if where not in ("any", "batch", "direct"):
            raise ValueError(f"where={where!r}: any, batch or direct")
        default_codes = {429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable",
                         409: "Conflict", 403: "AuthorizationFailed", 404: "NotFound"}
        fault = Fault(pattern=re.compile(path_pattern, re.IGNORECASE), method=method, status=status,
                      remaining=times, retry_after=retry_after,
                      code=code or default_codes.get(status, f"Http{status}"),
                      message=message or f"Injected fault {status} by the Azure double", where=where)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str, via_batch: bool = False) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path, via_batch):
                    fault.hits += 1
                    if fault.remaining > 0:
                        fault.remaining -= 1
                    return fault
        return None

    def record(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def calls_matching(self, method: str | None = None, path: str | None = None,
                       status: int | None = None) -> list[Call]:
        """Calls filtered by method and a path regex (case-insensitive search)."""
        rx = re.compile(path, re.IGNORECASE) if path else None
        with self.lock:
            calls = list(self.calls)
        return [c for c in calls
                if (method is None or c.method.upper() == method.upper())
                and (rx is None or rx.search(c.path))
                and (status is None or c.status == status)]

    def operations_for(self, resource_id_pattern: str) -> list[Operation]:
        """Long-running operations on resources whose id matches (regex search), oldest first."""
        rx = re.compile(resource_id_pattern, re.IGNORECASE)
        with self.lock:
            ops = [op for op in self.operations.values() if rx.search(op.resource_id)]
        return sorted(ops, key=lambda op: op.started_at)

    def writes(self) -> list[Call]:
        """Every call that changes something (PUT, PATCH, DELETE, POST other than /batch)."""
        return [c for c in self.calls_matching()
                if c.method in ("PUT", "PATCH", "DELETE") or (c.method == "POST" and c.path.rstrip("/") != "/batch")]

    # ------------------------------------------------------------------ test helpers (seeding)
    def add_resource_group(self, name: str, location: str = "eastus", tags: dict[str, str] | None = None) -> dict:
        with self.lock:
            rg = {"id": self.rg_id(name), "name": name, "type": "Microsoft.Resources/resourceGroups",
                  "location": location, "tags": tags or {}, "properties": {"provisioningState": "Succeeded"}}
            self.resource_groups[name.lower()] = rg
            return rg

    def add_vm(self, rg: str, name: str, *, tags: dict[str, str] | None = None, power: str = "running",
               size: str = "Standard_D8ds_v5", location: str | None = None, address: str | None = None,
               public_ip: bool = True, admin_user: str = "azureuser") -> dict:
        """Seed a VM with its NIC (and public IP) as if provision.yml had made it.

        `address` ("127.0.1.5" or "127.0.1.5:2222") maps the VM to a local test host: its NIC's
        private IP and its public IP become that address, and a port becomes the
        `openadapt-ssh-port` tag the shipped inventory reads."""
        from . import arm  # local import: arm imports this module

        with self.lock:
            if rg.lower() not in self.resource_groups:
                self.add_resource_group(rg, location or "eastus")
            location = location or self.resource_groups[rg.lower()]["location"]
            tags = dict(tags or {})
            if address:
                tags[TEST_ADDRESS_TAG] = address
            pip_ref = None
            if public_ip:
                pip = arm.put_resource(self, rg, "Microsoft.Network/publicIPAddresses", f"{name}-ip", {
                    "location": location, "sku": {"name": "Standard"},
                    "properties": {"publicIPAllocationMethod": "Static"}})
                pip_ref = {"id": pip["id"]}
            ipc: dict[str, Any] = {"name": "default", "properties": {"privateIPAllocationMethod": "Dynamic"}}
            if pip_ref:
                ipc["properties"]["publicIPAddress"] = pip_ref
            nic = arm.put_resource(self, rg, "Microsoft.Network/networkInterfaces", f"{name}-nic", {
                "location": location, "properties": {"ipConfigurations": [ipc]}})
            vm = arm.put_resource(self, rg, "Microsoft.Compute/virtualMachines", name, {
                "location": location, "tags": tags,
                "properties": {
                    "hardwareProfile": {"vmSize": size},
                    "storageProfile": {
                        "imageReference": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy",
                                           "sku": "22_04-lts", "version": "latest"},
                        "osDisk": {"createOption": "FromImage", "diskSizeGB": 128,
                                   "managedDisk": {"storageAccountType": "Premium_LRS"}}},
                    "osProfile": {"computerName": name, "adminUsername": admin_user,
                                  "linuxConfiguration": {"disablePasswordAuthentication": True}},
                    "networkProfile": {"networkInterfaces": [{"id": nic["id"], "properties": {"primary": True}}]},
                }})
            self.power[_lower(vm["id"])] = power
            return vm

    def set_power(self, rg: str, name: str, power: str) -> None:
        with self.lock:
            vm = self.get(self.resource_id(rg, "Microsoft.Compute/virtualMachines", name))
            if vm is None:
                raise KeyError(f"no VM {rg}/{name}")
            self.power[_lower(vm["id"])] = power

    def power_of(self, rg: str, name: str) -> str | None:
        with self.lock:
            vm = self.get(self.resource_id(rg, "Microsoft.Compute/virtualMachines", name))
            return None if vm is None else self.power.get(_lower(vm["id"]))

    def vms(self, rg: str | None = None, pool: str | None = None) -> list[dict[str, Any]]:
        vms = self.find("Microsoft.Compute/virtualMachines", rg)
        if pool is not None:
            vms = [v for v in vms if (v.get("tags") or {}).get("openadapt-pool") == pool]
        return vms

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the resources (for before/after comparisons in tests)."""
        with self.lock:
            return copy.deepcopy(self.resources)

    def names(self, rtype: str, rg: str | None = None) -> list[str]:
        return [r["name"] for r in self.find(rtype, rg)]


def iter_tag_address(tags: dict[str, str] | None) -> Iterable[tuple[str, int | None]]:
    value = (tags or {}).get(TEST_ADDRESS_TAG)
    if not value:
        return []
    host, _, port = value.partition(":")
    if not host.startswith("127."):
        raise ArmError(400, "InvalidTestAddress", f"{TEST_ADDRESS_TAG} must be a loopback address, got {value!r}")
    return [(host, int(port) if port else None)]


def new_operation(state: ArmState, namespace: str, location: str, resource_id: str = "",
                  rtype: str = "", action: str = "") -> Operation:
    polls = state.lro_polls_by_type.get(rtype.lower(), state.lro_polls)
    op = Operation(op_id=str(uuid.uuid4()), namespace=namespace, location=location or "eastus",
                   polls_left=polls, resource_id=resource_id, action=action)
    with state.lock:
        state.operations[op.op_id] = op
    return op
