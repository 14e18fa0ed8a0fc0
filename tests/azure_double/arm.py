"""The Azure Resource Manager REST surface the double answers.

Enough of ARM for the azure_rm inventory plugin (VM list with paging, instanceView, NICs, public
IPs, the /batch endpoint it uses by default) and for azure.azcollection's resource group, VM,
NSG, NIC, public IP, virtual network, subnet and generic-resource modules: GET/PUT/DELETE of those
resources, VM power actions, long-running operations with Azure-AsyncOperation and Location
polling headers, VM sizes and marketplace image versions.

Semantics follow ARM where tests depend on them: 201 on create and 200 on update, 404 with
ResourceNotFound/ResourceGroupNotFound, 204 for DELETE of something absent, NICs/NSGs/public IPs
in use cannot be deleted, a VM size the location lacks is refused (409 SkuNotAvailable when the
test says so).
"""
from __future__ import annotations

import copy
import datetime
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .state import (ArmError, ArmState, Call, SSH_PORT_TAG, TEST_ADDRESS_TAG, _lower, iter_tag_address,
                    new_operation)

ARM_BASE = "https://management.azure.com"

VM_TYPE = "microsoft.compute/virtualmachines"
DISK_TYPE = "microsoft.compute/disks"
NIC_TYPE = "microsoft.network/networkinterfaces"
PIP_TYPE = "microsoft.network/publicipaddresses"
NSG_TYPE = "microsoft.network/networksecuritygroups"
VNET_TYPE = "microsoft.network/virtualnetworks"
SUBNET_TYPE = "microsoft.network/virtualnetworks/subnets"

