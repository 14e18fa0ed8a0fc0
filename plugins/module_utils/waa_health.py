# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The five health layers of a WAA host and their one result model.

Layers run in order and stop at the first unhealthy one, because a layer's check means nothing
when the one below it is broken (no noVNC without a running container). A layer is healthy only
when it was checked and passed: a check that could not be made (the screen could not be read, the
deadline left no usable time for a request) fails its layer. Every exchange (HTTP, QMP, the
engine) runs under a TOTAL deadline per request and a byte cap (module_utils/_waa_transport.py):
a server that accepts and never answers, or trickles a byte at a time, costs at most one request
timeout; a peer that sends hundreds of MB is refused at the cap. A request is made only when the
deadline leaves it at least Deadline.floor() seconds (min(request timeout, 1 s)); otherwise the
layer fails as "cut by the deadline" and the report says timed_out. Standard library only: this
runs on the target host.

Public API::

    READINESS                                # the one table: layer, healthy when, class, exit code
    LAYERS                                   # the five layer names, in order
    layers_to_run(requested)                 # LAYERS up to the last requested one
    Prober(container_name="winarena", host="127.0.0.1", ports=None, docker_host=None,
           a11y_backend="win32", check_screen=True, request_timeout=5.0, a11y_timeout=30.0,
           docker=None, clock=monotonic)
    Prober.evaluate(layers, deadline, attempt=1) -> [layer result, ...]
    Deadline(seconds, clock=monotonic)       # .remaining() .expired() .floor(r) .timeout(r, what)
    DeadlineReached                          # raised by .timeout() when no usable time is left
    summarize(results, layers, started, clock=monotonic, attempts=1, timed_out_after=None) -> report
    layer_result(layer, healthy, message, ...) -> one layer's result dict
    FATAL_LOG_PATTERNS, match_fatal_log(text) # known fatal log lines of the container
    (waiting and backoff: waa_health_wait; the breaker: waa_health_breaker; the PNG check:
     waa_health_png; the streamed accessibility tree: waa_health_a11y; sockets: _waa_transport)
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import hashlib
import json
import re
import struct
import time
import zlib
from collections import namedtuple

from ansible_collections.openadapt.waa.plugins.module_utils import _waa_transport as transport
from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_container_config import LABEL as CONFIG_LABEL
from ansible_collections.openadapt.waa.plugins.module_utils.waa_docker_api import (
    MAX_ARCHIVE, MAX_INSPECT, MAX_LOGS, DockerAPIError, DockerClient, DockerUnavailable, socket_path_of,
)
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_a11y import TreeError, count_windows
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_png import MAX_PNG, png_is_black

# The one table of readiness: what each layer must show to be healthy, and what it is when not
# (the class of a check that could not be made in time; the exit code when it is the first
# unhealthy layer). Prober has one method per row; docs/architecture.md shows the same table.
Layer = namedtuple("Layer", ["name", "healthy_when", "failure_class", "exit_code"])
READINESS = (
    Layer("docker_daemon", "the engine answers _ping on its Unix socket", codes.PERMANENT, codes.DOCKER_DAEMON),
    Layer("container", "the container exists, runs, is not restarting and was not OOM-killed",
          codes.RECOVERABLE, codes.CONTAINER),
    Layer("vm_boot", "8006 serves noVNC (/msg.html is 404), QMP query-status is running, and the screen was "
          "read (QMP screendump or GET /screenshot) and is not black", codes.RECOVERABLE, codes.VM_BOOT),
    Layer("waa_server", "GET /probe answers 200 with status 'Probe successful'", codes.RECOVERABLE, codes.WAA_SERVER),
    Layer("accessibility", "GET /accessibility answers 200 with at least one window under the tree's root",
          codes.TRANSIENT, codes.ACCESSIBILITY),
)
LAYERS = tuple(layer.name for layer in READINESS)
LAYER_TABLE = dict((layer.name, layer) for layer in READINESS)
PROBE_JSON_STATUS = "Probe successful"
SCREEN_FILE = "/tmp/waa-probe-screen.png"
DEFAULT_PORTS = {"novnc": 8006, "server": 5000, "qmp": 7200}
LOG_LINES_IN_DETAILS = 20
LOG_LINES_SCANNED = 200
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # dockur colours its info/warn/error lines
MAX_BODY = 1 << 20  # a page read whole (/msg.html, /vnc.html): a few KB in practice
MAX_PROBE_BODY = 64 << 10  # /probe answers ~70 bytes
MAX_A11Y_BODY = 32 << 20  # the accessibility answer, streamed (the tree itself: waa_health_a11y caps)
DEADLINE_FLOOR_S = 1.0  # the least time a request is made with (or less when the request timeout is)

