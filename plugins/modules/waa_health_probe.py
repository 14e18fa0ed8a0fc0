#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: waa_health_probe
short_description: Decide whether a Windows Agent Arena host is ready and, if not, which layer is broken and why
version_added: "0.1.0"
description:
  - Checks a WAA host layer by layer, in this order, and stops at the first unhealthy layer.
  - C(docker_daemon) - the engine answers C(_ping) on its Unix socket.
  - C(container) - the container exists, runs, is not restarting and was not OOM-killed.
  - C(vm_boot) - port 8006 serves noVNC rather than the boot status page (C(/msg.html) is 404),
    QMP C(query-status) says running, and (O(check_screen)) the screen is not black.
  - C(waa_server) - C(GET /probe) answers 200 with status C(Probe successful).
  - C(accessibility) - C(GET /accessibility?backend=...) returns a non-empty tree (at least one
    window under the root).
  - Every layer returns the same result model; the module returns them all, the first failed
    layer, its failure class (permanent, recoverable or transient), the exit code of C(waa-run)'s
    table and a recovery hint.
  - Known fatal log lines of the container (C(KVM acceleration not available), C(RAM_SIZE ... is too
    high), C(usermode networking)) turn a failing layer into a permanent failure at once, with the
    fix as hint, instead of waiting until the deadline.
  - A layer is healthy only when it was checked and passed. A check that could not be made (the
    screen could not be read, or the deadline left no usable time for a request) fails its layer;
    it is never counted as healthy.
  - With O(wait=true) it probes again with exponential backoff and jitter until the host is
    ready, a failure that waiting cannot cure (permanent, or a stopped container), or the
    O(timeout) deadline.
  - Every exchange (HTTP to the noVNC and server ports, QMP, the engine's Unix socket) runs under
    a total deadline per request (connect, status line, headers and body together; a peer that
    trickles bytes cannot stretch it), bounded by O(timeout). A request is made only when the
    deadline leaves it at least min(its timeout, 1 s); otherwise the layer fails and the result
    says C(timed_out).
  - What a peer may send is capped - a page 1 MB, a screenshot 8 MB, the container's inspect
    answer 4 MB, the accessibility answer 32 MB (streamed; the tree is counted without building it
    and refused after 16 MB without a window) - so the probe stays small whatever a peer sends.
  - A circuit breaker persisted on the host (one JSON file per container) opens after
    O(breaker_threshold) failed waits in a row; while it is open the module fails at once with
    exit code 11, until O(breaker_reset) seconds have passed (then it is half-open, and the next wait's
    success closes it, its failure re-opens it) or O(force=true).
  - Talks to the Docker engine through its Unix socket and to the ports over HTTP/TCP; needs
    nothing but Python's standard library on the host.
author:
  - openadapt.waa contributors (@openadapt)
options:
  layers:
    description:
      - Layers to check. They always run in the order above, from C(docker_daemon) up to the last
        layer listed here (a layer means nothing when one below it is broken), so
        V([waa_server]) checks the first four.
    type: list
    elements: str
    choices: [docker_daemon, container, vm_boot, waa_server, accessibility]
    default: [docker_daemon, container, vm_boot, waa_server, accessibility]
  container_name:
    description: Name of the WAA container.
    type: str
    default: winarena
  host:
    description: Address the container's ports are published on, as seen from the host.
    type: str
    default: 127.0.0.1
  ports:
    description: Published host ports.
    type: dict
    default: {novnc: 8006, server: 5000, qmp: 7200}
    suboptions:
      novnc:
        description: noVNC / boot status page.
        type: int
        default: 8006
      server:
        description: The WAA server.
        type: int
        default: 5000
      qmp:
        description: QEMU's QMP.
        type: int
        default: 7200
  docker_host:
    description: The Docker engine's Unix socket, as a path or a C(unix://) URL.
    type: str
    default: /var/run/docker.sock
  a11y_backend:
    description: Accessibility backend to ask for the tree.
    type: str
    choices: [win32, uia]
    default: win32
  check_screen:
    description:
      - Require a non-black screen in the C(vm_boot) layer. The screen is taken with QMP
        C(screendump) inside the container and read back through the engine's archive endpoint,
        or with C(GET /screenshot) on the server port when that fails.
      - A screen that cannot be read by either way fails C(vm_boot) (a layer that was not checked is
        never healthy); V(false) skips the check.
    type: bool
    default: true
  wait:
    description: Wait until ready (or the deadline) instead of probing once.
    type: bool
    default: false
  timeout:
    description: Deadline in seconds for the whole wait (or the single probe) - the hard cap.
    type: float
    default: 600
  stall_timeout:
    description:
      - With O(wait=true), end the wait as stalled after this many seconds in which nothing progressed - the
        files under O(storage_path) (the Windows disk image growing), the boot status page on 8006
        changing, the layer the probe reaches advancing, the screen changing - long before the hard cap
        O(timeout). A wait that the cap ends while something still moved says C(still progressing at the cap).
      - The default leaves room for the quiet spells of a real first boot (Windows setup's reboots and
        long steps, a few minutes each). V(0) turns the stall detection off (the cap alone ends the wait).
    type: float
    default: 600
  storage_path:
    description:
      - The host directory mounted as the container's C(/storage) (C(data.img), C(windows.boot)); its files
        are a progress signal of O(stall_timeout) (lstat only, at most 256 entries). Unset - no disk signal.
    type: path
  request_timeout:
    description: Total timeout in seconds of each request - connect, headers and body together (bounded by the deadline).
    type: float
    default: 5
  a11y_timeout:
    description: Timeout in seconds of the accessibility request (the tree can take long to compute).
    type: float
    default: 30
  backoff_initial:
    description: First delay between probes, in seconds.
    type: float
    default: 0.25
  backoff_factor:
    description: Growth factor of the delay (at least 1).
    type: float
    default: 1.6
  backoff_max:
    description:
      - Largest delay between probes, in seconds. A probe of all five layers costs about 0.1 s on
        the host, so the default keeps the time between "ready" and "noticed" under a second.
    type: float
    default: 1
  jitter:
    description: Each delay is scaled by a random factor in [1 - jitter, 1]; 0 <= jitter < 1.
    type: float
    default: 0.2
  breaker_threshold:
    description: Failed waits in a row that open the circuit breaker; 0 disables it.
    type: int
    default: 3
  breaker_reset:
    description: Seconds the breaker stays open after the last failed wait.
    type: float
    default: 600
  breaker_state_dir:
    description:
      - Directory of the breaker's state files (C(breaker-<container_name>).json).
      - Default C(/var/lib/waa/health) when writable, else C(~/.cache/waa/health).
    type: path
  force:
    description: Probe even when the breaker is open; a ready host closes it.
    type: bool
    default: false
  fail_on_unhealthy:
    description: Fail when the host is not ready; V(false) only reports (the result keys are the same).
    type: bool
    default: true
  report_verdict:
    description:
      - Whether the result carries the host's verdict (C(waa_verdict)). V(false) for a look-up or a wait
        on a few layers inside another step (the container look-up, the engine wait of the docker_daemon
        role) - then only a failure with O(fail_on_unhealthy=true) carries one, so a partial check is
        never taken for the host's verdict.
    type: bool
    default: true
  expect_config:
    description:
      - The declared container, to tell whether the probed one is it (C(up)'s fast path). The
        result then has C(config) and C(up_to_date) - ready, and the container carries this
        fingerprint in its C(io.openadapt.waa.config) label and runs the image O(expect_config.image)
        names now. The fingerprint is the filter C(openadapt.waa.waa_config_fingerprint) of the
        description the winarena_container role creates the container from.
    type: dict
    suboptions:
      fingerprint:
        description: The declared container's fingerprint.
        type: str
        required: true
      image:
        description: The declared image reference (name:tag or name@digest).
        type: str
        required: true
  start_stopped:
    description:
      - With O(expect_config) - start the container (through the engine's API) when it is the
        declared one but not running, instead of leaving that to a converge. The result says
        C(started) and C(changed=true); in check mode nothing is started (C(would_start)).
      - The layers in the result are those probed before the start.
    type: bool
    default: false
  lock:
    description:
      - Take this run's lease on the host's container (the one of M(openadapt.waa.waa_lock), named
        after O(container_name)) before probing, in the same module call. A live holder fails the
        task with exit code 12 (busy); in check mode nothing is taken.
    type: dict
    suboptions:
      owner:
        description: The run's owner record (C(run_id) required), as for M(openadapt.waa.waa_lock).
        type: dict
        required: true
      wait:
        description: Seconds to wait for a live holder.
        type: float
        default: 0
      ttl:
        description: Seconds the lease lasts unless renewed or released.
        type: int
        default: 7200
      takeover_own:
        description: Take over a lease of the same controller (waa-run holds its own lock per host).
        type: bool
        default: false
      lock_dir:
        description: Directory of the lease files.
        type: path
        default: /run/lock/openadapt-waa
      release:
        description:
          - When the module lets the lease go again - V(never) (a later task releases it),
            V(always), or V(when_up_to_date) (nothing else will happen on this host in this run).
          - The lease is also released when the module fails after taking it.
        type: str
        choices: [never, always, when_up_to_date]
        default: never
  publish:
    description:
      - Publish the verdict in the play's custom stats (C(waa_verdicts), AWX job artifacts), from
        the controller side of this task - V(never), V(always), or V(when_up_to_date) (only when
        this probe is the host's last step). A failed task publishes nothing (Ansible keeps no stats
        of failed results); the playbooks' rescue does that.
    type: str
    choices: [never, always, when_up_to_date]
    default: never
notes:
  - Probing is read-only and runs in check mode too; in check mode the breaker's state is never written,
    no lease is taken (O(lock)) and nothing is started (O(start_stopped)). Only those two options change
    anything on the host.
  - Only waits count for the breaker. A single probe (O(wait=false)) never changes the breaker's file,
    except a forced probe that finds the host ready, which closes it.
  - C(changed) is V(false), except when O(start_stopped) started the container.
seealso:
  - name: Exit codes
    description: docs/exit-codes.md in the collection lists every code and hint.
    link: https://github.com/OpenAdaptAI/openadapt.waa/blob/main/docs/exit-codes.md
"""

EXAMPLES = r"""
- name: Wait up to 15 minutes for a ready WAA host
  openadapt.waa.waa_health_probe:
    wait: true
    timeout: 900

- name: Report only, without failing, and look at the verdict
  openadapt.waa.waa_health_probe:
    fail_on_unhealthy: false
  register: health

- name: Show why a host is not ready
  ansible.builtin.debug:
    msg: "{{ health.message }} (exit code {{ health.exit_code }}; hint: {{ health.hint }})"
  when: not health.ready

- name: Only wait for the Docker engine's API
  openadapt.waa.waa_health_probe:
    layers: [docker_daemon]
    wait: true
    timeout: 60
    breaker_threshold: 0

- name: Probe a container published on its own address, with the UIA backend, despite an open breaker
  openadapt.waa.waa_health_probe:
    container_name: winarena-2
    host: 127.0.1.2
    a11y_backend: uia
    force: true
"""

RETURN = r"""
waa_verdict:
  description:
    - The host's verdict as data (the collection's verdict contract, docs/exit-codes.md) -
      C(exit_code), C(exit_name), C(step), C(layer), C(failure_class), C(message), C(hint).
    - C(exit_code) is 0 when the host is ready.
  returned: always, except for a ready host with O(report_verdict=false)
  type: dict
  sample: {exit_code: 6, exit_name: waa_server, step: waa_health, layer: waa_server, failure_class: recoverable,
           message: "waa_server: /probe failed", hint: "restart the container once"}
ready:
  description: Whether every layer that ran is healthy.
  returned: always
  type: bool
  sample: false
layers:
  description: The result of each layer that ran, in order; the last one is the first unhealthy one.
  returned: always
  type: list
  elements: dict
  contains:
    layer:
      description: Layer name.
      type: str
      sample: waa_server
    healthy:
      description: The verdict.
      type: bool
    message:
      description: One line.
      type: str
    duration_s:
      description: Seconds this layer's check took in the last attempt.
      type: float
    attempts:
      description: The attempt (probe round) this result comes from.
      type: int
    failure_class:
      description: V(permanent), V(recoverable) or V(transient); null when healthy.
      type: str
    hint:
      description: What to do; empty when healthy.
      type: str
    details:
      description:
        - Layer specific facts, for example the container's status, exit code, restart count and
          C(last_logs) (the last 20 lines when a layer above it failed or it is down), the boot step,
          C(qmp_status), how the C(screen) was checked, the server's C(status_code), the tree's
          C(windows), and C(log_line) when a known fatal log line decided the verdict.
      type: dict
failed_layer:
  description: The first unhealthy layer, or V(circuit_breaker) when the breaker is open; null when ready.
  returned: always
  type: str
  sample: waa_server
failure_class:
  description: Failure class of the failed layer; null when ready.
  returned: always
  type: str
  sample: recoverable
exit_code:
  description:
    - The code of waa-run's table (0 ready, 1 preflight from a fatal log line, 2 docker daemon,
      4 container, 5 vm boot, 6 waa server, 7 accessibility, 11 circuit open).
  returned: always
  type: int
  sample: 6
hint:
  description: The recovery hint for the failed layer; empty when ready.
  returned: always
  type: str
message:
  description:
    - "One line: C(<layer>: <what is wrong>), or C(ready: ...)."
    - "After a wait: C(<layer>: stalled at <step or layer> for S s (no progress: disk ..., status page ..., ...)) when
      nothing progressed for O(stall_timeout) seconds; C(<layer>: still progressing at the cap (deadline N s; last
      progress M s ago: ...): ...) when the cap O(timeout) ended a wait that still moved; else
      C(<layer>: timed out after N s: ...)."
  returned: always
  type: str
  sample: "waa_server: /probe failed: 127.0.0.1:5000/probe: connection closed without an answer"
progress:
  description:
    - What the wait saw of progress (O(stall_timeout)) - C(stalled) (the stall ended the wait),
      C(stall_timeout_s), C(last_progress_s_ago), C(changes) (attempts in which a signal moved),
      C(last_change) (which signals moved last), C(where) (the boot step or layer the host was at) and
      C(signals) - C(disk) (files, size, allocated, mtime_ns under O(storage_path)), C(status_page),
      C(layer), C(screen) (a digest).
  returned: when O(wait=true)
  type: dict
  sample: {stalled: true, stall_timeout_s: 600, last_progress_s_ago: 600.4, changes: 3, last_change: [status_page],
           where: "Installing Windows (12%)...", signals: {layer: vm_boot, status_page: "Installing Windows (12%)..."}}
timed_out:
  description:
    - Whether the deadline ended the probe or the wait - a layer it left unchecked, or a wait that
      reached it. The report is then the last attempt that was checked.
  returned: always
  type: bool
duration_s:
  description: Seconds the whole probe (or wait) took.
  returned: always
  type: float
attempts:
  description: Probe rounds made.
  returned: always
  type: int
config:
  description: The probed container against O(expect_config).
  returned: when O(expect_config) is given
  type: dict
  contains:
    exists:
      description: Whether the container exists (false too when the engine did not answer).
      type: bool
    matches:
      description: Whether the container is the declared one (label and image).
      type: bool
    reason:
      description: Why not, or that it is as declared.
      type: str
    fingerprint:
      description: The container's label; null when it has none.
      type: str
    declared:
      description: O(expect_config.fingerprint).
      type: str
started:
  description: The start of a stopped declared container (O(start_stopped)) - C(started), C(reason).
  returned: when O(start_stopped) applied (the container was as declared and not running)
  type: dict
up_to_date:
  description: Ready and C(config.matches) - nothing to do on this host.
  returned: when O(expect_config) is given
  type: bool
lock:
  description: The lease after this call.
  returned: when O(lock) is given
  type: dict
  contains:
    held:
      description: Whether this run holds the lease after the call.
      type: bool
    released:
      description: Whether the call let it go again.
      type: bool
    owner:
      description: The owner record the lease was taken for (hand it to M(openadapt.waa.waa_lock) to release it).
      type: dict
    holder:
      description: The lease record.
      type: dict
breaker:
  description: The circuit breaker after this call.
  returned: always
  type: dict
  contains:
    state:
      description: V(closed), V(open), V(half_open) or V(disabled).
      type: str
    consecutive_failures:
      description: Failed waits in a row.
      type: int
    open_until:
      description: ISO 8601 UTC time the open breaker lets probes through again; null when not open.
      type: str
    threshold:
      description: O(breaker_threshold).
      type: int
    reset_s:
      description: O(breaker_reset).
      type: float
    file:
      description: The state file.
      type: str
    error:
      description: Why the state could not be written (the probe itself still ran).
      type: str
      returned: when the state file could not be written
    warning:
      description: Why the state file was not used (malformed) - it was treated as closed and rewritten.
      type: str
      returned: when the state file was malformed
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openadapt.waa.plugins.module_utils import _waa_lock as host_lock
from ansible_collections.openadapt.waa.plugins.module_utils import waa_container_config as container_config
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import LAYERS, Prober
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_wait import Backoff, Breaker, probe
from ansible_collections.openadapt.waa.plugins.module_utils.waa_exit_codes import VERDICT_KEY, verdict_of_report


def argument_spec():
    return dict(
        layers=dict(type="list", elements="str", choices=list(LAYERS), default=list(LAYERS)),
        container_name=dict(type="str", default="winarena"),
        host=dict(type="str", default="127.0.0.1"),
        ports=dict(type="dict", default=dict(novnc=8006, server=5000, qmp=7200), options=dict(
            novnc=dict(type="int", default=8006),
            server=dict(type="int", default=5000),
            qmp=dict(type="int", default=7200),
        )),
        docker_host=dict(type="str", default="/var/run/docker.sock"),
        a11y_backend=dict(type="str", choices=["win32", "uia"], default="win32"),
        check_screen=dict(type="bool", default=True),
        wait=dict(type="bool", default=False),
        timeout=dict(type="float", default=600),
        stall_timeout=dict(type="float", default=600),
        storage_path=dict(type="path"),
        request_timeout=dict(type="float", default=5),
        a11y_timeout=dict(type="float", default=30),
        backoff_initial=dict(type="float", default=0.25),
        backoff_factor=dict(type="float", default=1.6),
        backoff_max=dict(type="float", default=1),
        jitter=dict(type="float", default=0.2),
        breaker_threshold=dict(type="int", default=3),
        breaker_reset=dict(type="float", default=600),
        breaker_state_dir=dict(type="path"),
        force=dict(type="bool", default=False),
        fail_on_unhealthy=dict(type="bool", default=True),
        report_verdict=dict(type="bool", default=True),
        expect_config=dict(type="dict", options=dict(
            fingerprint=dict(type="str", required=True),
            image=dict(type="str", required=True),
        )),
        lock=dict(type="dict", options=dict(
            owner=dict(type="dict", required=True),
            wait=dict(type="float", default=0),
            ttl=dict(type="int", default=7200),
            takeover_own=dict(type="bool", default=False),
            lock_dir=dict(type="path", default=host_lock.DEFAULT_DIR),
            release=dict(type="str", choices=["never", "always", "when_up_to_date"], default="never"),
        )),
        publish=dict(type="str", choices=["never", "always", "when_up_to_date"], default="never"),
        start_stopped=dict(type="bool", default=False),
    )


def check_params(p):
    """The first problem with the parameters, or None."""
    if not p["layers"]:
        return "layers must name at least one of %s" % ", ".join(LAYERS)
    for name in ("timeout", "request_timeout", "a11y_timeout", "backoff_initial", "backoff_max"):
        if p[name] <= 0:
            return "%s must be greater than 0, got %s" % (name, p[name])
    if not 0 <= p["jitter"] < 1:
        return "jitter must be in [0, 1), got %s" % p["jitter"]
    if p["stall_timeout"] < 0:
        return "stall_timeout must not be negative (0 turns it off), got %s" % p["stall_timeout"]
    if p["backoff_factor"] < 1:
        return "backoff_factor must be at least 1, got %s" % p["backoff_factor"]
    if p["breaker_threshold"] < 0 or p["breaker_reset"] < 0:
        return "breaker_threshold and breaker_reset must not be negative, got %s and %s" % (
            p["breaker_threshold"], p["breaker_reset"])
    for name, port in (p["ports"] or {}).items():
        if port is not None and not 0 < port < 65536:
            return "ports.%s must be a TCP port (1-65535), got %s" % (name, port)
    return None


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    problem = check_params(p)
    if problem:
        module.fail_json(msg=problem, changed=False)

    prober = Prober(container_name=p["container_name"], host=p["host"], ports=p["ports"] or {},
                    docker_host=p["docker_host"], a11y_backend=p["a11y_backend"], check_screen=p["check_screen"],
                    request_timeout=p["request_timeout"], a11y_timeout=p["a11y_timeout"])
    breaker = Breaker(p["container_name"], threshold=p["breaker_threshold"], reset_s=p["breaker_reset"],
                      state_dir=p["breaker_state_dir"])
    lease, lease_result, owner = None, None, None
    if p["lock"] and not module.check_mode:
        try:
            owner = host_lock.run_owner(p["lock"]["owner"])
            lease, lease_result = host_lock.take(p["container_name"], owner, p["lock"]["ttl"], wait_s=p["lock"]["wait"],
                                                 takeover_own=p["lock"]["takeover_own"],
                                                 directory=p["lock"]["lock_dir"])
        except host_lock.LockFailure as failure:
            module.fail_json(msg=failure.message, holder=failure.holder, exit_code=failure.exit_code,
                             waa_verdict=failure.verdict, changed=False)
    try:
        report = probe(prober, p["layers"], wait=p["wait"], timeout=p["timeout"],
                       backoff=Backoff(p["backoff_initial"], p["backoff_factor"], p["backoff_max"], p["jitter"]),
                       breaker=breaker, force=p["force"], persist=not module.check_mode,
                       stall_timeout=p["stall_timeout"], storage_path=p["storage_path"])
        if p["expect_config"]:
            report["config"] = container_config.check(prober.docker, report, p["expect_config"],
                                                      timeout=p["request_timeout"])
            report["up_to_date"] = bool(report["ready"] and report["config"]["matches"])
            if p["start_stopped"]:
                started = container_config.start_if_stopped(prober.docker, p["container_name"], report,
                                                            timeout=min(p["timeout"], 30.0),
                                                            check_mode=module.check_mode)
                if started is not None:
                    report["started"] = started
    except BaseException:
        if lease is not None:
            lease.release(owner)
        raise
    if p["report_verdict"] or (not report["ready"] and p["fail_on_unhealthy"]):
        report[VERDICT_KEY] = verdict_of_report(report)
    if breaker.warning:
        module.warn(breaker.warning)
    failing = not report["ready"] and p["fail_on_unhealthy"]
    if p["lock"]:
        release = p["lock"]["release"]
        let_go = lease is not None and (failing or release == "always"
                                        or (release == "when_up_to_date" and report.get("up_to_date")))
        if let_go:
            lease.release(owner)
        report["lock"] = dict(held=lease is not None and not let_go, released=let_go, owner=owner or {},
                              holder=(lease_result or {}).get("holder") or {})
    if failing:
        module.fail_json(msg="%s (hint: %s)" % (report["message"], report["hint"]), changed=False, **report)
    module.exit_json(changed=bool((report.get("started") or {}).get("started")), **report)


if __name__ == "__main__":
    main()
