# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The five health layers of a WAA host and their one result model.

Layers run in order and stop at the first unhealthy one, because a layer's check means nothing
when the one below it is broken (no noVNC without a running container). Every network call has a
timeout bounded by the caller's deadline: a server that accepts and never answers costs at most
one request timeout. Standard library only: this runs on the target host.

Public API::

    LAYERS                                   # the five layer names, in order
    layers_to_run(requested)                 # LAYERS up to the last requested one
    Prober(container_name="winarena", host="127.0.0.1", ports=None, docker_host=None,
           a11y_backend="win32", check_screen=True, request_timeout=5.0, a11y_timeout=30.0,
           docker=None, clock=monotonic)
    Prober.evaluate(layers, deadline, attempt=1) -> [layer result, ...]
    Deadline(seconds, clock=monotonic)       # .remaining() .expired() .timeout(per_request)
    summarize(results, layers, started, clock=monotonic, attempts=1, timed_out_after=None) -> report
    layer_result(layer, healthy, message, ...) -> one layer's result dict
    FATAL_LOG_PATTERNS, match_fatal_log(text) # known fatal log lines of the container
    (waiting, backoff and the breaker: waa_health_wait; the PNG check: waa_health_png)
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import json
import re
import socket
import struct
import time
import zlib
from collections import namedtuple
from xml.etree import ElementTree

try:
    from http.client import HTTPConnection, HTTPException
except ImportError:  # pragma: no cover
    from httplib import HTTPConnection, HTTPException  # type: ignore

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_docker_api import (
    DockerAPIError, DockerClient, DockerUnavailable, socket_path_of,
)
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_png import png_is_black  # noqa: F401

LAYERS = ("docker_daemon", "container", "vm_boot", "waa_server", "accessibility")
PROBE_JSON_STATUS = "Probe successful"
SCREEN_FILE = "/tmp/waa-probe-screen.png"
DEFAULT_PORTS = {"novnc": 8006, "server": 5000, "qmp": 7200}
LOG_LINES_IN_DETAILS = 20
LOG_LINES_SCANNED = 200
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # dockur colours its info/warn/error lines
MAX_BODY = 32 * 1024 * 1024  # an accessibility tree of a busy desktop is a few MB at most

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

# Log lines of the real container that mean waiting will never help: the one table that maps
# them to a layer, an exit code, a failure class and the fix. Checked when a layer above
# `container` fails, against the log of the container's current run only.
FatalPattern = namedtuple("FatalPattern", ["regex", "layer", "exit_code", "failure_class", "hint"])
FATAL_LOG_PATTERNS = (
    FatalPattern(
        re.compile(r"KVM acceleration not available[^\n]*"), "vm_boot", codes.PREFLIGHT, codes.PERMANENT,
        "KVM is not available in the container: use an x86_64 VM with nested virtualization (e.g. "
        "Standard_D8ds_v5, created with security type Standard, not TrustedLaunch), check that /dev/kvm "
        "exists on the host, and start the container with --device /dev/kvm (role winarena_container does)"),
    FatalPattern(
        re.compile(r"(?:Your configured )?RAM_SIZE of [0-9.]+ ?GB is too high[^\n]*"), "vm_boot", codes.PREFLIGHT,
        codes.PERMANENT,
        "lower waa_ram_size (RAM_SIZE; it needs RAM_SIZE + 0.5 GB free) or use a VM with more memory "
        "(Standard_D8ds_v5 has 32 GB)"),
    FatalPattern(
        re.compile(r"[^\n]*usermode networking[^\n]*"), "waa_server", codes.WAA_SERVER, codes.PERMANENT,
        "the container has no NET_ADMIN capability or no /dev/net/tun, so port 5000 is never forwarded: "
        "recreate it with --cap-add NET_ADMIN --device /dev/net/tun (role winarena_container does)"),
)


def match_fatal_log(text):
    """(FatalPattern, matched line) for the first known fatal line in `text`, or (None, None)."""
    for pattern in FATAL_LOG_PATTERNS:
        match = pattern.regex.search(text)
        if match:
            return pattern, match.group(0).strip()
    return None, None