VM_ACTIONS = {"start", "deallocate", "poweroff", "restart", "redeploy", "generalize"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able, or None for no content
    headers: dict[str, str] = field(default_factory=dict)


def parse_target(target: str) -> tuple[str, dict[str, str]]:
    """Split "/path?a=1&a=2" into the path and the first value of each query parameter."""
    parts = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return parts.path or "/", query


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


# ---------------------------------------------------------------------------------- entry points
def handle(state: ArmState, req: Request, via_batch: bool = False) -> Response:
    """Answer one ARM request, recording it in the call log."""
    call = Call(method=req.method, path=req.path, api_version=req.query.get("api-version"),
                query=dict(req.query), body=req.body, via_batch=via_batch)
    try:
        if not via_batch and not req.headers.get("authorization", "").startswith("Bearer "):
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        fault = state.take_fault(req.method, req.path, via_batch)
        if fault is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = _fmt_seconds(fault.retry_after)
            raise ArmError(fault.status, fault.code, fault.message, headers)
        if "api-version" not in req.query and not _is_operation_path(req.path):
            raise ArmError(400, "MissingApiVersionParameter",
                           "The api-version query parameter (?api-version=) is required for all requests.")
        if req.method == "POST" and req.path.rstrip("/").lower() == "/batch":
            resp = _batch(state, req)
        else:
            resp = _route(state, req)
    except ArmError as exc:
        resp = Response(exc.status, exc.body(), dict(exc.headers))
    resp.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
    call.status = resp.status
    state.record(call)
    return resp


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _is_operation_path(path: str) -> bool:
    return bool(re.search(r"/locations/[^/]+/(operations|operationresults)/", path, re.IGNORECASE))


def _batch(state: ArmState, req: Request) -> Response:
    """POST /batch (api-version 2015-11-01): {"requests": [{httpMethod, url, name}]} ->
    {"responses": [{name, httpStatusCode, headers, content}]}, answered synchronously."""
    requests = (req.body or {}).get("requests")
    if not isinstance(requests, list):
        raise ArmError(400, "InvalidBatchRequest", "The batch request must contain a 'requests' array.")
    if len(requests) > 500:
        raise ArmError(400, "BatchRequestTooLarge", "A batch request may contain at most 500 requests.")
    responses = []
    for item in requests:
        url = item.get("url", "")
        parts = urlsplit(url)
        if parts.netloc and parts.netloc.lower() != "management.azure.com":
            raise ArmError(400, "InvalidBatchRequest", f"batch url outside ARM: {url}")
        path, query = parse_target(parts.path + ("?" + parts.query if parts.query else ""))
        sub = Request(method=(item.get("httpMethod") or "GET").upper(), path=path, query=query,
                      body=item.get("content"), headers=req.headers)
        answer = handle(state, sub, via_batch=True)
        entry = {"name": item.get("name"), "httpStatusCode": answer.status, "headers": answer.headers,
                 "contentLength": 0}
        if answer.body is not None:
            entry["content"] = answer.body
            entry["contentLength"] = len(json.dumps(answer.body))
        responses.append(entry)
    return Response(200, {"responses": responses})


# ---------------------------------------------------------------------------------- routing
def _route(state: ArmState, req: Request) -> Response:
    segs = [s for s in req.path.split("/") if s]
    low = [s.lower() for s in segs]
    m = req.method
    if not low or low[0] != "subscriptions":
        raise ArmError(404, "NotFound", f"The requested path {req.path} is not an ARM endpoint the double knows.")
    if len(low) == 1:
        _only(m, "GET")
        return Response(200, {"value": [_subscription(state)]})
    if low[1] != state.subscription_id.lower():
        raise ArmError(404, "SubscriptionNotFound", f"The subscription '{segs[1]}' could not be found.")
    if len(low) == 2:
        _only(m, "GET")
        return Response(200, _subscription(state))
    if low[2] == "resourcegroups":
        return _route_rg(state, req, segs, low)
    if len(low) == 3 and low[2] == "resources":
        _only(m, "GET")
        return _page(state, req, [_generic(r) for r in state.find_all()])
    if low[2] == "providers":
        return _route_subscription_provider(state, req, segs, low)
    raise ArmError(404, "NotFound", f"unknown path {req.path}")


def _generic(res: dict[str, Any]) -> dict[str, Any]:
    """A resource as the generic /resources listing shows it."""
    return {k: copy.deepcopy(res[k]) for k in ("id", "name", "type", "location", "tags", "sku", "kind") if k in res}


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise ArmError(405, "MethodNotAllowed", f"The requested resource does not support http method '{method}'.")


def _subscription(state: ArmState) -> dict[str, Any]:
    return {"id": f"/subscriptions/{state.subscription_id}", "subscriptionId": state.subscription_id,
            "displayName": "openadapt.waa Azure double", "state": "Enabled",
            "tenantId": "00000000-0000-4000-8000-00000000face"}


def _route_rg(state: ArmState, req: Request, segs: list[str], low: list[str]) -> Response:
    m = req.method
    if len(low) == 3:
        _only(m, "GET")
        with state.lock:
            groups = [copy.deepcopy(g) for g in state.resource_groups.values()]
        return _page(state, req, sorted(groups, key=lambda g: g["name"].lower()))
    rg_name = segs[3]
    if len(low) == 4:
        return _resource_group(state, req, rg_name)
    with state.lock:
        rg = state.resource_groups.get(rg_name.lower())
    if rg is None:
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg_name}' could not be found.")
    if len(low) == 5 and low[4] == "resources":
        _only(m, "GET")
        return _page(state, req, [_generic(r) for r in state.find_all(rg["name"])])
    if len(low) < 6 or low[4] != "providers":
        raise ArmError(404, "NotFound", f"unknown path {req.path}")
    ns = segs[5]
    rest = segs[6:]
    if len(rest) == 0:
        raise ArmError(404, "NotFound", f"unknown path {req.path}")
    rtype = f"{ns}/{rest[0]}".lower()
    if len(rest) == 1:
        _only(m, "GET")
        return _page(state, req, [render(state, r, req) for r in state.find(rtype, rg["name"])])
    name = rest[1]
    rid = state.resource_id(rg["name"], rtype, name)
    if len(rest) == 2:
        if m == "GET":
            return Response(200, render(state, _must_get(state, rid, rtype, name), req))
        if m in ("PUT", "PATCH"):
            return _put(state, req, rg["name"], rtype, name)
        if m == "DELETE":
            return _delete(state, req, rid, rtype)
        _only(m, "GET", "PUT", "PATCH", "DELETE")
    sub = rest[2].lower()
    if len(rest) == 3:
        if rtype == VM_TYPE and sub == "instanceview":
            _only(m, "GET")
            vm = _must_get(state, rid, rtype, name)
            return Response(200, instance_view(state, vm))
        if rtype == VM_TYPE and sub in VM_ACTIONS:
            _only(m, "POST")
            return _vm_action(state, req, rid, sub)
        if rtype == VM_TYPE and sub == "vmsizes":
            _only(m, "GET")
            return Response(200, {"value": _sizes(state)})
        _only(m, "GET")
        parent = _must_get(state, rid, rtype, name)
        children = [render(state, r, req) for r in state.find(f"{rtype}/{sub}") if r.get("_parent") == _lower(parent["id"])]
        return _page(state, req, children)
    if len(rest) == 4:
        parent = _must_get(state, rid, rtype, name)
        ctype = f"{rtype}/{sub}"
        cid = f"{parent['id']}/{rest[2]}/{rest[3]}"
        if m == "GET":
            return Response(200, render(state, _must_get(state, cid, ctype, rest[3]), req))
        if m in ("PUT", "PATCH"):
            return _put(state, req, rg["name"], ctype, rest[3], parent=parent)
        if m == "DELETE":
            return _delete(state, req, cid, ctype)
        _only(m, "GET", "PUT", "DELETE")
    raise ArmError(404, "NotFound", f"unknown path {req.path}")


def _route_subscription_provider(state: ArmState, req: Request, segs: list[str], low: list[str]) -> Response:
    m = req.method
    if len(low) == 3:
        _only(m, "GET")
        return Response(200, {"value": [_provider(ns) for ns in ("Microsoft.Compute", "Microsoft.Network",
                                                                  "Microsoft.DevTestLab")]})
    ns = segs[3]
    if len(low) == 4:
        _only(m, "GET")
        return Response(200, _provider(ns))
    if low[4] == "locations" and len(low) >= 7:
        location = segs[5]
        kind = low[6]
        if kind in ("operations", "operationresults") and len(low) == 8:
            _only(m, "GET")
            return _operation(state, segs[7], result=(kind == "operationresults"))
        if kind == "vmsizes" and len(low) == 7:
            _only(m, "GET")
            return Response(200, {"value": _sizes(state)})
        if kind == "publishers":
            _only(m, "GET")
            return _images(state, segs, low, location)
    if len(low) == 5:
        _only(m, "GET")
        rtype = f"{ns}/{segs[4]}".lower()
        return _page(state, req, [render(state, r, req) for r in state.find(rtype)])
    raise ArmError(404, "NotFound", f"unknown path {req.path}")


