# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one table of exit codes, failure classes and recovery hints.

It lives in module_utils because the health probe runs on the target host and must return the
same codes the wrapper (`waa-run`) exits with; waa_runner loads this very file. Standard library
only. docs/exit-codes.md is the human-readable copy of this table and is checked against it.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

ExitCode = namedtuple("ExitCode", ["code", "name", "summary", "hint"])

READY = 0
PREFLIGHT = 1
DOCKER_DAEMON = 2
IMAGE_PULL = 3
CONTAINER = 4
VM_BOOT = 5
WAA_SERVER = 6
ACCESSIBILITY = 7
DEADLINE = 8
UNKNOWN = 9
UNREACHABLE = 10
CIRCUIT_OPEN = 11
BUSY = 12
NOT_ALL_READY = 13
AZURE = 14
VM_STOPPED = 15
STALE = 16
USAGE = 64

EXIT_CODES = {
    READY: ExitCode(READY, "ready", "every targeted host is ready", ""),
    PREFLIGHT: ExitCode(
        PREFLIGHT, "preflight",
        "the host cannot run WAA (no KVM / nested virtualization, too little RAM or disk, wrong arch)",
        "use an x86_64 VM with nested virtualization (e.g. Standard_D8ds_v5, security type Standard, "
        "not TrustedLaunch) and enough free RAM and disk; see the preflight message",
    ),
    DOCKER_DAEMON: ExitCode(
        DOCKER_DAEMON, "docker_daemon", "the Docker engine does not answer",
        "run `waa-run vm-setup` (role docker_daemon), or check `systemctl status docker` on the host",
    ),
    IMAGE_PULL: ExitCode(
        IMAGE_PULL, "image_pull", "the WAA image could not be pulled",
        "check the registry, credentials and disk space; set a regional mirror (waa_image_fallback_registry)",
    ),
    CONTAINER: ExitCode(
        CONTAINER, "container", "the winarena container is missing, stopped, restarting or was OOM-killed",
        "run `waa-run vm-setup` to (re)create it; its last log lines are in the report",
    ),
    VM_BOOT: ExitCode(
        VM_BOOT, "vm_boot", "Windows did not boot in time (noVNC, QMP or the screen never came up)",
        "look at the desktop through an SSH tunnel to port 8006; `waa-run server-start` restarts the "
        "container once; a first boot installs Windows (~20 min)",
    ),
    WAA_SERVER: ExitCode(
        WAA_SERVER, "waa_server", "the WAA server in Windows never answered /probe",
        "restart the container once (`waa-run server-start`); if it persists re-prepare /storage",
    ),
    ACCESSIBILITY: ExitCode(
        ACCESSIBILITY, "accessibility", "the accessibility tree stayed empty or failed",
        "the desktop may still be busy: probe again with a longer --timeout, or try the other backend",
    ),
    DEADLINE: ExitCode(
        DEADLINE, "deadline", "the overall deadline passed before the run finished",
        "raise --timeout, or probe the hosts to see where they are stuck",
    ),
    UNKNOWN: ExitCode(UNKNOWN, "unknown", "an unexpected error", "rerun with -v and read the run artifacts"),
    UNREACHABLE: ExitCode(
        UNREACHABLE, "unreachable", "the host could not be reached over SSH",
        "check that the VM is running, its address, the SSH key and the NSG rule for your address",
    ),
    CIRCUIT_OPEN: ExitCode(
        CIRCUIT_OPEN, "circuit_open", "the host failed too many waits in a row; probing is paused",
        "wait until the time given, or force a probe (waa-run probe --force / waa_health_force_probe)",
    ),
    BUSY: ExitCode(
        BUSY, "busy", "another waa-run is already working on these hosts",
        "wait for it to finish, or pass --wait-lock SECONDS",
    ),
    NOT_ALL_READY: ExitCode(
        NOT_ALL_READY, "not_all_ready", "some hosts are ready and others failed for different reasons",
        "read each host's own exit code and hint in the summary or the JSON report",
    ),
    AZURE: ExitCode(
        AZURE, "azure", "an Azure call (start, deallocate, create) failed after the SDK's retries",
        "read the Azure error in the message: credentials and rights (docs/azure.md), quota or capacity "
        "for the size, throttling (run again later)",
    ),
    VM_STOPPED: ExitCode(
        VM_STOPPED, "vm_stopped", "the Azure VM is deallocated or stopped, so nothing on it runs",
        "`waa-run up` starts it (and brings WAA up); `waa-run down --deallocate` is what stopped it",
    ),
    STALE: ExitCode(
        STALE, "stale", "the host's latest verdict (waa-run watch / gate) is older than --max-age",
        "check that `waa-run watch` runs and that the host's agent answers (playbooks/watch_agent.yml)",
    ),
    USAGE: ExitCode(USAGE, "usage", "the command line or a variable is invalid; nothing was changed",
                    "see the message and `waa-run --help`"),
}