def monotonic():
    return time.monotonic() if hasattr(time, "monotonic") else time.time()


def layers_to_run(requested):
    """The layers that run for a request: every layer up to the last one requested, in order."""
    unknown = [name for name in requested if name not in LAYERS]
    if unknown:
        raise ValueError("unknown layers: %s (known: %s)" % (", ".join(unknown), ", ".join(LAYERS)))
    if not requested:
        return list(LAYERS)
    return list(LAYERS[:max(LAYERS.index(name) for name in requested) + 1])


def layer_result(layer, healthy, message, duration_s=0.0, attempts=1, failure_class=None, hint="",
                 details=None, exit_code=None):
    """One layer's verdict; the same shape for every layer.

    `exit_code` overrides the layer's own code (a known fatal log line maps to PREFLIGHT).
    """
    if not healthy and failure_class not in codes.FAILURE_CLASSES:
        raise ValueError("an unhealthy layer needs a failure class of %s" % (codes.FAILURE_CLASSES,))
    result = {
        "layer": layer,
        "healthy": bool(healthy),
        "message": _one_line(message),
        "duration_s": round(duration_s, 3),
        "attempts": attempts,
        "failure_class": None if healthy else failure_class,
        "hint": "" if healthy else hint,
        "details": details or {},
    }
    if exit_code is not None and not healthy:
        result["exit_code"] = exit_code
    return result


def _one_line(text):
    return re.sub(r"\s+", " ", str(text)).strip()


class Deadline(object):
    def __init__(self, seconds, clock=monotonic):
        self.clock = clock
        self.seconds = seconds
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


def http_get(host, port, path, timeout, max_bytes=MAX_BODY):
    """(status, body bytes); ProbeError on refusal, reset, or no complete answer within timeout.

    `timeout` bounds connecting, each wait for data, and reading the body as a whole (a server
    that trickles bytes cannot stretch it).
    """
    end = monotonic() + timeout
    conn = HTTPConnection(host, port, timeout=timeout)
    response = None
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        sock = conn.sock  # kept: after a `Connection: close` answer the response owns it
        response = conn.getresponse()
        parts = []
        size = 0
        while True:
            left = end - monotonic()
            if left <= 0:
                raise socket.timeout()
            sock.settimeout(left)
            chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise ProbeError("%s:%s%s: the answer is larger than %d bytes" % (host, port, path, max_bytes))
            parts.append(chunk)
        return response.status, b"".join(parts)
    except socket.timeout:
        raise ProbeError("no answer from %s:%s%s within %.1fs" % (host, port, path, timeout))
    except (socket.error, HTTPException, OSError) as err:
        raise ProbeError("%s:%s%s: %s" % (host, port, path, _describe(err)))
    finally:
        if response is not None:
            response.close()
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
    """Run QMP commands after the capabilities handshake; returns their replies in order.

    `timeout` bounds the whole session (a QMP server that only sends events cannot stretch it).
    """
    end = monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise ProbeError("QMP %s:%s: no answer within %.1fs" % (host, port, timeout))
    except (socket.error, OSError) as err:
        raise ProbeError("QMP %s:%s: %s" % (host, port, _describe(err)))
    reader = _QMPReader(sock, end)
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
    def __init__(self, sock, end):
        self.sock = sock
        self.end = end
        self.buffer = ""
        self.decoder = json.JSONDecoder()

    def next(self):
        while True:
            stripped = self.buffer.lstrip()
            if stripped:
                try:
                    document, end = self.decoder.raw_decode(stripped)
                    self.buffer = stripped[end:]
                    if not isinstance(document, dict):
                        raise ProbeError("QMP sent %r" % (document,))
                    return document
                except ValueError:
                    if len(stripped) > 1 << 20:
                        raise ProbeError("QMP sent 1 MB that is not JSON")
            left = self.end - monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ProbeError("QMP connection closed")
            self.buffer += chunk.decode("utf-8", "replace")


