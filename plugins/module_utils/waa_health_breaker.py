# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-container circuit breaker of the health probe, kept in a small JSON file on the host.

The state file is validated on read: anything malformed (not JSON, not an object, a count that is
not a non-negative integer, an `open_until` that is not a number of seconds) is treated as
closed, noted in `warning` (and so in the probe's result), and rewritten atomically (a temporary
file in the same directory, then os.replace) by the next probe allowed to write. Standard library
only.

    Breaker(name, threshold=3, reset_s=600, state_dir=None, now=time.time)
        .state -> "closed" | "open" | "half_open" | "disabled";  .describe() -> dict
        .record(success) -> changed?;  .save();  .warning (None or why the file was not used)
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import os
import re
import tempfile
import time

CLOSED, OPEN, HALF_OPEN, DISABLED = "closed", "open", "half_open", "disabled"
STATE_DIRS = ("/var/lib/waa/health", "~/.cache/waa/health")
MAX_STATE_BYTES = 64 * 1024  # the file holds two numbers


def _usable_dir(path):
    """The directory exists and is writable, or it can be created (its nearest existing parent is)."""
    probe = path
    while not os.path.isdir(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    return os.access(probe, os.W_OK | os.X_OK)


def default_state_dir():
    """/var/lib/waa/health when usable (root), else ~/.cache/waa/health, else the temp dir.
    Nothing is created here: the directory appears with the first state written."""
    for candidate in STATE_DIRS:
        candidate = os.path.expanduser(candidate)
        if _usable_dir(candidate):
            return candidate
    return os.path.join(tempfile.gettempdir(), "waa-health")


def iso(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


class Breaker(object):
    """A per-container circuit breaker kept in a small JSON file on the host.

    closed: probes run; failed waits are counted. open (after `threshold` failed waits in a row):
    every probe fails at once until `reset_s` seconds after the last failure. half_open (after
    that): probes run again; the next wait's success closes it, its failure re-opens it.
    """

    def __init__(self, name, threshold=3, reset_s=600, state_dir=None, now=time.time):
        self.name = name
        self.threshold = threshold
        self.reset_s = reset_s
        self.now = now
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.path = os.path.join(state_dir or default_state_dir(), "breaker-%s.json" % safe)
        self.error = None
        self.warning = None
        self.data = self._load()

    @property
    def enabled(self):
        return self.threshold > 0

    @staticmethod
    def _fresh():
        return {"consecutive_failures": 0, "open_until": None}

    def _load(self):
        """The validated state; a malformed file counts as closed and sets `warning`."""
        self.warning = None
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(MAX_STATE_BYTES + 1)
        except (IOError, OSError) as err:
            if getattr(err, "errno", None) != 2:  # missing: a fresh breaker, nothing to say
                self.warning = "cannot read the breaker's state %s (%s): treated as closed" % (self.path, err)
            return self._fresh()
        problem = None
        data = None
        if len(raw) > MAX_STATE_BYTES:
            problem = "larger than %d bytes" % MAX_STATE_BYTES
        else:
            try:
                data = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                problem = "not JSON (%s)" % str(err).split(":", 1)[0]
        if problem is None:
            problem = _invalid(data)
        if problem:
            self.warning = ("the breaker's state file %s was malformed (%s): treated as closed and rewritten"
                            % (self.path, problem))
            return self._fresh()
        return {"consecutive_failures": data.get("consecutive_failures", 0),
                "open_until": _number(data.get("open_until"))}

    def save(self):
        """Write the state atomically; a host where it cannot be written keeps probing (error noted)."""
        directory = os.path.dirname(self.path)
        tmp = None
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory)
            handle, tmp = tempfile.mkstemp(prefix=".breaker-", dir=directory)
            with os.fdopen(handle, "w") as out:
                json.dump(self.data, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            tmp = None
            self.error = None
        except (IOError, OSError) as err:
            self.error = "cannot write %s: %s" % (self.path, err)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    @property
    def state(self):
        if not self.enabled:
            return DISABLED
        until = self.data.get("open_until")
        if until is None:
            return CLOSED
        return OPEN if self.now() < until else HALF_OPEN

    def describe(self):
        until = self.data.get("open_until")
        info = {"state": self.state, "consecutive_failures": self.data.get("consecutive_failures", 0),
                "open_until": iso(until) if until else None, "threshold": self.threshold,
                "reset_s": self.reset_s, "file": self.path}
        if self.error:
            info["error"] = self.error
        if self.warning:
            info["warning"] = self.warning
        return info

    def record(self, success):
        """Count one wait's outcome; returns True when the state changed (and should be saved)."""
        if not self.enabled:
            return False
        before = dict(self.data)
        if success:
            self.data = self._fresh()
        else:
            failures = self.data.get("consecutive_failures", 0) + 1
            self.data["consecutive_failures"] = failures
            if failures >= self.threshold:
                self.data["open_until"] = self.now() + self.reset_s
        return self.data != before


def _number(value):
    return None if value is None else float(value)


def _invalid(data):
    """Why a decoded state is not usable, or None."""
    if not isinstance(data, dict):
        return "not a JSON object but %s" % type(data).__name__
    failures = data.get("consecutive_failures", 0)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        return "consecutive_failures is %r, not a count" % (failures,)
    until = data.get("open_until")
    if until is not None:
        if isinstance(until, bool) or not isinstance(until, (int, float)):
            return "open_until is a %s, not seconds" % type(until).__name__
        if not math.isfinite(until) or until < 0:
            return "open_until is %r" % (until,)
    return None