# Health layer -> exit code when that layer is the first unhealthy one.
LAYER_EXIT_CODES = {
    "docker_daemon": DOCKER_DAEMON,
    "container": CONTAINER,
    "vm_boot": VM_BOOT,
    "waa_server": WAA_SERVER,
    "accessibility": ACCESSIBILITY,
}

# How a failure may be handled: what the caller (role, wrapper, human) can do about it.
PERMANENT = "permanent"  # waiting will not help; needs a role run or a human
RECOVERABLE = "recoverable"  # one bounded recovery (start / restart / recreate) may help
TRANSIENT = "transient"  # waiting longer may help
FAILURE_CLASSES = (PERMANENT, RECOVERABLE, TRANSIENT)


def describe(code):
    """The table row for a code; unknown codes map to UNKNOWN's row with the code kept."""
    row = EXIT_CODES.get(code)
    if row is None:
        base = EXIT_CODES[UNKNOWN]
        return ExitCode(code, base.name, base.summary, base.hint)
    return row


# ------------------------------------------------------------------------------ the verdict contract
# Every place of the collection that can end a host's run (the probe, validation, preflight, pull,
# container, Azure steps) hands on its verdict as data under this result key. waa_runner, the
# callback plugin and set_stats read it; nothing is inferred from role names, task names or text.
VERDICT_KEY = "waa_verdict"
VERDICT_FIELDS = ("exit_code", "exit_name", "step", "layer", "failure_class", "message", "hint")


STATS_KEY = "waa_verdicts"  # the custom stats (set_stats) key: AWX/AAP job artifacts


def published(host, found):
    """The `ansible_stats` of a task result that publishes one host's verdict (aggregated per host)."""
    return {"data": {STATS_KEY: {host: found}}, "per_host": False, "aggregate": True}