def parse_docker_time(text):
    """UNIX seconds of an engine timestamp like 2026-11-24T15:54:50.584367848Z, or None."""
    match = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?$", text or "")
    if not match or text.startswith("0001-"):
        return None
    fields = [int(x) for x in match.groups()[:6]]
    seconds = calendar.timegm(tuple(fields) + (0, 0, 0))
    zone = match.group(7)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds


class Prober(object):
    """Evaluates the layers of one host. Each layer method takes a Deadline and returns one result."""

    def __init__(self, container_name="winarena", host="127.0.0.1", ports=None, docker_host=None,
                 a11y_backend="win32", check_screen=True, request_timeout=5.0, a11y_timeout=30.0,
                 docker=None, clock=monotonic):
        self.container_name = container_name
        self.host = host
        self.ports = dict(DEFAULT_PORTS)
        self.ports.update(dict((k, v) for k, v in (ports or {}).items() if v is not None))
        self.docker = docker or DockerClient(socket_path_of(docker_host))
        self.a11y_backend = a11y_backend
        self.check_screen = check_screen
        self.request_timeout = request_timeout
        self.a11y_timeout = a11y_timeout
        self.clock = clock
        self.started_at = None  # UNIX time the container's current run started (from `container`)

    # -- the layers ---------------------------------------------------------------------------
    def docker_daemon(self, deadline):
        try:
            answer = self.docker.ping(timeout=deadline.timeout(self.request_timeout))
        except (DockerUnavailable, DockerAPIError) as err:
            return layer_result("docker_daemon", False, "the Docker engine does not answer: %s" % err,
                                failure_class=codes.PERMANENT, hint=HINTS["docker_daemon"],
                                details={"socket": self.docker.socket_path})
        try:
            version = self.docker.version(timeout=deadline.timeout(self.request_timeout)) or {}
        except (DockerUnavailable, DockerAPIError, ValueError):
            version = {}
        return layer_result("docker_daemon", True, "engine %s answers _ping (%s)" % (version.get("Version", "?"), answer),
                            details={"socket": self.docker.socket_path, "version": version.get("Version"),
                                     "api_version": version.get("ApiVersion")})

    def container(self, deadline):
        self.started_at = None
        try:
            info = self.docker.inspect_container(self.container_name, timeout=deadline.timeout(self.request_timeout))
        except (DockerUnavailable, DockerAPIError, ValueError) as err:
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
        self.started_at = parse_docker_time(state.get("StartedAt"))
        problem = None
        hint = HINTS["container_stopped"]
        if state.get("OOMKilled"):
            problem, hint = "was OOM-killed (exit code %s)" % state.get("ExitCode"), HINTS["container_oom"]
        elif state.get("Restarting"):
            problem = "is restarting (restart count %s, last exit code %s)" % (details["restart_count"],
                                                                               state.get("ExitCode"))
        elif not state.get("Running"):
            problem = "is %s (exit code %s)" % (state.get("Status"), state.get("ExitCode"))
        if problem:
            details["last_logs"] = self.last_logs(deadline)
            return layer_result("container", False, "container %s %s" % (self.container_name, problem),
                                failure_class=codes.RECOVERABLE, hint=hint, details=details)
        return layer_result("container", True, "container %s is running" % self.container_name, details=details)

    def vm_boot(self, deadline):
        port = self.ports["novnc"]
        try:
            status, body = http_get(self.host, port, "/msg.html", deadline.timeout(self.request_timeout))
            if status == 200:
                step = _text(body) or "booting"
                return layer_result("vm_boot", False, "still on the boot status page: %s" % step,
                                    failure_class=codes.RECOVERABLE, hint=HINTS["booting"],
                                    details={"novnc": "status page", "step": step})
            # /vnc.html, not /: the real nginx answers / with a 301 to /?resize=scale&autoconnect=true
            status, body = http_get(self.host, port, "/vnc.html", deadline.timeout(self.request_timeout))
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
        """(black?, how it was seen): QMP screendump read back through the engine, else /screenshot.

        A screen that cannot be read counts as not black ("not checked"): the check is there to
        catch the known black phase after boot, not to fail hosts whose engine hides the file.
        """
        data = None
        source = "qmp screendump"
        if "return" in screendump_reply:
            try:
                data = self.docker.get_archive(self.container_name, SCREEN_FILE,
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
        except (ValueError, zlib.error, struct.error) as err:
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
            what = "an empty tree" if status == 200 else _text(body, 80) or "nothing"
            return layer_result("accessibility", False, "%s answered %s with %s" % (path, status, what),
                                failure_class=codes.TRANSIENT, hint=HINTS["accessibility"],
                                details={"status_code": status})
        try:
            root = ElementTree.fromstring(tree)
        except ElementTree.ParseError as err:
            return layer_result("accessibility", False, "the tree is not XML: %s" % err,
                                failure_class=codes.TRANSIENT, hint=HINTS["accessibility"],
                                details={"status_code": status})
        children = len(list(root))
        if not children:
            return layer_result("accessibility", False, "the tree's <%s> has no windows" % root.tag,
                                failure_class=codes.TRANSIENT, hint=HINTS["accessibility"],
                                details={"status_code": status, "root": root.tag, "windows": 0})
        return layer_result("accessibility", True, "%d top-level windows (%s backend)" % (children, self.a11y_backend),
                            details={"root": root.tag, "windows": children, "size": len(tree)})

    # -- evaluation ---------------------------------------------------------------------------
    def last_logs(self, deadline, tail=LOG_LINES_IN_DETAILS):
        """The last lines the container's current run logged ([] when they cannot be read)."""
        try:
            # The engine is local: a second at least, even at the deadline, so the verdict keeps its logs.
            timeout = max(deadline.timeout(self.request_timeout), min(1.0, self.request_timeout))
            text = self.docker.container_logs(self.container_name, tail=tail, since=self.started_at,
                                              timeout=timeout)
        except (DockerUnavailable, DockerAPIError):
            return []
        return [line.rstrip("\r") for line in ANSI_ESCAPE.sub("", text).splitlines()][-tail:]

    def explain_from_logs(self, result, deadline):
        """A failed layer above `container`: add the last log lines, and turn the verdict into the
        known fatal one when the log of the container's current run has such a line for this layer."""
        lines = self.last_logs(deadline, tail=LOG_LINES_SCANNED)
        result["details"]["last_logs"] = lines[-LOG_LINES_IN_DETAILS:]
        pattern, line = match_fatal_log("\n".join(lines))
        if pattern is None or pattern.layer != result["layer"]:
            return result
        details = dict(result["details"], log_line=line, probe_message=result["message"])
        return layer_result(result["layer"], False, "the container logged: %s" % line,
                            failure_class=pattern.failure_class, hint=pattern.hint, exit_code=pattern.exit_code,
                            details=details)

    def evaluate(self, layers, deadline, attempt=1):
        """Run the layers in order, up to the last requested one, stopping at the first unhealthy one."""
        results = []
        run = layers_to_run(layers)
        for name in run:
            started = self.clock()
            result = getattr(self, name)(deadline)
            if not result["healthy"] and LAYERS.index(name) > LAYERS.index("container"):
                result = self.explain_from_logs(result, deadline)
            result["duration_s"] = round(self.clock() - started, 3)
            result["attempts"] = attempt
            results.append(result)
            if not result["healthy"]:
                break
        return results


def summarize(results, layers, started, clock=monotonic, attempts=1, timed_out_after=None):
    """The report for a list of layer results (what the module returns)."""
    failed = next((r for r in results if not r["healthy"]), None)
    ready = failed is None and len(results) == len(layers_to_run(layers))
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
        "timed_out": False,
    }
    if failed:
        report["exit_code"] = failed.get("exit_code", codes.LAYER_EXIT_CODES[failed["layer"]])
        report["hint"] = failed["hint"]
        message = failed["message"]
        if timed_out_after is not None:
            message = "timed out after %s s: %s" % (_seconds(timed_out_after), message)
            report["timed_out"] = True
        report["message"] = "%s: %s" % (failed["layer"], message)
    return report


def _seconds(value):
    return ("%d" % value) if float(value) == int(value) else ("%.1f" % value)
