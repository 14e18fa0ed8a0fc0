# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for readiness: exponential backoff with jitter under a deadline, and a circuit breaker.

Fixed sleeps either waste minutes (a 30 s sleep before the first look) or hammer a booting VM;
backoff notices readiness within a fraction of a second early on and stays cheap later. The
breaker (waa_health_breaker), persisted on the host, stops restart storms: after N failed waits
in a row the next probe fails at once until the breaker's reset time.

The deadline bounds everything: the backoff sleep is cut at it, and an attempt that the deadline
cuts (a layer left unchecked because no usable request time was left) never replaces the last
checked verdict: the report is that earlier attempt's, marked timed out. Standard library only.

Public API::

    Backoff(initial=0.25, factor=1.6, maximum=1.0, jitter=0.2, rng=random.random).next() -> seconds
    Breaker(...)                          # waa_health_breaker (re-exported here)
    probe(prober, layers, wait=False, timeout=600.0, backoff=None, breaker=None, force=False,
          persist=True, clock=monotonic, sleep=time.sleep, stall_timeout=0.0, storage_path=None,
          progress=None) -> report (waa_health.summarize + "breaker", + "progress" for a wait)

A wait also follows progress (waa_health_progress): it ends "stalled" after `stall_timeout`
seconds in which nothing moved (the storage disk image, the boot status page, the layer reached,
the screen), before the hard cap `timeout`; a wait the cap ends while things still moved says
"still progressing at the cap". Both carry `progress` as data.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import time

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import (
    Deadline, cut_by_deadline, monotonic, summarize,
)
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_breaker import (  # noqa: F401 (re-exported)
    CLOSED, DISABLED, HALF_OPEN, OPEN, STATE_DIRS, Breaker, default_state_dir, iso,
)
try:
    from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_progress import STALL_HINT, Progress
except ImportError:  # a copy of the probe without it (a host agent's lib dir): waits follow the cap only
    STALL_HINT, Progress = "%s", None

CIRCUIT_LAYER = "circuit_breaker"
# The breaker's names stay importable from here, where the first callers found them.
__all__ = ["Backoff", "probe", "stops_the_wait", "circuit_open_report", "CIRCUIT_LAYER",
           "CLOSED", "DISABLED", "HALF_OPEN", "OPEN", "STATE_DIRS", "Breaker", "default_state_dir", "iso"]


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


def stalled_report(report, progress):
    """The report of a wait that stalled: the layer's own exit code and class, a message and a hint
    that say it stalled (not timed out: the cap did not end it)."""
    failed = report["layers"][-1] if report["layers"] and not report["layers"][-1]["healthy"] else None
    report["message"] = progress.stalled_message(failed)
    seconds = ("%d" % progress.stall_timeout) if progress.stall_timeout == int(progress.stall_timeout) \
        else ("%.1f" % progress.stall_timeout)
    report["hint"] = STALL_HINT % seconds
    report["timed_out"] = False
    return report


def probe(prober, layers, wait=False, timeout=600.0, backoff=None, breaker=None, force=False, persist=True,
          clock=monotonic, sleep=time.sleep, stall_timeout=0.0, storage_path=None, progress=None):
    """Evaluate once, or wait until ready, a failure that waiting cannot cure, or the deadline.

    `timeout` is the deadline of the whole call (a single probe included); a report that the
    deadline ended says timed_out. The breaker counts failed waits only; a wait's success, or a
    forced probe's success, closes it. Nothing is written when persist is false (check mode) or
    for a plain single probe (report only), except that a malformed state file is rewritten
    (closed) whenever persisting is allowed. A wait follows progress (see the module docstring):
    `stall_timeout` 0 turns the stall detection off; `storage_path` is the host directory mounted
    as the container's /storage (None: no disk signal).
    """
    started = clock()
    if breaker is not None and persist and breaker.warning and breaker.enabled:
        breaker.save()  # malformed on read: treated as closed, rewritten atomically
    if breaker is not None and breaker.state == OPEN and not force:
        report = circuit_open_report(breaker, layers, started, clock)
        report["breaker"] = breaker.describe()
        return report
    deadline = Deadline(timeout, clock)
    backoff = backoff or Backoff()
    if wait and progress is None and Progress is not None:
        progress = Progress(stall_timeout, storage_path, clock=clock)
    follow = wait and progress is not None
    attempt = 0
    checked = None  # the results of the last attempt the deadline did not cut
    while True:
        attempt += 1
        results = prober.evaluate(layers, deadline, attempt)
        cut = cut_by_deadline(results)
        if cut and checked is not None:
            results = checked
        elif follow and not cut:
            progress.observe(results)
        report = summarize(results, layers, started, clock, attempts=attempt)
        if report["ready"]:
            break
        if cut or deadline.expired():
            report = summarize(results, layers, started, clock, attempts=attempt, timed_out_after=timeout)
            if follow and progress.changes and report["layers"] and not report["layers"][-1]["healthy"]:
                report["message"] = progress.cap_message(report["layers"][-1], timeout)
            break
        if not wait or stops_the_wait(report):
            break
        if follow and progress.stalled():
            report = stalled_report(report, progress)
            break
        checked = results
        sleep(min(backoff.next(), deadline.remaining(), progress.stall_in() if follow else float("inf")))
    if follow:
        report["progress"] = progress.describe()
    if breaker is not None:
        counts = wait or (force and report["ready"])
        if persist and counts and breaker.record(report["ready"]):
            breaker.save()
        report["breaker"] = breaker.describe()
    return report
