# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The five health layers of a WAA host and their one result model.

Layers run in order and stop at the first unhealthy one, because a layer's check means nothing
when the one below it is broken (no noVNC without a running container). Every network call has a
timeout bounded by the caller's deadline: a server that accepts and never answers costs at most
one request timeout. Standard library only: this runs on the target host.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import socket
import struct
import time
import zlib
from xml.etree import ElementTree

try:
    from http.client import HTTPConnection, HTTPException
except ImportError:  # pragma: no cover
    from httplib import HTTPConnection, HTTPException  # type: ignore

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_docker_api import (
    DockerAPIError, DockerClient, DockerUnavailable,
)

LAYERS = ("docker_daemon", "container", "vm_boot", "waa_server", "accessibility")
PROBE_JSON_STATUS = "Probe successful"
SCREEN_FILE = "/tmp/waa-probe-screen.png"

HINTS = {
    "docker_daemon": "start the engine (role docker_daemon / `systemctl start docker`) and check its socket",
    "container_missing": "create it: run vm_setup (`waa-run vm-setup`)",
    "container_stopped": "start it: `waa-run server-start` (the waa_health role starts it once by itself)",
    "container_oom": "the container was OOM-killed: lower RAM_SIZE or use a VM with more memory",
    "booting": "Windows is still booting (a first boot installs Windows, ~20 min); wait, or look at noVNC through an SSH tunnel",
    "novnc": "noVNC on 8006 does not answer: check the container's logs and its port bindings",
    "qmp": "QEMU's QMP on 7200 does not answer: QEMU may not be running; check the container's logs",
    "black": "the screen is still black: Windows may still be starting (~30 s after boot); if it stays black restart the container once",
    "server": codes.EXIT_CODES[codes.WAA_SERVER].hint,
    "accessibility": codes.EXIT_CODES[codes.ACCESSIBILITY].hint,
}

# Log lines of the real container that mean waiting will never help: fail at once with the fix.
FATAL_LOG_PATTERNS = (
    (re.compile(r"KVM acceleration not available[^\n]*"), "vm_boot", codes.PREFLIGHT,
     "KVM is not available in the container: " + codes.EXIT_CODES[codes.PREFLIGHT].hint),
    (re.compile(r"(?:Your configured )?RAM_SIZE of [0-9.]+ ?GB is too high[^\n]*"), "vm_boot", codes.PREFLIGHT,
     "lower waa_ram_size (RAM_SIZE) or use a VM with more memory (Standard_D8ds_v5 has 32 GB)"),
    (re.compile(r"falling back to usermode networking[^\n]*"), "waa_server", codes.WAA_SERVER,
     "the container has no NET_ADMIN or /dev/net/tun, so port 5000 is never forwarded: recreate it with "
     "--cap-add NET_ADMIN --device /dev/net/tun (role winarena_container does)"),
)


def monotonic():
    return time.monotonic() if hasattr(time, "monotonic") else time.time()


def layer_result(layer, healthy, message, duration_s=0.0, attempts=1, failure_class=None, hint="",
                 details=None, exit_code=None):
    """One layer's verdict; the same shape for every layer."""
    result = {
        "layer": layer,
        "healthy": bool(healthy),
        "message": message,
        "duration_s": round(duration_s, 3),
        "attempts": attempts,
        "failure_class": None if healthy else failure_class,
        "hint": "" if healthy else hint,
        "details": details or {},
    }
    if exit_code is not None and not healthy:
        result["exit_code"] = exit_code
    return result


class Deadline(object):
    def __init__(self, seconds, clock=monotonic):
        self.clock = clock
        self.end = clock() + seconds

    def remaining(self):
        return max(0.0, self.end - self.clock())

    def expired(self):
        return self.remaining() <= 0

    def timeout(self, per_request):
        """A request timeout that never reaches past the deadline (and is never zero)."""
        return max(0.05, min(per_request, self.remaining()))


class ProbeError(Exception):
    pass


def http_get(host, port, path, timeout):
    """(status, body bytes); ProbeError on refusal, reset, or no answer within timeout."""
    conn = HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    except socket.timeout:
        raise ProbeError("no answer from %s:%s%s within %.1fs" % (host, port, path, timeout))
    except (socket.error, HTTPException, OSError) as err:
        raise ProbeError("%s:%s%s: %s" % (host, port, path, _describe(err)))
    finally:
        conn.close()


def _describe(err):
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, (ConnectionResetError, BrokenPipeError)) or "RemoteDisconnected" in type(err).__name__:
        return "connection closed without an answer"
    return str(err) or type(err).__name__


def _text(body, limit=120):
    text = re.sub(r"<[^>]+>", " ", body.decode("utf-8", "replace"))
    return re.sub(r"\s+", " ", text).strip()[:limit]