def code_of(value):
    """An exit code given as its number or its name ('usage', 'image_pull'); None when unknown."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in EXIT_CODES else None
    text = str(value or "").strip()
    if text.isdigit():
        return int(text) if int(text) in EXIT_CODES else None
    for row in EXIT_CODES.values():
        if row.name == text:
            return row.code
    return None


def verdict(code, message, step=None, layer=None, failure_class=None, hint=None):
    """One host's verdict as data: the exit code and its name, where (step, layer), why (message),
    what kind of failure (failure_class) and what to do (hint; the table's hint when not given)."""
    number = code_of(code)
    if number is None:
        number = UNKNOWN
    row = describe(number)
    text = str(message or "").strip()
    return {
        "exit_code": row.code,
        "exit_name": row.name,
        "step": step or None,
        "layer": layer or None,
        "failure_class": failure_class if failure_class in FAILURE_CLASSES else None,
        "message": text.splitlines()[0].strip() if text else row.summary,
        "hint": "" if row.code == READY else (hint or row.hint),
    }


def verdict_of_report(report, step="waa_health"):
    """The probe's report (ready, exit_code, failed_layer, failure_class, message, hint) as a verdict."""
    if report.get("ready"):
        return verdict(READY, report.get("message") or "ready", step=step)
    code = report.get("exit_code")
    if not isinstance(code, int) or isinstance(code, bool) or code == READY:
        code = LAYER_EXIT_CODES.get(report.get("failed_layer") or "", UNKNOWN)
    return verdict(code, report.get("message"), step=step, layer=report.get("failed_layer"),
                   failure_class=report.get("failure_class"), hint=report.get("hint"))


# ------------------------------------------------------------------------------ reduction to one verdict
HEALTH_LAYERS = tuple(LAYER_EXIT_CODES)
SSH_CONNECTION_FAILED = 255  # ssh's exit status when the connection itself failed
# A host's status, decided by its verdict's data (docs/json-report.md).
STATUS_READY, STATUS_NOT_READY, STATUS_FAILED, STATUS_UNREACHABLE, STATUS_USAGE = (
    "ready", "not_ready", "failed", "unreachable", "usage")


def _first_line(text):
    stripped = str(text or "").strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def failure_message(result, task=""):
    """A failed task's own words (for a crashed module, with the last line of its stderr)."""
    message = _first_line(result.get("msg"))
    if message.startswith("MODULE FAILURE"):
        detail = [line for line in str(result.get("module_stderr") or result.get("module_stdout") or "").splitlines()
                  if line.strip()]
        if detail:
            message = "%s: %s" % (message, detail[-1].strip())
    return message or "task '%s' failed" % task


def verdict_in(result):
    """The verdict a task result carries, or None."""
    found = result.get(VERDICT_KEY) if isinstance(result, dict) else None
    if isinstance(found, dict) and isinstance(found.get("exit_code"), int) and not isinstance(found["exit_code"], bool):
        return found
    return None


def verdict_of_result(result, failed=False, unreachable=False, step=None, task=None):
    """The verdict of one task result: the one it carries; for a failure that carries none (nobody
    planned it: an import error, a crashed module) exit code 9 with its own words; an unreachable
    host, or a module whose SSH connection broke (rc 255), exit code 10. None for a plain success."""
    found = verdict_in(result)
    if found is not None:
        return found
    if unreachable or (failed and (result.get("unreachable") or result.get("rc") == SSH_CONNECTION_FAILED)):
        return verdict(UNREACHABLE, _first_line(result.get("msg")) or "unreachable", step=step)
    if failed:
        return verdict(UNKNOWN, failure_message(result, task or step or ""), step=step)
    return None


def status_of(found):
    """A host's status from its verdict: 0 ready, 64 usage, 10 unreachable, a verdict on a health
    layer not_ready, any other failed."""
    code = found.get("exit_code")
    if code == READY:
        return STATUS_READY
    if code == USAGE:
        return STATUS_USAGE
    if code == UNREACHABLE:
        return STATUS_UNREACHABLE
    return STATUS_NOT_READY if found.get("layer") in HEALTH_LAYERS else STATUS_FAILED


def host_line(host, found):
    """The one line per host that waa-run and the waa_summary callback print."""
    line = "%-16s %-11s %3d" % (host, status_of(found), found.get("exit_code"))
    if found.get("exit_code") == READY:
        return "%s  %s" % (line, found.get("message") or "ready")
    where = found.get("layer") or found.get("step")
    message = str(found.get("message") or "")
    if where and message.startswith(where + ": "):
        message = message[len(where) + 2:]
    return "%s  %s%s  hint: %s" % (line, (where + ": ") if where else "", message, found.get("hint") or "-")


def overall(exit_codes):
    """The run's code: 0 when every host is ready; the shared code when all failures agree; else
    NOT_ALL_READY."""
    failed = set(code for code in exit_codes if code != READY)
    if not failed:
        return READY
    if len(failed) == 1:
        return failed.pop()
    return NOT_ALL_READY
