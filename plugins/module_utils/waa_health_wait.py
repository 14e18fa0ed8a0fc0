# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for readiness: exponential backoff with jitter under a deadline, and a circuit breaker.

Fixed sleeps either waste minutes (a 30 s sleep before the first look) or hammer a booting VM;
backoff notices readiness within a fraction of a second early on and stays cheap later. The
breaker, persisted on the host, stops restart storms: after N failed waits in a row the next
probe fails at once until the breaker's reset time. Standard library only.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import random
import re
import tempfile
import time
from datetime import datetime

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import Deadline, monotonic, summarize

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Backoff(object):
    """Delays initial, initial*factor, ... capped at maximum, each scaled by a jitter in [1-j, 1]."""

    def __init__(self, initial=0.25, factor=1.6, maximum=1.0, jitter=0.2, rng=random.random):
        self.delay = initial
        self.factor = factor
        self.maximum = maximum
        self.jitter = jitter
        self.rng = rng

    def next(self):
        delay = min(self.maximum, self.delay) * (1.0 - self.jitter * self.rng())
        self.delay = min(self.maximum, self.delay * self.factor)
        return delay


def default_state_dir():
    for candidate in ("/var/lib/waa/health", os.path.expanduser("~/.cache/waa/health")):
        try:
            os.makedirs(candidate, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    return tempfile.gettempdir()


def iso(timestamp):
    return datetime.utcfromtimestamp(timestamp).strftime("%Y-%m-%dT%H:%M:%SZ")


class Breaker(object):
    """A per-container circuit breaker kept in a small JSON file on the host."""

    def __init__(self, name, threshold=3, reset_s=600, state_dir=None, now=time.time):
        self.threshold = threshold
        self.reset_s = reset_s
        self.now = now
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.path = os.path.join(state_dir or default_state_dir(), "breaker-%s.json" % safe)
        self.data = self._load()

    @property
    def enabled(self):
        return self.threshold > 0

    def _load(self):
        try:
            with open(self.path) as handle:
                data = json.load(handle)
            if isinstance(data, dict):
                return data
        except (IOError, OSError, ValueError):
            pass
        return {"consecutive_failures": 0, "open_until": None}

    def save(self):
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory)
        handle, tmp = tempfile.mkstemp(prefix=".breaker-", dir=directory)
        with os.fdopen(handle, "w") as out:
            json.dump(self.data, out)
        os.rename(tmp, self.path)

    @property
    def state(self):
        until = self.data.get("open_until")
        if not self.enabled or until is None:
            return CLOSED
        return OPEN if self.now() < until else HALF_OPEN

    def describe(self):
        until = self.data.get("open_until")
        return {"state": self.state, "consecutive_failures": self.data.get("consecutive_failures", 0),
                "open_until": iso(until) if until else None, "threshold": self.threshold, "file": self.path}

    def record(self, success):
        if not self.enabled:
            return
        if success:
            self.data = {"consecutive_failures": 0, "open_until": None}
        else:
            failures = self.data.get("consecutive_failures", 0) + 1
            self.data["consecutive_failures"] = failures
            if failures >= self.threshold:
                self.data["open_until"] = self.now() + self.reset_s


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
        ready=False, failed_layer="circuit_breaker", failure_class=codes.PERMANENT,
        exit_code=codes.CIRCUIT_OPEN, hint=codes.EXIT_CODES[codes.CIRCUIT_OPEN].hint,
        message="circuit_breaker: circuit open until %s after %d failed waits" % (
            info["open_until"], info["consecutive_failures"]))
    return report


def probe(prober, layers, wait=False, timeout=600.0, backoff=None, breaker=None, force=False, persist=True,
          clock=monotonic, sleep=time.sleep):
    """Evaluate once, or wait until ready, a failure that waiting cannot cure, or the deadline."""
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
            report = summarize(results, layers, started, clock, attempts=attempt, timed_out_after=int(round(timeout)))
            break
        sleep(min(backoff.next(), deadline.remaining()))
    if breaker is not None:
        if wait and persist:
            breaker.record(report["ready"])
            breaker.save()
        report["breaker"] = breaker.describe()
    return report