HINTS = {
    "docker_daemon": "start the engine (role docker_daemon / `systemctl start docker`) and check its socket",
    "container_missing": "create it: run vm_setup (`waa-run vm-setup`)",
    "container_stopped": "start it: `waa-run server-start` (the waa_health role starts it once by itself)",
    "container_oom": "the container was OOM-killed: lower RAM_SIZE or use a VM with more memory",
    "booting": "Windows is still booting (a first boot installs Windows, ~20 min); wait, or look at noVNC through an SSH tunnel",
    "novnc": "noVNC on 8006 does not answer: check the container's logs and its port bindings",
    "qmp": "QEMU's QMP on 7200 does not answer: QEMU may not be running; check the container's logs",
    "black": "the screen is still black: Windows may still be starting (~30 s after boot); if it stays black restart the container once",
    "screen": "the screen could not be read (QMP screendump through the engine, and GET /screenshot): check the "
              "engine and the container's logs; a host whose screen cannot be checked is not called ready "
              "(check_screen: false skips the check)",
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


class DeadlineReached(Exception):
    """No usable time is left for the next request (less than Deadline.floor()): it is not made."""

    def __init__(self, what):
        super(DeadlineReached, self).__init__("the deadline ended before %s could be checked" % what)
        self.what = what


class Deadline(object):
    def __init__(self, seconds, clock=monotonic):
        self.clock = clock
        self.seconds = seconds
        self.end = clock() + seconds

    def remaining(self):
        return max(0.0, self.end - self.clock())

    def expired(self):
        return self.remaining() <= 0

    def floor(self, per_request):
        """The least time a request is made with: min(request timeout, 1 s, a quarter of the whole
        deadline) - never the ~50 ms stubs that fail a healthy layer at the deadline."""
        return min(per_request, DEADLINE_FLOOR_S, self.seconds / 4.0)

    def timeout(self, per_request, what="the next request"):
        """A request timeout that never reaches past the deadline; DeadlineReached (the request is
        not made) when less than floor() is left."""
        left = self.remaining()
        if left <= 0 or left < self.floor(per_request):
            raise DeadlineReached(what)
        return min(per_request, left)


class ProbeError(Exception):
    pass


def _probe_error(err, what, timeout):
    if isinstance(err, transport.Timeout):
        return ProbeError("no answer from %s within %.1fs" % (what, timeout))
    text = str(err)
    return ProbeError(text if text.startswith(what) else "%s: %s" % (what, text))


def http_get(host, port, path, timeout, max_bytes=MAX_BODY):
    """(status, body bytes); ProbeError on refusal, reset, no complete answer within `timeout`
    (connect, status line, headers and body in total), or a body larger than `max_bytes`."""
    what = "%s:%s%s" % (host, port, path)
    try:
        return transport.http_get(host, port, path, timeout, max_bytes)
    except transport.TransportError as err:
        raise _probe_error(err, what, timeout)


def _describe(err):
    return transport.describe(err)


def _text(body, limit=120):
    text = re.sub(r"<[^>]+>", " ", body[:64 << 10].decode("utf-8", "replace"))
    return re.sub(r"\s+", " ", text).strip()[:limit]


def qmp_session(host, port, commands, timeout):
    """Run QMP commands after the capabilities handshake; returns their replies in order.

    `timeout` bounds the whole session (connect, greeting, every reply): a QMP server that greets
    and then stalls, or only sends events, cannot stretch it.
    """
    what = "QMP %s:%s" % (host, port)
    try:
        return transport.qmp_session(host, port, commands, timeout)
    except transport.Timeout:
        raise ProbeError("%s: no answer within %.1fs" % (what, timeout))
    except transport.TransportError as err:
        raise ProbeError(str(err) if str(err).startswith(what) else "%s: %s" % (what, err))


def _label(info, name):
    """One label of an inspect document, or None (labels are a mapping of strings when present)."""
    config = info.get("Config") if isinstance(info.get("Config"), dict) else {}
    labels = config.get("Labels") if isinstance(config.get("Labels"), dict) else {}
    value = labels.get(name)
    return value if isinstance(value, str) else None


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
        self.screen_digest = None  # the last screen read (vm_boot's details.screen_digest)

    # -- the layers ---------------------------------------------------------------------------
    def docker_daemon(self, deadline):
        try:
            answer = self.docker.ping(timeout=deadline.timeout(self.request_timeout, "the engine"))
        except (DockerUnavailable, DockerAPIError) as err:
            return layer_result("docker_daemon", False, "the Docker engine does not answer: %s" % err,
                                failure_class=codes.PERMANENT, hint=HINTS["docker_daemon"],
                                details={"socket": self.docker.socket_path})
        try:
            version = self.docker.version(timeout=deadline.timeout(self.request_timeout, "the engine")) or {}
        except (DockerUnavailable, DockerAPIError, ValueError, DeadlineReached):
            version = {}  # only for the message: _ping answered
        return layer_result("docker_daemon", True, "engine %s answers _ping (%s)" % (version.get("Version", "?"), answer),
                            details={"socket": self.docker.socket_path, "version": version.get("Version"),
                                     "api_version": version.get("ApiVersion")})

    def container(self, deadline):
        self.started_at = None
        try:
            info = self.docker.inspect_container(
                self.container_name, timeout=deadline.timeout(self.request_timeout, "the container"),
                max_bytes=MAX_INSPECT)
        except (DockerUnavailable, DockerAPIError, ValueError) as err:
            return layer_result("container", False, "cannot inspect %s: %s" % (self.container_name, err),
                                failure_class=codes.PERMANENT, hint=HINTS["docker_daemon"])
        if not isinstance(info, dict) and info is not None:
            return layer_result("container", False, "cannot inspect %s: the engine sent %s, not an object"
                                % (self.container_name, type(info).__name__),
                                failure_class=codes.PERMANENT, hint=HINTS["docker_daemon"])
        if info is None:
            return layer_result("container", False, "container %s does not exist" % self.container_name,
                                failure_class=codes.PERMANENT, hint=HINTS["container_missing"],
                                details={"exists": False})
        state = info.get("State") if isinstance(info.get("State"), dict) else {}
        details = {
            "exists": True, "status": state.get("Status"), "running": bool(state.get("Running")),
            "restarting": bool(state.get("Restarting")), "oom_killed": bool(state.get("OOMKilled")),
            "exit_code": state.get("ExitCode"), "restart_count": info.get("RestartCount", 0),
            "started_at": state.get("StartedAt"),
            "image": info["Config"].get("Image") if isinstance(info.get("Config"), dict) else None,
            # what up's fast path compares with the declared container (waa_container_config)
            "image_id": info.get("Image") if isinstance(info.get("Image"), str) else None,
            "config_fingerprint": _label(info, CONFIG_LABEL),
        }
        self.started_at = parse_docker_time(state.get("StartedAt") if isinstance(state.get("StartedAt"), str) else None)
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
            status, body = http_get(self.host, port, "/msg.html", deadline.timeout(self.request_timeout, "noVNC"))
            if status == 200:
                step = _text(body) or "booting"
                return layer_result("vm_boot", False, "still on the boot status page: %s" % step,
                                    failure_class=codes.RECOVERABLE, hint=HINTS["booting"],
                                    details={"novnc": "status page", "step": step})
            # /vnc.html, not /: the real nginx answers / with a 301 to /?resize=scale&autoconnect=true
            status, body = http_get(self.host, port, "/vnc.html", deadline.timeout(self.request_timeout, "noVNC"))
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
            replies = qmp_session(self.host, self.ports["qmp"], commands,
                                  deadline.timeout(self.request_timeout, "QEMU (QMP)"))
        except ProbeError as err:
            return layer_result("vm_boot", False, str(err), failure_class=codes.RECOVERABLE, hint=HINTS["qmp"],
                                details=details)
        answer = replies[0].get("return")
        vm_status = answer.get("status") if isinstance(answer, dict) else None
        details["qmp_status"] = vm_status
        if vm_status != "running":
            return layer_result("vm_boot", False, "QEMU reports the VM as %s" % (vm_status or replies[0]),
                                failure_class=codes.RECOVERABLE, hint=HINTS["qmp"], details=details)
        if self.check_screen:
            seen, how = self.screen(replies[1], deadline)
            details["screen"] = how
            details["screen_digest"] = self.screen_digest  # a progress signal of long waits
            if seen == "black":
                return layer_result("vm_boot", False, "the screen is black (%s)" % how,
                                    failure_class=codes.RECOVERABLE, hint=HINTS["black"], details=details)
            if seen != "desktop":  # not checked is never healthy
                return layer_result("vm_boot", False, "the screen could not be checked: %s" % how,
                                    failure_class=codes.RECOVERABLE, hint=HINTS["screen"], details=details)
        return layer_result("vm_boot", True, "noVNC serves the desktop and QEMU is running", details=details)

    def screen(self, screendump_reply, deadline):
        """("desktop" | "black" | "unchecked", how it was seen): the QMP screendump read back through
        the engine's archive endpoint, else GET /screenshot on the server port.

        A screen that could not be read is "unchecked", and vm_boot fails on it: a layer that was
        not checked is never healthy. DeadlineReached when no time is left to read it.
        """
        problems = []
        sources = []
        self.screen_digest = None
        if isinstance(screendump_reply, dict) and "return" in screendump_reply:
            sources.append("qmp screendump")
        else:
            problems.append("qmp screendump: %s" % _one_line(json.dumps(screendump_reply)[:120]))
        sources.append("GET /screenshot")
        for source in sources:
            try:
                if source == "qmp screendump":
                    data = self.docker.get_archive(
                        self.container_name, SCREEN_FILE, max_bytes=MAX_ARCHIVE,
                        timeout=deadline.timeout(self.request_timeout, "the screen"))
                else:
                    status, data = http_get(self.host, self.ports["server"], "/screenshot",
                                            deadline.timeout(self.request_timeout, "the screen"), MAX_PNG)
                    if status != 200:
                        problems.append("%s answered %s" % (source, status))
                        continue
            except (DockerUnavailable, DockerAPIError, ProbeError) as err:
                problems.append("%s: %s" % (source, err))
                continue
            try:
                black, size = png_is_black(data)
            except (ValueError, zlib.error, struct.error) as err:
                problems.append("%s: %s" % (source, err))
                continue
            how = "%s, %sx%s%s" % (source, size[0], size[1], ", black" if black else "")
            self.screen_digest = "%s:%s" % (source.split()[-1], hashlib.sha256(data).hexdigest()[:16])
            return ("black" if black else "desktop"), how
        return "unchecked", "; ".join(problems)

    def waa_server(self, deadline):
        try:
            status, body = http_get(self.host, self.ports["server"], "/probe",
                                    deadline.timeout(self.request_timeout, "the WAA server"), MAX_PROBE_BODY)
        except ProbeError as err:
            return layer_result("waa_server", False, "/probe failed: %s" % err, failure_class=codes.RECOVERABLE,
                                hint=HINTS["server"])
        try:
            payload = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            payload = None
        if status != 200 or not isinstance(payload, dict) or payload.get("status") != PROBE_JSON_STATUS:
            return layer_result("waa_server", False, "/probe answered %s %s" % (status, _text(body, 80)),
                                failure_class=codes.RECOVERABLE, hint=HINTS["server"],
                                details={"status_code": status})
        return layer_result("waa_server", True, "/probe: %s" % payload.get("message", PROBE_JSON_STATUS),
                            details={"status_code": status})

    def accessibility(self, deadline):
        """The tree is streamed and counted (waa_health_a11y), never built: a peer that sends a
        28 MB tree of millions of elements costs one read piece of memory, not the DOM."""
        path = "/accessibility?backend=%s" % self.a11y_backend
        port = self.ports["server"]
        timeout = deadline.timeout(self.a11y_timeout, "the accessibility tree")
        what = "%s:%s%s" % (self.host, port, path)
        status = None
        try:
            response = transport.open_get(self.host, port, path, timeout, MAX_A11Y_BODY)
            try:
                status = response.status
                if status != 200:
                    body = response.body(MAX_PROBE_BODY)
                    return layer_result("accessibility", False, "%s answered %s with %s" % (
                        path, status, _text(body, 80) or "nothing"), failure_class=codes.TRANSIENT,
                        hint=HINTS["accessibility"], details={"status_code": status})
                count = count_windows(response.iter_body(MAX_A11Y_BODY))
            finally:
                response.close()
        except transport.TransportError as err:
            return layer_result("accessibility", False, "%s failed: %s" % (path, _probe_error(err, what, timeout)),
                                failure_class=codes.TRANSIENT, hint=HINTS["accessibility"],
                                details={"status_code": status} if status else None)
        except TreeError as err:
            return layer_result("accessibility", False, "%s" % err, failure_class=codes.TRANSIENT,
                                hint=HINTS["accessibility"], details={"status_code": status})
        if not count.found:
            return layer_result("accessibility", False, "%s answered %s with an empty tree" % (path, status),
                                failure_class=codes.TRANSIENT, hint=HINTS["accessibility"],
                                details={"status_code": status})
        if not count.windows:
            return layer_result("accessibility", False, "the tree's <%s> has no windows" % count.root,
                                failure_class=codes.TRANSIENT, hint=HINTS["accessibility"],
                                details={"status_code": status, "root": count.root, "windows": 0})
        return layer_result("accessibility", True, "%s%d top-level windows (%s backend)" % (
            "" if count.complete else "at least ", count.windows, self.a11y_backend),
            details={"root": count.root, "windows": count.windows, "size": count.chars,
                     "complete": count.complete})

    # -- evaluation ---------------------------------------------------------------------------
    def last_logs(self, deadline, tail=LOG_LINES_IN_DETAILS):
        """The last lines the container's current run logged ([] when they cannot be read)."""
        try:
            # The engine is local: a second at least, even at the deadline, so the verdict keeps its logs.
            timeout = max(min(self.request_timeout, deadline.remaining()), min(1.0, self.request_timeout))
            text = self.docker.container_logs(self.container_name, tail=tail, since=self.started_at,
                                              timeout=timeout, max_bytes=MAX_LOGS)
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
        """Run the layers in order, up to the last requested one, stopping at the first unhealthy one.

        A layer whose check the deadline cut (DeadlineReached: no usable time left for one of its
        requests) fails with details.deadline_reached; summarize() reports it as timed out.
        """
        results = []
        run = layers_to_run(layers)
        for name in run:
            started = self.clock()
            try:
                result = getattr(self, name)(deadline)
            except DeadlineReached as reached:
                result = deadline_result(name, reached)
            else:
                if not result["healthy"] and LAYERS.index(name) > LAYERS.index("container"):
                    result = self.explain_from_logs(result, deadline)
            result["duration_s"] = round(self.clock() - started, 3)
            result["attempts"] = attempt
            results.append(result)
            if not result["healthy"]:
                break
        return results


def deadline_result(name, reached):
    """The verdict of a layer that could not be checked before the deadline: unhealthy."""
    spec = LAYER_TABLE[name]
    hint = {"docker_daemon": HINTS["docker_daemon"], "container": HINTS["container_stopped"],
            "vm_boot": HINTS["booting"], "waa_server": HINTS["server"],
            "accessibility": HINTS["accessibility"]}[name]
    return layer_result(name, False, str(reached), failure_class=spec.failure_class,
                        hint="the deadline ended the check (raise the timeout); " + hint,
                        details={"deadline_reached": True})


def cut_by_deadline(results):
    """Whether the last result is a layer the deadline left unchecked."""
    return bool(results) and bool(results[-1].get("details", {}).get("deadline_reached"))


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
        if timed_out_after is None and failed.get("details", {}).get("deadline_reached"):
            report["timed_out"] = True
        if timed_out_after is not None:
            message = "timed out after %s s: %s" % (_seconds(timed_out_after), message)
            report["timed_out"] = True
        report["message"] = "%s: %s" % (failed["layer"], message)
    return report


def _seconds(value):
    return ("%d" % value) if float(value) == int(value) else ("%.1f" % value)