def qmp_session(host, port, commands, timeout):
    """Run QMP commands after the capabilities handshake; returns their replies in order."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise ProbeError("QMP %s:%s: no answer within %.1fs" % (host, port, timeout))
    except (socket.error, OSError) as err:
        raise ProbeError("QMP %s:%s: %s" % (host, port, _describe(err)))
    sock.settimeout(timeout)
    reader = _QMPReader(sock)
    try:
        greeting = reader.next()
        if "QMP" not in greeting:
            raise ProbeError("QMP %s:%s: unexpected greeting %r" % (host, port, greeting))
        replies = []
        for command in [{"execute": "qmp_capabilities"}] + list(commands):
            sock.sendall(json.dumps(command).encode("utf-8") + b"\r\n")
            reply = reader.next()
            while "event" in reply:  # asynchronous events may come in between
                reply = reader.next()
            replies.append(reply)
        return replies[1:]
    except socket.timeout:
        raise ProbeError("QMP %s:%s: no answer within %.1fs" % (host, port, timeout))
    except (socket.error, OSError, ValueError) as err:
        raise ProbeError("QMP %s:%s: %s" % (host, port, _describe(err)))
    finally:
        sock.close()


class _QMPReader(object):
    def __init__(self, sock):
        self.sock = sock
        self.buffer = ""
        self.decoder = json.JSONDecoder()

    def next(self):
        while True:
            stripped = self.buffer.lstrip()
            if stripped:
                try:
                    document, end = self.decoder.raw_decode(stripped)
                    self.buffer = stripped[end:]
                    return document
                except ValueError:
                    pass
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ProbeError("QMP connection closed")
            self.buffer += chunk.decode("utf-8", "replace")


def png_is_black(data, threshold=0.001):
    """True when (nearly) every pixel byte of a PNG is zero.

    Filtered scanlines of an all-zero image are all zero whatever the filter, and a picture with
    any content has non-zero bytes, so the compressed stream need not be unfiltered.
    """
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ProbeError("not a PNG")
    offset = 8
    idat = []
    width = height = None
    channels = 3
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunk = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            width, height, _depth, color_type = struct.unpack(">IIBB", chunk[:10])
            channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color_type, 3)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
        offset += 12 + length
    raw = zlib.decompress(b"".join(idat))
    if not width:
        raise ProbeError("PNG without a header")
    stride = width * channels + 1
    nonzero = 0
    for row in range(height or 0):
        line = raw[row * stride + 1:(row + 1) * stride]
        nonzero += len(line) - line.count(0)
    return nonzero <= threshold * max(1, len(raw) - (height or 0)), (width, height)


class Prober(object):
    """Evaluates the layers of one host."""

    def __init__(self, container_name="winarena", host="127.0.0.1", ports=None, docker_host=None,
                 a11y_backend="win32", check_screen=True, request_timeout=5.0, a11y_timeout=30.0,
                 docker=None, clock=monotonic):
        self.container_name = container_name
        self.host = host
        self.ports = dict({"novnc": 8006, "server": 5000, "qmp": 7200}, **(ports or {}))
        self.docker = docker or DockerClient(docker_host or "/var/run/docker.sock")
        self.a11y_backend = a11y_backend
        self.check_screen = check_screen
        self.request_timeout = request_timeout
        self.a11y_timeout = a11y_timeout
        self.clock = clock

    # -- the layers ---------------------------------------------------------------------------
    def docker_daemon(self, deadline):
        try:
            answer = self.docker.ping(timeout=deadline.timeout(self.request_timeout))
            version = self.docker.version(timeout=deadline.timeout(self.request_timeout)) or {}
        except (DockerUnavailable, DockerAPIError) as err:
            return layer_result("docker_daemon", False, "the Docker engine does not answer: %s" % err,
                                failure_class=codes.PERMANENT, hint=HINTS["docker_daemon"])
        return layer_result("docker_daemon", True, "engine %s answers (%s)" % (version.get("Version", "?"), answer),
                            details={"version": version.get("Version"), "api_version": version.get("ApiVersion")})

    def container(self, deadline):
        try:
            info = self.docker.inspect_container(self.container_name, timeout=deadline.timeout(self.request_timeout))
        except (DockerUnavailable, DockerAPIError) as err:
            return layer_result("container", False, "cannot inspect %s: %s" % (self.container_name, err),
                                failure_class=codes.PERMANENT, hint=HINTS["docker_daemon"])
        if info is None:
            return layer_result("container", False, "container %s does not exist" % self.container_name,
                                failure_class=codes.PERMANENT, hint=HINTS["container_missing"],
                                details={"exists": False})
        state = info.get("State") or {}
        details = {
            "exists": True, "status": state.get("Status"), "running": bool(state.get("Running")),
            "restarting": bool(state.get("Restarting")), "oom_killed": bool(state.get("OOMKilled")),
            "exit_code": state.get("ExitCode"), "restart_count": info.get("RestartCount", 0),
            "started_at": state.get("StartedAt"), "image": (info.get("Config") or {}).get("Image"),
        }
        problem = None
        hint = HINTS["container_stopped"]
        if state.get("OOMKilled"):
            problem, hint = "was OOM-killed", HINTS["container_oom"]
        elif state.get("Restarting"):
            problem = "is restarting (restart count %s)" % details["restart_count"]
        elif not state.get("Running"):
            problem = "is %s (exit code %s)" % (state.get("Status"), state.get("ExitCode"))
        if problem:
            details["last_logs"] = self.last_logs(deadline)
            return layer_result("container", False, "container %s %s" % (self.container_name, problem),
                                failure_class=codes.RECOVERABLE, hint=hint, details=details)
        return layer_result("container", True, "container %s is running" % self.container_name, details=details)

    def vm_boot(self, deadline):
        port = self.ports["novnc"]
        timeout = deadline.timeout(self.request_timeout)
        try:
            status, body = http_get(self.host, port, "/msg.html", timeout)
            if status == 200:
                return layer_result("vm_boot", False, "still on the boot status page: %s" % (_text(body) or "booting"),
                                    failure_class=codes.RECOVERABLE, hint=HINTS["booting"],
                                    details={"novnc": "status page", "step": _text(body)})
            status, body = http_get(self.host, port, "/", deadline.timeout(self.request_timeout))
        except ProbeError as err:
            return layer_result("vm_boot", False, "noVNC does not answer: %s" % err,
                                failure_class=codes.RECOVERABLE, hint=HINTS["novnc"], details={"novnc": "down"})
        if status != 200 or b"novnc" not in body.lower():
            return layer_result("vm_boot", False, "port %s answers %s but does not serve noVNC" % (port, status),
                                failure_class=codes.RECOVERABLE, hint=HINTS["novnc"], details={"novnc": "wrong page"})
        details = {"novnc": "ok"}
        commands = [{"execute": "query-status"}]
        if self.check_screen:
            commands.append({"execute": "screendump", "arguments": {"filename": SCREEN_FILE, "format": "png"}})
        try:
            replies = qmp_session(self.host, self.ports["qmp"], commands, deadline.timeout(self.request_timeout))
        except ProbeError as err:
            return layer_result("vm_boot", False, str(err), failure_class=codes.RECOVERABLE, hint=HINTS["qmp"],
                                details=details)
        vm_status = (replies[0].get("return") or {}).get("status")
        details["qmp_status"] = vm_status
        if vm_status != "running":
            return layer_result("vm_boot", False, "QEMU reports the VM as %s" % (vm_status or replies[0]),
                                failure_class=codes.RECOVERABLE, hint=HINTS["qmp"], details=details)
        if self.check_screen:
            black, how = self.screen_black(replies[1], deadline)
            details["screen"] = how
            if black:
                return layer_result("vm_boot", False, "the screen is black (%s)" % how,
                                    failure_class=codes.RECOVERABLE, hint=HINTS["black"], details=details)
        return layer_result("vm_boot", True, "noVNC serves the desktop and QEMU is running", details=details)

    def screen_black(self, screendump_reply, deadline):
        """(black?, how it was seen): QMP screendump read back through the engine, else /screenshot."""
        data = None
        source = "qmp screendump"
        if "return" in screendump_reply:
            try:
                data = self.docker.get_archive_file(self.container_name, SCREEN_FILE,
                                                    timeout=deadline.timeout(self.request_timeout))
            except (DockerUnavailable, DockerAPIError):
                data = None
        if data is None:
            source = "GET /screenshot"
            try:
                status, data = http_get(self.host, self.ports["server"], "/screenshot",
                                        deadline.timeout(self.request_timeout))
                if status != 200:
                    data = None
            except ProbeError:
                data = None
        if data is None:
            return False, "not checked: neither the screendump nor /screenshot could be read"
        try:
            black, size = png_is_black(data)
        except (ProbeError, zlib.error, struct.error) as err:
            return False, "not checked: %s" % err
        return black, "%s, %sx%s%s" % (source, size[0], size[1], ", black" if black else "")

    def waa_server(self, deadline):
        try:
            status, body = http_get(self.host, self.ports["server"], "/probe", deadline.timeout(self.request_timeout))
        except ProbeError as err:
            return layer_result("waa_server", False, "/probe failed: %s" % err, failure_class=codes.RECOVERABLE,
                                hint=HINTS["server"])
        try:
            payload = json.loads(body.decode("utf-8"))
        except ValueError:
            payload = None
        if status != 200 or not isinstance(payload, dict) or payload.get("status") != PROBE_JSON_STATUS:
            return layer_result("waa_server", False, "/probe answered %s %s" % (status, _text(body, 80)),
                                failure_class=codes.RECOVERABLE, hint=HINTS["server"],
                                details={"status_code": status})
        return layer_result("waa_server", True, "/probe: %s" % payload.get("message", PROBE_JSON_STATUS),
                            details={"status_code": status})

    def accessibility(self, deadline):
        path = "/accessibility?backend=%s" % self.a11y_backend
        try:
            status, body = http_get(self.host, self.ports["server"], path, deadline.timeout(self.a11y_timeout))
        except ProbeError as err:
            return layer_result("accessibility", False, "%s failed: %s" % (path, err),
                                failure_class=codes.TRANSIENT, hint=HINTS["accessibility"])
        try:
            tree = (json.loads(body.decode("utf-8")) or {}).get("AT") if status == 200 else None
        except (ValueError, AttributeError):
            tree = None
        if not tree or not isinstance(tree, str) or not tree.strip():
            return layer_result("accessibility", False, "%s answered %s with an empty tree" % (path, status),
                                failure_class=codes.TRANSIENT, hint=HINTS["accessibility"],
                                details={"status_code": status})
        try:
            root = ElementTree.fromstring(tree)
        except ElementTree.ParseError as err:
            return layer_result("accessibility", False, "the tree is not XML: %s" % err,
                                failure_class=codes.TRANSIENT, hint=HINTS["accessibility"])
        children = len(list(root))
        if not children:
            return layer_result("accessibility", False, "the tree's <%s> has no windows" % root.tag,
                                failure_class=codes.TRANSIENT, hint=HINTS["accessibility"])
        return layer_result("accessibility", True, "%d top-level windows (%s backend)" % (children, self.a11y_backend),
                            details={"root": root.tag, "windows": children, "size": len(tree)})

    # -- evaluation ---------------------------------------------------------------------------
    def last_logs(self, deadline, tail=20):
        try:
            return self.docker.container_logs(self.container_name, tail=tail,
                                              timeout=deadline.timeout(self.request_timeout)).splitlines()[-tail:]
        except (DockerUnavailable, DockerAPIError):
            return []

    def fatal_from_logs(self, deadline):
        """A result for a known fatal log line of the container, or None."""
        logs = "\n".join(self.last_logs(deadline, tail=200))
        for pattern, layer, exit_code, hint in FATAL_LOG_PATTERNS:
            match = pattern.search(logs)
            if match:
                return layer_result(layer, False, "the container logged: %s" % match.group(0).strip(),
                                    failure_class=codes.PERMANENT, hint=hint, exit_code=exit_code,
                                    details={"log_line": match.group(0).strip()})
        return None

    def evaluate(self, layers, deadline, attempt=1):
        """Run the layers in order up to the first unhealthy one; returns the list of results."""
        results = []
        for name in LAYERS:
            if name not in layers:
                continue
            started = self.clock()
            result = getattr(self, name)(deadline)
            if not result["healthy"] and name not in ("docker_daemon", "container") and "container" in layers:
                fatal = self.fatal_from_logs(deadline)
                if fatal and LAYERS.index(fatal["layer"]) <= LAYERS.index(name):
                    result = fatal
            result["duration_s"] = round(self.clock() - started, 3)
            result["attempts"] = attempt
            results.append(result)
            if not result["healthy"]:
                break
        return results


def summarize(results, layers, started, clock=monotonic, attempts=1, timed_out_after=None):
    """The report for a list of layer results (what the module returns)."""
    failed = next((r for r in results if not r["healthy"]), None)
    ready = failed is None and len(results) == len([name for name in LAYERS if name in layers])
    report = {
        "ready": ready,
        "layers": results,
        "failed_layer": failed["layer"] if failed else None,
        "failure_class": failed["failure_class"] if failed else None,
        "exit_code": codes.READY,
        "hint": "",
        "message": "ready: %s healthy" % ", ".join(r["layer"] for r in results),
        "duration_s": round(clock() - started, 3),
        "attempts": attempts,
    }
    if failed:
        report["exit_code"] = failed.get("exit_code", codes.LAYER_EXIT_CODES[failed["layer"]])
        report["hint"] = failed["hint"]
        message = failed["message"]
        if timed_out_after is not None:
            message = "not ready after %ds: %s" % (timed_out_after, message)
        report["message"] = "%s: %s" % (failed["layer"], message)
    return report
