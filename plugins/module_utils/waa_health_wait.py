# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for readiness: exponential backoff with jitter under a deadline, and a circuit breaker.

Fixed sleeps either waste minutes (a 30 s sleep before the first look) or hammer a booting VM;
backoff notices readiness within a fraction of a second early on and stays cheap later. The
breaker, persisted on the host, stops restart storms: after N failed waits in a row the next
probe fails at once until the breaker's reset time. Standard library only.

Public API::

    Backoff(initial=0.25, factor=1.6, maximum=1.0, jitter=0.2, rng=random.random).next() -> seconds
    Breaker(name, threshold=3, reset_s=600, state_dir=None, now=time.time)
        .state -> "closed" | "open" | "half_open" | "disabled";  .describe() -> dict
    probe(prober, layers, wait=False, timeout=600.0, backoff=None, breaker=None, force=False,
          persist=True, clock=monotonic, sleep=time.sleep) -> report (waa_health.summarize + "breaker")
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import random
import re
import tempfile
import time

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import Deadline, monotonic, summarize

CLOSED, OPEN, HALF_OPEN, DISABLED = "closed", "open", "half_open", "disabled"
STATE_DIRS = ("/var/lib/waa/health", "~/.cache/waa/health")
CIRCUIT_LAYER = "circuit_breaker"


class Backoff(object):
    """Delays initial, initial*factor, ... capped at maximum, each scaled by a jitter in [1-j, 1]."""

    def __init__(self, initial=0.25, factor=1.6, maximum=1.0, jitter=0.2, rng=random.random):
        if initial <= 0 or maximum <= 0 or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs initial > 0, maximum > 0, factor >= 1 and 0 <= jitter < 1")
        self.delay = initial
        self.factor = factor
        self.maximum = maximum
        self.jitter = jitter
        self.rng = rng

    def next(self):
        delay = min(self.maximum, self.delay) * (1.0 - self.jitter * self.rng())
        self.delay = min(self.maximum, self.delay * self.factor)
        return delay


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
        self.data = self._load()

    @property
    def enabled(self):
        return self.threshold > 0

    @staticmethod
    def _fresh():
        return {"consecutive_failures": 0, "open_until": None}

    def _load(self):
        try:
            with open(self.path) as handle:
                data = json.load(handle)
            if isinstance(data, dict) and isinstance(data.get("consecutive_failures", 0), int):
                return dict(self._fresh(), **data)
        except (IOError, OSError, ValueError):
            pass
        return self._fresh()

    def save(self):
        """Write the state atomically; a host where it cannot be written keeps probing (error noted)."""
        directory = os.path.dirname(self.path)
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory)
            handle, tmp = tempfile.mkstemp(prefix=".breaker-", dir=directory)
            with os.fdopen(handle, "w") as out:
                json.dump(self.data, out)
            os.rename(tmp, self.path)
            self.error = None
        except (IOError, OSError) as err:
            self.error = "cannot write %s: %s" % (self.path, err)

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


def stops_the_wait(report):
    """A failure that waiting cannot cure: a permanent one, or a container that is not coming back."""
    if report["ready"]:
        return True
    if report["failure_class"] == codes.PERMANENT:
        return True
    failed = report["layers"][-1] if report["layers"] else {}
    return failed.get("layer") == "container" and not failed.get("details", {}).get("restarting")


def circuit_open_report(breaker, layers, started, clock):
    report = summarize([], layers, started, clock)
    info = breaker.describe()
    report.update(
        ready=False, failed_layer=CIRCUIT_LAYER, failure_class=codes.PERMANENT,
        exit_code=codes.CIRCUIT_OPEN, hint=codes.EXIT_CODES[codes.CIRCUIT_OPEN].hint,
        message="%s: circuit open until %s after %d failed waits" % (
            CIRCUIT_LAYER, info["open_until"], info["consecutive_failures"]))
    return report


def probe(prober, layers, wait=False, timeout=600.0, backoff=None, breaker=None, force=False, persist=True,
          clock=monotonic, sleep=time.sleep):
    """Evaluate once, or wait until ready, a failure that waiting cannot cure, or the deadline.

    `timeout` is the deadline of the whole call (a single probe included). The breaker counts
    failed waits only; a wait's success, or a forced probe's success, closes it. Nothing is
    written when persist is false (check mode) or for a plain single probe (report only).
    """
    started = clock()
    if breaker is not None and breaker.state == OPEN and not force:
        report = circuit_open_report(breaker, layers, started, clock)
        report["breaker"] = breaker.describe()
        return report
    deadline = Deadline(timeout, clock)
    backoff = backoff or Backoff()
    attempt = 0
    while True:
        attempt += 1
        results = prober.evaluate(layers, deadline, attempt)
        report = summarize(results, layers, started, clock, attempts=attempt)
        if not wait or stops_the_wait(report):
            break
        if deadline.expired():
            report = summarize(results, layers, started, clock, attempts=attempt, timed_out_after=timeout)
            break
        sleep(min(backoff.next(), deadline.remaining()))
    if breaker is not None:
        counts = wait or (force and report["ready"])
        if persist and counts and breaker.record(report["ready"]):
            breaker.save()
        report["breaker"] = breaker.describe()
    return report