def _provider(ns: str) -> dict[str, Any]:
    versions = {
        "microsoft.compute": {"virtualMachines": ["2024-07-01", "2024-03-01"], "disks": ["2024-03-02"],
                              "locations/vmSizes": ["2024-07-01"]},
        "microsoft.network": {t: ["2024-05-01", "2024-03-01"] for t in
                              ("networkInterfaces", "publicIPAddresses", "networkSecurityGroups", "virtualNetworks")},
        "microsoft.devtestlab": {"schedules": ["2018-09-15", "2016-05-15"]},
    }.get(ns.lower(), {})
    return {"id": f"/providers/{ns}", "namespace": ns, "registrationState": "Registered",
            "resourceTypes": [{"resourceType": t, "apiVersions": v, "locations": ["East US", "West Europe"]}
                              for t, v in versions.items()]}


def _sizes(state: ArmState) -> list[dict[str, Any]]:
    return [{"name": n, "numberOfCores": c, "memoryInMB": mem, "osDiskSizeInMB": 1047552,
             "resourceDiskSizeInMB": 307200 if "ds_" in n else 0, "maxDataDiskCount": 16}
            for n, c, mem in state.vm_sizes]


def _images(state: ArmState, segs: list[str], low: list[str], location: str) -> Response:
    # .../publishers/{p}/artifacttypes/vmimage/offers/{o}/skus/{k}/versions[/{v}]
    try:
        pub, offer, sku = segs[7], segs[11], segs[13]
        assert low[8] == "artifacttypes" and low[10] == "offers" and low[12] == "skus" and low[14] == "versions"
    except (IndexError, AssertionError):
        raise ArmError(404, "NotFound", "unknown image path") from None
    if pub.lower() != "canonical":
        raise ArmError(404, "ArtifactNotFound", f"Artifact: VMImage was not found (publisher {pub}).")
    gen = "V2" if "gen2" in sku.lower() else "V1"

    def one(v: str) -> dict[str, Any]:
        return {"name": v, "location": location,
                "id": f"/Subscriptions/{state.subscription_id}/Providers/Microsoft.Compute/Locations/{location}"
                      f"/Publishers/{pub}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions/{v}"}

    if len(segs) == 15:
        return Response(200, [one(v) for v in state.image_versions])
    version = segs[15]
    if version not in state.image_versions:
        raise ArmError(404, "ArtifactNotFound", f"Artifact: VMImage was not found (version {version}).")
    body = one(version)
    body["properties"] = {"hyperVGeneration": gen, "osDiskImage": {"operatingSystem": "Linux"},
                          "architecture": "x64"}
    return Response(200, body)


def _page(state: ArmState, req: Request, items: list[dict[str, Any]]) -> Response:
    try:
        offset = int(req.query.get("$skiptoken", "0") or 0)
    except ValueError:
        raise ArmError(400, "InvalidSkipToken", "The $skiptoken is not valid.") from None
    size = max(1, state.page_size)
    body: dict[str, Any] = {"value": items[offset:offset + size]}
    if offset + size < len(items):
        body["nextLink"] = (f"{ARM_BASE}{req.path}?api-version={req.query.get('api-version', '')}"
                            f"&%24skiptoken={offset + size}")
    return Response(200, body)


