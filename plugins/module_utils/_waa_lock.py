# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host-side lock of a WAA container: a lease file that keeps two runs apart, whichever
controller, inventory spelling, limit pattern or state directory they come from.

    /run/lock/openadapt-waa/<container>.lock   {"run_id", "what", "controller", "pid", "since",
                                                "expires_at", "boot_id", "pidns", "pid_start"}

Taking, renewing and releasing happen under an flock of <container>.guard, held only for the
read-check-write (an flock dies with its process, so the guard is never stale). The lease itself
is stale, and is taken over, when it expired, when the host rebooted since (other boot_id), when
its holder ran on this machine (same boot and pid namespace) and that process is gone, or when the
caller says its own controller holds no other run on this host (`takeover_own`: waa-run holds a
controller-side lock per host, so a lease of the same controller is a killed run's).
Standard library only: this runs on the target host.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import json
import os
import re
import tempfile
import time

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes

DEFAULT_DIR = "/run/lock/openadapt-waa"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class LockError(Exception):
    """The lock cannot be used (bad name, directory not writable)."""


class Busy(Exception):
    """Another live run holds the lease; `holder` is its record."""

    def __init__(self, message, holder):
        super(Busy, self).__init__(message)
        self.holder = holder


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def boot_id():
    return (_read("/proc/sys/kernel/random/boot_id") or "").strip()


def pid_namespace():
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_start(pid):
    """Start time of a live process (clock ticks since boot), None when it does not exist."""
    text = _read("/proc/%d/stat" % int(pid)) if str(pid).isdigit() else None
    if not text:
        return None
    try:
        fields = text.rsplit(")", 1)[1].split()
    except IndexError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _ppid(pid):
    text = _read("/proc/%d/stat" % pid)
    try:
        return int(text.rsplit(")", 1)[1].split()[1]) if text else 0
    except (IndexError, ValueError):
        return 0


def ancestor_controller(pid=None):
    """The ansible-playbook process above this one, when it runs on this machine (local
    connection): the pid whose death makes a lease stale. None over SSH."""
    pid = _ppid(pid or os.getpid())
    for _step in range(64):
        if pid <= 1:
            return None
        cmdline = (_read("/proc/%d/cmdline" % pid) or "").split("\0")
        if any(os.path.basename(part) == "ansible-playbook" for part in cmdline[:3]):
            return pid
        pid = _ppid(pid)
    return None


def lock_path(name, directory=DEFAULT_DIR):
    if not NAME.match(name or ""):
        raise LockError("lock name %r: use letters, digits, '.', '_' and '-'" % (name,))
    return os.path.join(directory, name + ".lock")


def describe(holder):
    if not isinstance(holder, dict):
        return "another run"
    where = holder.get("controller") or "an unknown controller"
    pid = " pid %s" % holder["pid"] if holder.get("pid") else ""
    return "run %s (%s,%s on %s, started %s)" % (
        holder.get("run_id") or "?", holder.get("what") or "a run", pid, where, holder.get("since") or "?")


def stale_reason(holder, owner, now=None, takeover_own=False):
    """Why `holder`'s lease no longer holds (a string), or None while it does."""
    now = time.time() if now is None else now
    if not isinstance(holder, dict):
        return "unreadable lease"
    try:
        if float(holder.get("expires_at")) <= now:
            return "expired"
    except (TypeError, ValueError):
        return "lease without an expiry"
    if holder.get("boot_id") and holder.get("boot_id") != boot_id():
        return "the host rebooted since"
    if holder.get("pid") and holder.get("pid_start") and holder.get("boot_id") == boot_id() \
            and holder.get("pidns") == pid_namespace() and process_start(holder["pid"]) != holder["pid_start"]:
        return "its process %s is gone" % holder["pid"]
    if takeover_own and owner.get("controller") and holder.get("controller") == owner.get("controller") \
            and holder.get("run_id") != owner.get("run_id"):
        return "a run of this controller that no longer runs"
    return None


class HostLock(object):
    """acquire / renew / release one container's lease on this host."""

    def __init__(self, name, directory=DEFAULT_DIR):
        self.name = name
        self.directory = directory
        self.path = lock_path(name, directory)
        self.guard_path = os.path.join(directory, name + ".guard")

    def _guard(self):
        try:
            if not os.path.isdir(self.directory):
                os.makedirs(self.directory, 0o755)
            fd = os.open(self.guard_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise LockError("lock directory %s: %s" % (self.directory, err))
        fcntl.flock(fd, fcntl.LOCK_EX)  # held only for a read and a write: never long
        return fd

    def read(self):
        text = _read(self.path)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return {"unreadable": True}

    def _write(self, record):
        fd, tmp = tempfile.mkstemp(prefix=".%s." % self.name, dir=self.directory)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(record, out)
            os.chmod(tmp, 0o644)
            os.rename(tmp, self.path)
        except Exception:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _record(self, owner, ttl, now, since=None):
        record = {
            "run_id": owner.get("run_id"), "what": owner.get("what") or "a run",
            "controller": owner.get("controller") or "",
            "since": since or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "expires_at": now + ttl, "boot_id": boot_id(), "pidns": pid_namespace(),
            "pid": owner.get("pid"), "pid_start": None,
        }
        local = owner.get("boot_id") == record["boot_id"] and owner.get("pidns") == record["pidns"]
        if owner.get("pid") and local:
            record["pid_start"] = process_start(owner["pid"])
        elif not owner.get("pid"):
            record["pid"] = ancestor_controller()
            record["pid_start"] = process_start(record["pid"]) if record["pid"] else None
        return record

    def try_acquire(self, owner, ttl, takeover_own=False, now=None):
        """(changed, previous stale holder or None); Busy while a live run holds it."""
        now = time.time() if now is None else now
        fd = self._guard()
        try:
            holder = self.read()
            if holder is not None and holder.get("run_id") == owner.get("run_id"):
                self._write(self._record(owner, ttl, now, since=holder.get("since")))
                return False, None
            reason = stale_reason(holder, owner, now, takeover_own) if holder is not None else None
            if holder is not None and reason is None:
                raise Busy("busy: %s is working on container %s on this host; wait for it to finish or pass "
                           "--wait-lock SECONDS" % (describe(holder), self.name), holder)
            self._write(self._record(owner, ttl, now))
            return True, (dict(holder, stale=reason) if holder is not None else None)
        finally:
            os.close(fd)

    def acquire(self, owner, ttl, wait_s=0.0, takeover_own=False, clock=time.time, sleep=time.sleep):
        """Take the lease, waiting up to `wait_s` seconds for a live holder; Busy after that."""
        deadline = clock() + max(0.0, wait_s)
        delay = 0.2
        waited = False
        while True:
            try:
                changed, stale = self.try_acquire(owner, ttl, takeover_own)
                return changed, stale, waited
            except Busy as busy:
                remaining = deadline - clock()
                if remaining <= 0:
                    if wait_s > 0:
                        raise Busy(str(busy).replace("; wait for it", " (waited %ds); wait for it" % wait_s),
                                   busy.holder)
                    raise
                waited = True
                sleep(min(delay, remaining))
                delay = min(2.0, delay * 2)

    def renew(self, owner, ttl, now=None):
        """Extend our lease; LockError when it is not ours (any more)."""
        now = time.time() if now is None else now
        fd = self._guard()
        try:
            holder = self.read()
            if not holder or holder.get("run_id") != owner.get("run_id"):
                raise LockError("the lock of container %s is not held by run %s (now: %s)"
                                % (self.name, owner.get("run_id"), describe(holder) if holder else "free"))
            self._write(self._record(owner, ttl, now, since=holder.get("since")))
        finally:
            os.close(fd)

    def release(self, owner):
        """Drop our lease; True when one was dropped (a lease of another run is left alone)."""
        fd = self._guard()
        try:
            holder = self.read()
            if holder and holder.get("run_id") == owner.get("run_id"):
                try:
                    os.unlink(self.path)
                except OSError as err:
                    if err.errno != errno.ENOENT:
                        raise
                return True
            return False
        finally:
            os.close(fd)


class LockFailure(Exception):
    """The run cannot have the lock: `message`, its verdict and the holder (empty when none)."""

    def __init__(self, message, verdict, holder=None, exit_code=None):
        super(LockFailure, self).__init__(message)
        self.message = message
        self.verdict = verdict
        self.holder = holder or {}
        self.exit_code = exit_code if exit_code is not None else verdict["exit_code"]


def run_owner(owner):
    """The owner record of a run as the modules get it (run_id required, pid a number or None)."""
    owner = dict(owner or {})
    if not owner.get("run_id"):
        raise LockFailure("waa_lock: owner.run_id is required (one id per run)",
                          codes.verdict("usage", "waa_lock: owner.run_id is required", step="lock"))
    if owner.get("pid") is not None:
        try:
            owner["pid"] = int(owner["pid"])
        except (TypeError, ValueError):
            owner["pid"] = None
    return owner


def take(name, owner, ttl, wait_s=0.0, takeover_own=False, directory=DEFAULT_DIR):
    """Take the lease for one run: (HostLock, result {changed, holder, waited[, took_over]}).

    The one way the modules acquire (waa_lock, and waa_health_probe's `lock`): a live holder is
    LockFailure with the busy verdict (exit 12), an unusable lock directory the unknown one."""
    try:
        host_lock = HostLock(name, directory)
        changed, stale, waited = host_lock.acquire(owner, ttl, wait_s=wait_s, takeover_own=takeover_own)
        result = dict(changed=changed, holder=host_lock.read(), waited=waited)
    except Busy as busy:
        message = str(busy)
        raise LockFailure(message, codes.verdict("busy", message, step="lock", failure_class="transient"),
                          holder=busy.holder, exit_code=codes.BUSY)
    except (LockError, IOError, OSError) as err:
        message = "the lock of %s cannot be used: %s" % (name, err)
        raise LockFailure(message, codes.verdict("unknown", message, step="lock"))
    if stale:
        result["took_over"] = stale
    return host_lock, result