# ---------------------------------------------------------------------------------- resource groups
def _resource_group(state: ArmState, req: Request, name: str) -> Response:
    m = req.method
    with state.lock:
        rg = state.resource_groups.get(name.lower())
        if m in ("GET", "HEAD"):
            if rg is None:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
            return Response(200 if m == "GET" else 204, copy.deepcopy(rg) if m == "GET" else None)
        if m in ("PUT", "PATCH"):
            body = req.body or {}
            if rg is None:
                if not body.get("location"):
                    raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
                rg = state.add_resource_group(name, body["location"], body.get("tags"))
                return Response(201, copy.deepcopy(rg))
            if "tags" in body:
                rg["tags"] = body["tags"] or {}
            return Response(200, copy.deepcopy(rg))
        if m == "DELETE":
            if rg is None:
                return Response(404, ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.").body())
            for rid, res in list(state.resources.items()):
                if res["_rg"].lower() == name.lower():
                    state.resources.pop(rid, None)
                    state.power.pop(rid, None)
            del state.resource_groups[name.lower()]
            return _accepted(state, "Microsoft.Resources", rg["location"])
    _only(m, "GET", "HEAD", "PUT", "PATCH", "DELETE")
    raise AssertionError


# ---------------------------------------------------------------------------------- LROs
def _lro_headers(state: ArmState, op, location_header: bool) -> dict[str, str]:
    base = f"{ARM_BASE}/subscriptions/{state.subscription_id}/providers/{op.namespace}/locations/{op.location}"
    headers = {
        "Azure-AsyncOperation": f"{base}/operations/{op.op_id}?api-version=2024-07-01",
        # milliseconds: the SDK waits this long between polls (a Retry-After of 0 would mean 30 s)
        "retry-after-ms": str(state.poll_delay_ms),
    }
    if location_header:
        headers["Location"] = f"{base}/operationResults/{op.op_id}?api-version=2024-07-01"
    return headers


def _accepted(state: ArmState, namespace: str, location: str, resource_id: str = "", rtype: str = "",
              action: str = "") -> Response:
    op = new_operation(state, namespace, location, resource_id, rtype, action)
    return Response(202, None, _lro_headers(state, op, location_header=True))


def _operation(state: ArmState, op_id: str, result: bool) -> Response:
    with state.lock:
        op = state.operations.get(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' could not be found.")
        if op.polls_left > 0:
            op.polls_left -= 1
            in_progress = True
        else:
            in_progress = False
            if op.status == "InProgress":
                op.status = "Failed" if op.error else "Succeeded"
                op.done_at = time.monotonic()
    delay = {"retry-after-ms": str(state.poll_delay_ms)}
    if result:
        if in_progress:
            return Response(202, None, delay)
        if op.error:
            return Response(op.error.status, op.error.body())
        return Response(204, None)
    body: dict[str, Any] = {"name": op.op_id, "status": "InProgress" if in_progress else op.status,
                            "startTime": now_iso()}
    if not in_progress:
        body["endTime"] = now_iso()
        if op.error:
            body["error"] = {"code": op.error.code, "message": op.error.message}
    return Response(200, body, delay if in_progress else {})


# ---------------------------------------------------------------------------------- generic CRUD
def _must_get(state: ArmState, rid: str, rtype: str, name: str) -> dict[str, Any]:
    res = state.get(rid)
    if res is None:
        label = (_canonical(rtype)).rsplit("/", 1)[-1]
        raise ArmError(404, "ResourceNotFound",
                       f"The Resource '{_canonical(rtype).split('/')[0]}/{label}/{name}' under resource group "
                       f"was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
    return res


def _canonical(rtype: str) -> str:
    from .state import CANONICAL_TYPES
    return CANONICAL_TYPES.get(rtype.lower(), rtype)


def _put(state: ArmState, req: Request, rg: str, rtype: str, name: str, parent: dict | None = None) -> Response:
    body = req.body
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
    with state.lock:
        existed = state.get(parent["id"] + f"/{rtype.rsplit('/', 1)[1]}/{name}" if parent else
                            state.resource_id(rg, rtype, name)) is not None
        res = put_resource(state, rg, rtype, name, body, parent=parent)
        namespace = _canonical(rtype).split("/")[0]
        op = new_operation(state, namespace, res.get("location") or "eastus", res["id"], rtype,
                           "update" if existed else "create")
        out = render(state, res, req)
    headers = _lro_headers(state, op, location_header=False)
    return Response(200 if existed else 201, out, headers)


def put_resource(state: ArmState, rg: str, rtype: str, name: str, body: dict[str, Any],
                 parent: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create or replace a resource from a PUT body; returns the stored resource."""
    rtype_l = rtype.lower()
    with state.lock:
        rg_rec = state.resource_groups.get(rg.lower())
        if rg_rec is None:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        if parent is not None:
            rid = f"{parent['id']}/{_canonical(rtype).rsplit('/', 1)[1]}/{name}"
        else:
            rid = state.resource_id(rg_rec["name"], rtype_l, name)
        existing = state.get(rid)
        res = copy.deepcopy(body)
        res.pop("id", None)
        res["id"] = rid
        res["name"] = existing["name"] if existing else name
        res["type"] = _canonical(rtype_l)
        res["_rg"] = rg_rec["name"]
        if parent is not None:
            res["_parent"] = _lower(parent["id"])
        elif not res.get("location"):
            if existing and existing.get("location"):
                res["location"] = existing["location"]
            elif rtype_l not in (SUBNET_TYPE,):
                raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        if res.get("location"):
            res["location"] = res["location"].replace(" ", "").lower()
        res.setdefault("properties", {})
        res["properties"]["provisioningState"] = "Succeeded"
        if rtype_l not in (SUBNET_TYPE,):
            res.setdefault("tags", {})
        res["etag"] = f'W/"{uuid.uuid4()}"'
        hook = _PUT_HOOKS.get(rtype_l)
        if hook:
            hook(state, res, existing)
        state.resources[_lower(rid)] = res
        _after_put(state, res)
        return res


def _delete(state: ArmState, req: Request, rid: str, rtype: str) -> Response:
    with state.lock:
        res = state.get(rid)
        if res is None:
            return Response(204, None)
        hook = _DELETE_CHECKS.get(rtype.lower())
        if hook:
            hook(state, res)
        for child_id, child in list(state.resources.items()):
            if child.get("_parent") == _lower(res["id"]):
                state.resources.pop(child_id, None)
        state.resources.pop(_lower(rid), None)
        state.power.pop(_lower(rid), None)
        _after_delete(state, res)
        namespace = _canonical(rtype).split("/")[0]
        return _accepted(state, namespace, res.get("location") or "eastus", res["id"], rtype, "delete")


# ---------------------------------------------------------------------------------- rendering
def render(state: ArmState, res: dict[str, Any], req: Request | None = None) -> dict[str, Any]:
    """The JSON ARM returns for a stored resource (internal `_keys` dropped, computed fields added)."""
    out = {k: copy.deepcopy(v) for k, v in res.items() if not k.startswith("_")}
    rtype = res["type"].lower()
    if rtype == VM_TYPE:
        expand = (req.query.get("$expand", "") if req else "").lower()
        if expand == "instanceview":
            out["properties"]["instanceView"] = instance_view(state, res)
    elif rtype == VNET_TYPE:
        out["properties"]["subnets"] = [render(state, s) for s in state.find(SUBNET_TYPE)
                                        if s.get("_parent") == _lower(res["id"])]
    elif rtype == NSG_TYPE:
        out["properties"]["defaultSecurityRules"] = _default_rules(res["id"])
        refs = _nics_using_nsg(state, res["id"])
        if refs:
            out["properties"]["networkInterfaces"] = [{"id": n["id"]} for n in refs]
    elif rtype == PIP_TYPE:
        if _pip_released(state, res):
            out["properties"].pop("ipAddress", None)
    return out


def instance_view(state: ArmState, vm: dict[str, Any]) -> dict[str, Any]:
    power = state.power.get(_lower(vm["id"]), "running")
    display = {"running": "VM running", "deallocated": "VM deallocated", "stopped": "VM stopped",
               "starting": "VM starting", "deallocating": "VM deallocating", "stopping": "VM stopping"}
    statuses = [
        {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded",
         "time": vm["properties"].get("timeCreated")},
        {"code": f"PowerState/{power}", "level": "Info", "displayStatus": display.get(power, power)},
    ]
    view: dict[str, Any] = {"statuses": statuses, "hyperVGeneration": vm.get("_hyperv", "V1")}
    if power == "running":
        view.update(computerName=vm["properties"].get("osProfile", {}).get("computerName", vm["name"]),
                    osName="ubuntu", osVersion="22.04",
                    vmAgent={"vmAgentVersion": "2.10.0.8", "statuses": [
                        {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready"}]})
    return view


def _default_rules(nsg_id: str) -> list[dict[str, Any]]:
    rules = [
        ("AllowVnetInBound", "Inbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
        ("AllowAzureLoadBalancerInBound", "Inbound", "Allow", 65001, "AzureLoadBalancer", "*"),
        ("DenyAllInBound", "Inbound", "Deny", 65500, "*", "*"),
        ("AllowVnetOutBound", "Outbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
        ("AllowInternetOutBound", "Outbound", "Allow", 65001, "*", "Internet"),
        ("DenyAllOutBound", "Outbound", "Deny", 65500, "*", "*"),
    ]
    return [{"name": n, "id": f"{nsg_id}/defaultSecurityRules/{n}",
             "properties": {"provisioningState": "Succeeded", "description": n, "protocol": "*",
                            "sourcePortRange": "*", "destinationPortRange": "*", "sourceAddressPrefix": src,
                            "destinationAddressPrefix": dst, "access": access, "priority": prio,
                            "direction": direction, "sourcePortRanges": [], "destinationPortRanges": [],
                            "sourceAddressPrefixes": [], "destinationAddressPrefixes": []}}
            for n, direction, access, prio, src, dst in rules]


# ---------------------------------------------------------------------------------- type hooks
def _ref_exists(state: ArmState, ref: dict | None, what: str) -> None:
    if ref and ref.get("id") and state.get(ref["id"]) is None:
        raise ArmError(400, "InvalidResourceReference",
                       f"Resource {ref['id']} referenced by the request ({what}) was not found.")


def _vm_put(state: ArmState, vm: dict[str, Any], existing: dict[str, Any] | None) -> None:
    props = vm["properties"]
    size = (props.get("hardwareProfile") or {}).get("vmSize")
    if not size:
        raise ArmError(400, "InvalidParameter", "Required parameter 'hardwareProfile.vmSize' is missing (null).")
    known = {n.lower() for n, _, _ in state.vm_sizes}
    if size.lower() not in known:
        raise ArmError(400, "InvalidParameter",
                       f"The value {size} provided for the VM size is not valid. The valid sizes in the current "
                       f"region are: {', '.join(n for n, _, _ in state.vm_sizes)}.")
    if size in state.unavailable_sizes:
        raise ArmError(409, "SkuNotAvailable",
                       f"The requested VM size for resource 'Following SKUs have failed for Capacity "
                       f"Restrictions: {size}' is currently not available in location '{vm.get('location')}'. "
                       f"Please try another size or deploy to a different location or different zone.")
    nics = (props.get("networkProfile") or {}).get("networkInterfaces") or []
    if not nics:
        raise ArmError(400, "InvalidParameter", "At least one network interface is required for a virtual machine.")
    for ref in nics:
        nic = state.get(ref.get("id", ""))
        if nic is None:
            raise ArmError(400, "InvalidResourceReference",
                           f"Resource {ref.get('id')} referenced by resource {vm['id']} was not found.")
        attached = (nic["properties"].get("virtualMachine") or {}).get("id")
        if attached and _lower(attached) != _lower(vm["id"]):
            raise ArmError(400, "NicInUse", f"Network Interface {nic['id']} is used by existing resource {attached}.")
    storage = props.setdefault("storageProfile", {})
    image = storage.get("imageReference") or {}
    if existing is None and not image and not (storage.get("osDisk") or {}).get("managedDisk", {}).get("id"):
        raise ArmError(400, "InvalidParameter", "Required parameter 'imageReference' is missing (null).")
    sec = (props.get("securityProfile") or {}).get("securityType")
    if image and "gen2" not in (image.get("sku") or "").lower() and sec == "TrustedLaunch":
        raise ArmError(400, "BadRequest", "Trusted Launch requires a Generation 2 image.")
    vm["_hyperv"] = "V2" if "gen2" in (image.get("sku") or "").lower() else "V1"
    if image and image.get("version") and image.get("version") != "latest":
        image.setdefault("exactVersion", image["version"])
    os_disk = storage.setdefault("osDisk", {})
    old_disk = ((existing or {}).get("properties", {}).get("storageProfile", {}).get("osDisk") or {})
    os_disk["name"] = old_disk.get("name") or os_disk.get("name") or f"{vm['name']}_OsDisk_1_{uuid.uuid4().hex}"
    os_disk.setdefault("osType", "Linux")
    os_disk.setdefault("createOption", "FromImage")
    os_disk.setdefault("caching", "ReadWrite")
    os_disk.setdefault("deleteOption", "Detach")
    os_disk["diskSizeGB"] = os_disk.get("diskSizeGB") or old_disk.get("diskSizeGB") or 30
    managed = os_disk.setdefault("managedDisk", {})
    managed.setdefault("storageAccountType", "Premium_LRS")
    disk_id = state.resource_id(vm["_rg"], DISK_TYPE, os_disk["name"])
    managed["id"] = (old_disk.get("managedDisk") or {}).get("id") or disk_id
    storage.setdefault("dataDisks", [])
    os_profile = props.get("osProfile")
    if os_profile is not None:
        os_profile.pop("adminPassword", None)  # ARM never returns it
        os_profile.setdefault("computerName", vm["name"])
        os_profile.setdefault("secrets", [])
        os_profile.setdefault("allowExtensionOperations", True)
        os_profile.setdefault("requireGuestProvisionSignal", True)
    props["vmId"] = (existing or {}).get("properties", {}).get("vmId") or str(uuid.uuid4())
    props["timeCreated"] = (existing or {}).get("properties", {}).get("timeCreated") or now_iso()
    if existing is None:
        state.power[_lower(vm["id"])] = "running"
        if vm["name"] in state.address_plan and TEST_ADDRESS_TAG not in vm["tags"]:
            vm["tags"][TEST_ADDRESS_TAG] = state.address_plan[vm["name"]]
        state.resources[_lower(managed["id"])] = {
            "id": managed["id"], "name": os_disk["name"], "type": "Microsoft.Compute/disks", "_rg": vm["_rg"],
            "location": vm.get("location"), "tags": {}, "sku": {"name": managed["storageAccountType"]},
            "properties": {"diskSizeGB": os_disk["diskSizeGB"], "osType": "Linux", "provisioningState": "Succeeded",
                           "diskState": "Attached", "creationData": {"createOption": "FromImage"}},
            "managedBy": vm["id"]}
    else:
        disk = state.get(managed["id"])
        if disk is not None:
            disk["properties"]["diskSizeGB"] = os_disk["diskSizeGB"]


def _nic_put(state: ArmState, nic: dict[str, Any], existing: dict[str, Any] | None) -> None:
    props = nic["properties"]
    configs = props.get("ipConfigurations") or []
    if not configs:
        raise ArmError(400, "InvalidRequestFormat", "A network interface needs at least one IP configuration.")
    _ref_exists(state, props.get("networkSecurityGroup"), "networkSecurityGroup")
    old_configs = {c.get("name"): c for c in ((existing or {}).get("properties", {}).get("ipConfigurations") or [])}
    for i, ipc in enumerate(configs):
        ipc.setdefault("name", f"ipconfig{i + 1}")
        ipc["id"] = f"{nic['id']}/ipConfigurations/{ipc['name']}"
        ipc.pop("type", None)
        ipc["type"] = "Microsoft.Network/networkInterfaces/ipConfigurations"
        p = ipc.setdefault("properties", {})
        _ref_exists(state, p.get("subnet"), "subnet")
        _ref_exists(state, p.get("publicIPAddress"), "publicIPAddress")
        p["provisioningState"] = "Succeeded"
        p.setdefault("privateIPAllocationMethod", "Dynamic")
        p.setdefault("privateIPAddressVersion", "IPv4")
        p["primary"] = p.get("primary", i == 0) if len(configs) > 1 else True
        old = (old_configs.get(ipc["name"]) or {}).get("properties", {})
        if p["privateIPAllocationMethod"] == "Dynamic" or not p.get("privateIPAddress"):
            p["privateIPAddress"] = old.get("privateIPAddress") or state.allocate_ip("private")
    props["provisioningState"] = "Succeeded"
    props.setdefault("enableAcceleratedNetworking", False)
    props.setdefault("enableIPForwarding", False)
    props.setdefault("dnsSettings", {"dnsServers": [], "appliedDnsServers": []})
    props["macAddress"] = (existing or {}).get("properties", {}).get("macAddress") or \
        "00-0D-3A-" + "-".join(uuid.uuid4().hex[i:i + 2].upper() for i in (0, 2, 4))
    vm_ref = (existing or {}).get("properties", {}).get("virtualMachine")
    if vm_ref:
        props["virtualMachine"] = vm_ref
    else:
        props.pop("virtualMachine", None)
    props["primary"] = True if vm_ref else props.get("primary", True)


def _pip_put(state: ArmState, pip: dict[str, Any], existing: dict[str, Any] | None) -> None:
    props = pip["properties"]
    props.setdefault("publicIPAllocationMethod", "Dynamic")
    props.setdefault("publicIPAddressVersion", "IPv4")
    props.setdefault("idleTimeoutInMinutes", 4)
    pip.setdefault("sku", {"name": "Basic", "tier": "Regional"})
    pip["sku"].setdefault("tier", "Regional")
    old = (existing or {}).get("properties", {})
    props["ipAddress"] = old.get("ipAddress") or state.allocate_ip("public")
    if old.get("ipConfiguration"):
        props["ipConfiguration"] = old["ipConfiguration"]
    else:
        props.pop("ipConfiguration", None)
    props.setdefault("ipTags", [])


def _nsg_put(state: ArmState, nsg: dict[str, Any], existing: dict[str, Any] | None) -> None:
    props = nsg["properties"]
    props.pop("defaultSecurityRules", None)
    props.pop("networkInterfaces", None)
    props.pop("subnets", None)
    rules = props.setdefault("securityRules", [])
    seen: set[tuple[str, int]] = set()
    for rule in rules:
        p = rule.setdefault("properties", {})
        if not rule.get("name"):
            raise ArmError(400, "InvalidRequestFormat", "Security rule name is required.")
        key = (p.get("direction", "Inbound"), int(p.get("priority", 0)))
        if key in seen:
            raise ArmError(400, "SecurityRuleConflict",
                           f"Security rule {rule['name']} conflicts with another rule: same priority and direction.")
        seen.add(key)
        if not 100 <= int(p.get("priority", 0)) <= 4096:
            raise ArmError(400, "SecurityRuleInvalidPriority", f"Security rule {rule['name']} has invalid priority.")
        rule["id"] = f"{nsg['id']}/securityRules/{rule['name']}"
        rule["type"] = "Microsoft.Network/networkSecurityGroups/securityRules"
        rule["etag"] = nsg["etag"]
        p["provisioningState"] = "Succeeded"
        for k in ("sourcePortRanges", "destinationPortRanges", "sourceAddressPrefixes",
                  "destinationAddressPrefixes"):
            p.setdefault(k, [])
    props.setdefault("resourceGuid", (existing or {}).get("properties", {}).get("resourceGuid") or str(uuid.uuid4()))


def _vnet_put(state: ArmState, vnet: dict[str, Any], existing: dict[str, Any] | None) -> None:
    props = vnet["properties"]
    if not (props.get("addressSpace") or {}).get("addressPrefixes"):
        raise ArmError(400, "InvalidAddressSpace", "The virtual network needs at least one address prefix.")
    subnets = props.pop("subnets", None)
    props.setdefault("enableDdosProtection", False)
    props.setdefault("resourceGuid", (existing or {}).get("properties", {}).get("resourceGuid") or str(uuid.uuid4()))
    state.resources[_lower(vnet["id"])] = vnet  # so children can reference their parent
    if subnets is not None:
        wanted = {s.get("name") for s in subnets}
        for s in state.find(SUBNET_TYPE):
            if s.get("_parent") == _lower(vnet["id"]) and s["name"] not in wanted:
                _subnet_delete_check(state, s)
                state.resources.pop(_lower(s["id"]), None)
        for s in subnets:
            put_resource(state, vnet["_rg"], SUBNET_TYPE, s["name"],
                         {"properties": dict(s.get("properties") or {})}, parent=vnet)


def _subnet_put(state: ArmState, subnet: dict[str, Any], existing: dict[str, Any] | None) -> None:
    props = subnet["properties"]
    if not props.get("addressPrefix") and not props.get("addressPrefixes"):
        raise ArmError(400, "InvalidRequestFormat", "Subnet address prefix is required.")
    _ref_exists(state, props.get("networkSecurityGroup"), "networkSecurityGroup")
    props.pop("ipConfigurations", None)
    props.setdefault("privateEndpointNetworkPolicies", "Disabled")
    props.setdefault("privateLinkServiceNetworkPolicies", "Enabled")
    subnet.pop("location", None)
    subnet.pop("tags", None)
    subnet["type"] = "Microsoft.Network/virtualNetworks/subnets"


_PUT_HOOKS = {VM_TYPE: _vm_put, NIC_TYPE: _nic_put, PIP_TYPE: _pip_put, NSG_TYPE: _nsg_put,
              VNET_TYPE: _vnet_put, SUBNET_TYPE: _subnet_put}


def _after_put(state: ArmState, res: dict[str, Any]) -> None:
    """Back-references ARM maintains: NIC -> VM, public IP -> NIC ipConfiguration; test addresses."""
    rtype = res["type"].lower()
    if rtype == VM_TYPE:
        for ref in res["properties"]["networkProfile"]["networkInterfaces"]:
            nic = state.get(ref["id"])
            if nic is not None:
                nic["properties"]["virtualMachine"] = {"id": res["id"]}
        apply_test_address(state, res)
    elif rtype == NIC_TYPE:
        for ipc in res["properties"]["ipConfigurations"]:
            pip_ref = ipc["properties"].get("publicIPAddress")
            if pip_ref and state.get(pip_ref["id"]) is not None:
                state.get(pip_ref["id"])["properties"]["ipConfiguration"] = {"id": ipc["id"]}
        vm_ref = res["properties"].get("virtualMachine")
        if vm_ref and state.get(vm_ref["id"]) is not None:
            apply_test_address(state, state.get(vm_ref["id"]))


def apply_test_address(state: ArmState, vm: dict[str, Any]) -> None:
    """A VM tagged waa-test-address=127.0.1.5[:port] gets that address as its NICs' private IP and
    its public IPs' address; the port becomes the openadapt-ssh-port tag."""
    for host, port in iter_tag_address(vm.get("tags")):
        if port is not None:
            vm["tags"][SSH_PORT_TAG] = str(port)
        for ref in vm["properties"]["networkProfile"]["networkInterfaces"]:
            nic = state.get(ref["id"])
            if nic is None:
                continue
            for ipc in nic["properties"]["ipConfigurations"]:
                ipc["properties"]["privateIPAddress"] = host
                pip_ref = ipc["properties"].get("publicIPAddress")
                pip = state.get(pip_ref["id"]) if pip_ref else None
                if pip is not None:
                    pip["properties"]["ipAddress"] = host


def _pip_released(state: ArmState, pip: dict[str, Any]) -> bool:
    """A Dynamic public IP has no address while its VM is deallocated (as in Azure)."""
    if pip["properties"].get("publicIPAllocationMethod") != "Dynamic":
        return False
    ipc = (pip["properties"].get("ipConfiguration") or {}).get("id", "")
    nic = state.get(ipc.split("/ipConfigurations/")[0]) if ipc else None
    vm_id = ((nic or {}).get("properties", {}).get("virtualMachine") or {}).get("id")
    return bool(vm_id) and state.power.get(_lower(vm_id)) == "deallocated"


def _nics_using_nsg(state: ArmState, nsg_id: str) -> list[dict[str, Any]]:
    return [n for n in state.find("Microsoft.Network/networkInterfaces")
            if _lower((n["properties"].get("networkSecurityGroup") or {}).get("id", "")) == _lower(nsg_id)]


def _vm_delete_check(state: ArmState, vm: dict[str, Any]) -> None:
    return None


def _nic_delete_check(state: ArmState, nic: dict[str, Any]) -> None:
    vm_ref = nic["properties"].get("virtualMachine")
    if vm_ref and state.get(vm_ref["id"]) is not None:
        raise ArmError(400, "NicInUse",
                       f"Network Interface {nic['id']} is used by existing resource {vm_ref['id']}. In order to "
                       f"delete the network interface, it must be dissociated from the resource.")


def _pip_delete_check(state: ArmState, pip: dict[str, Any]) -> None:
    ipc = (pip["properties"].get("ipConfiguration") or {}).get("id")
    if ipc and state.get(ipc.split("/ipConfigurations/")[0]) is not None:
        raise ArmError(400, "PublicIPAddressCannotBeDeleted",
                       f"Public IP address {pip['id']} can not be deleted since it is still allocated to "
                       f"resource {ipc}.")


def _nsg_delete_check(state: ArmState, nsg: dict[str, Any]) -> None:
    users = [n["id"] for n in _nics_using_nsg(state, nsg["id"])]
    users += [s["id"] for s in state.find(SUBNET_TYPE)
              if _lower((s["properties"].get("networkSecurityGroup") or {}).get("id", "")) == _lower(nsg["id"])]
    if users:
        raise ArmError(400, "InUseNetworkSecurityGroupCannotBeDeleted",
                       f"Network security group {nsg['id']} cannot be deleted because it is in use by the "
                       f"following resources: {', '.join(users)}.")


def _subnet_delete_check(state: ArmState, subnet: dict[str, Any]) -> None:
    for nic in state.find("Microsoft.Network/networkInterfaces"):
        for ipc in nic["properties"]["ipConfigurations"]:
            if _lower((ipc["properties"].get("subnet") or {}).get("id", "")) == _lower(subnet["id"]):
                raise ArmError(400, "InUseSubnetCannotBeDeleted",
                               f"Subnet {subnet['name']} is in use by {ipc['id']} and cannot be deleted.")


def _vnet_delete_check(state: ArmState, vnet: dict[str, Any]) -> None:
    for s in state.find(SUBNET_TYPE):
        if s.get("_parent") == _lower(vnet["id"]):
            _subnet_delete_check(state, s)


def _disk_delete_check(state: ArmState, disk: dict[str, Any]) -> None:
    for vm in state.find("Microsoft.Compute/virtualMachines"):
        os_disk = vm["properties"]["storageProfile"].get("osDisk", {})
        if _lower((os_disk.get("managedDisk") or {}).get("id", "")) == _lower(disk["id"]):
            raise ArmError(409, "OperationNotAllowed",
                           f"Disk {disk['name']} is attached to VM {vm['id']}.")


_DELETE_CHECKS = {VM_TYPE: _vm_delete_check, NIC_TYPE: _nic_delete_check, PIP_TYPE: _pip_delete_check,
                  NSG_TYPE: _nsg_delete_check, SUBNET_TYPE: _subnet_delete_check, VNET_TYPE: _vnet_delete_check,
                  DISK_TYPE: _disk_delete_check}


def _after_delete(state: ArmState, res: dict[str, Any]) -> None:
    rtype = res["type"].lower()
    if rtype == VM_TYPE:
        for ref in res["properties"]["networkProfile"]["networkInterfaces"]:
            nic = state.get(ref["id"])
            if nic is not None:
                nic["properties"].pop("virtualMachine", None)
        disk = state.get((res["properties"]["storageProfile"].get("osDisk", {}).get("managedDisk") or {}).get("id", ""))
        if disk is not None:
            disk["properties"]["diskState"] = "Unattached"
            disk.pop("managedBy", None)
    elif rtype == NIC_TYPE:
        for ipc in res["properties"]["ipConfigurations"]:
            pip_ref = ipc["properties"].get("publicIPAddress")
            pip = state.get(pip_ref["id"]) if pip_ref else None
            if pip is not None:
                pip["properties"].pop("ipConfiguration", None)


def _vm_action(state: ArmState, req: Request, rid: str, action: str) -> Response:
    with state.lock:
        vm = _must_get(state, rid, VM_TYPE, rid.rsplit("/", 1)[-1])
        key = _lower(rid)
        power = state.power.get(key, "running")
        if action == "start":
            state.power[key] = "running"
        elif action == "deallocate":
            state.power[key] = "deallocated"
        elif action == "poweroff":
            if power == "deallocated":
                raise ArmError(409, "OperationNotAllowed",
                               "Operation 'powerOff' is not allowed on VM since the VM is deallocated.")
            state.power[key] = "stopped"
        elif action == "restart":
            if power != "running":
                raise ArmError(409, "OperationNotAllowed",
                               f"Operation 'restart' is not allowed on VM '{vm['name']}' since the VM is {power}.")
        elif action == "generalize":
            if power not in ("stopped", "deallocated"):
                raise ArmError(409, "OperationNotAllowed", "VM must be stopped before it can be generalized.")
        after = state.power.get(key, "running")
        hook = state.on_power if after != power else None
    if hook is not None:  # outside the lock: powering a test host takes seconds
        hook(vm["name"], power, after)
    with state.lock:
        return _accepted(state, "Microsoft.Compute", vm.get("location") or "eastus", vm["id"], VM_TYPE, action)
