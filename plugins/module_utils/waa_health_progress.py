# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deadlines that follow progress: what a long wait watches, and when it calls the host stalled.

A fixed deadline fails healthy slow work (a first boot installs Windows for ~20 min) or waits far
too long for a host that has really stalled. So a wait also tracks PROGRESS signals, cheapest
first, and ends "stalled" after `stall_timeout` seconds in which none of them moved; the hard cap
(the wait's timeout) still bounds everything. The signals:

- disk: the files under the host's storage directory (the container's /storage: data.img, the
  sparse Windows disk, grows while Windows installs; windows.boot appears when it is done): their
  count, sizes, allocated bytes and newest mtime, from lstat only (nothing is read), at most
  MAX_ENTRIES entries MAX_DEPTH directories deep;
- status_page: the text of the boot status page on 8006 (/msg.html), which the vm_boot layer
  already reads ("Installing Windows (40%)...");
- layer: the furthest layer the probe reached (only advancing counts);
- screen: a digest of the screen the vm_boot layer already reads (QMP screendump or /screenshot).

Nothing here makes a request of its own. Standard library only: this runs on the target host.

Public API::

    Progress(stall_timeout=0.0, storage_path=None, clock=monotonic, scan=scan_storage)
    Progress.observe(results) -> [names of the signals that moved]   # after each probe attempt
    Progress.stalled() / .quiet_s() / .stall_in()
    Progress.describe() -> {stalled, stall_timeout_s, last_progress_s_ago, changes, last_change, signals}
    Progress.stalled_message(failed) / .cap_message(failed, timeout) / .no_progress() / .last_progress()
    scan_storage(path, max_entries=MAX_ENTRIES, max_depth=MAX_DEPTH) -> disk signal dict
    human_bytes(n) -> "1.2 GiB"
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat
import time

MAX_ENTRIES = 256  # /storage holds a handful of files (data.img, windows.boot, a few of dockur's)
MAX_DEPTH = 2  # the storage directory and its subdirectories (dockur extracts into /storage/tmp)
SIGNALS = ("disk", "status_page", "layer", "screen")
LAYER_ORDER = ("docker_daemon", "container", "vm_boot", "waa_server", "accessibility")
STALL_HINT = ("nothing progressed for %s s (disk image, boot status page, layer, screen): the install or boot "
              "has stalled; restart the container once (`waa-run server-start`); a first boot that stalls again "
              "needs a fresh /storage (remove data.img); raise waa_health_stall_timeout if this host is only slow")


def monotonic():
    return time.monotonic() if hasattr(time, "monotonic") else time.time()


def human_bytes(value):
    value = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0
    return "%.1f TiB" % value  # pragma: no cover


def _seconds(value):
    value = float(value)
    return ("%d" % value) if value == int(value) else ("%.1f" % value)


def scan_storage(path, max_entries=MAX_ENTRIES, max_depth=MAX_DEPTH):
    """The disk signal of a storage directory: files, size, allocated bytes, newest mtime (lstat only).

    Bounded: at most `max_entries` entries, `max_depth` directory levels, symlinks never followed.
    A directory that cannot be read gives {"error": ...} (no progress from the disk then).
    """
    found = {"files": 0, "size": 0, "allocated": 0, "mtime_ns": 0, "truncated": False}
    pending = [(path, 1)]
    seen = 0
    try:
        while pending:
            directory, depth = pending.pop()
            for entry in os.scandir(directory):
                seen += 1
                if seen > max_entries:
                    found["truncated"] = True
                    return found
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    if depth < max_depth:
                        pending.append((entry.path, depth + 1))
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                found["files"] += 1
                found["size"] += info.st_size
                found["allocated"] += getattr(info, "st_blocks", 0) * 512
                found["mtime_ns"] = max(found["mtime_ns"], getattr(info, "st_mtime_ns", int(info.st_mtime * 1e9)))
    except OSError as err:
        return {"error": "%s: %s" % (path, err.strerror or err)}
    return found


def disk_text(disk):
    if not disk:
        return "disk -"
    if disk.get("error"):
        return "disk unreadable (%s)" % disk["error"]
    return "disk %s allocated of %s in %d file%s" % (
        human_bytes(disk["allocated"]), human_bytes(disk["size"]), disk["files"], "" if disk["files"] == 1 else "s")


def _failed(results):
    return next((r for r in results if not r.get("healthy")), None)


class Progress(object):
    """The progress signals of one wait and the time anything last moved.

    observe() after every probe attempt the deadline did not cut; the first call is the baseline.
    stall_timeout 0 turns stall detection off (the signals are still tracked and reported).
    """

    def __init__(self, stall_timeout=0.0, storage_path=None, clock=monotonic, scan=scan_storage):
        if stall_timeout < 0:
            raise ValueError("stall_timeout must not be negative")
        self.stall_timeout = float(stall_timeout or 0)
        self.storage_path = storage_path or None
        self.clock = clock
        self.scan = scan
        self.started = clock()
        self.last_progress_at = self.started
        self.values = {}  # signal -> comparable value
        self.shown = {}  # signal -> what the report shows
        self.changes = 0
        self.last_change = []
        self.furthest = -1
        self.where = None  # the boot step or the layer the host was at

    # -- the signals ---------------------------------------------------------------------------
    def _sample(self, results):
        values, shown = {}, {}
        if self.storage_path:
            disk = self.scan(self.storage_path)
            shown["disk"] = disk
            if not disk.get("error"):
                values["disk"] = (disk["files"], disk["size"], disk["allocated"], disk["mtime_ns"])
        failed = _failed(results)
        layer = failed["layer"] if failed else "ready"
        shown["layer"] = layer
        details = {}
        for result in results:
            if result.get("layer") == "vm_boot":
                details = result.get("details") or {}
        step = details.get("step")
        shown["status_page"] = step
        if step is not None:
            values["status_page"] = step
        digest = details.get("screen_digest")
        shown["screen"] = digest
        if digest:
            values["screen"] = digest
        self.where = step if (failed and failed["layer"] == "vm_boot" and step) else layer
        return values, shown

    def observe(self, results):
        """Take the signals after one attempt; returns the names of those that moved."""
        now = self.clock()
        values, shown = self._sample(results)
        moved = []
        first = not self.shown
        layer = shown["layer"]
        index = len(LAYER_ORDER) if layer == "ready" else (
            LAYER_ORDER.index(layer) if layer in LAYER_ORDER else self.furthest)
        if index > self.furthest:
            if not first:
                moved.append("layer")
            self.furthest = index
        if not first:
            # the disk and the screen: a new value that differs from the last one seen; the status
            # page: any change, its disappearance included (dockur removes it when QEMU starts)
            for name in ("disk", "screen"):
                if name in values and values[name] != self.values.get(name, values[name]):
                    moved.append(name)
                elif name == "screen" and name in values and name not in self.values:
                    moved.append(name)
            if values.get("status_page") != self.values.get("status_page"):
                moved.append("status_page")
        for name in ("disk", "screen"):  # a reading that failed keeps the last one
            if name in values:
                self.values[name] = values[name]
        self.values["status_page"] = values.get("status_page")
        self.shown = shown
        if moved:
            self.changes += 1
            self.last_change = moved
            self.last_progress_at = now
        return moved

    # -- the clock -----------------------------------------------------------------------------
    def quiet_s(self):
        return max(0.0, self.clock() - self.last_progress_at)

    def stalled(self):
        return self.stall_timeout > 0 and self.quiet_s() >= self.stall_timeout

    def stall_in(self):
        """Seconds until the wait would be stalled (infinity with stall detection off)."""
        if self.stall_timeout <= 0:
            return float("inf")
        return max(0.0, self.stall_timeout - self.quiet_s())

    # -- what the report says -------------------------------------------------------------------
    def signal_texts(self):
        texts = []
        if self.storage_path:
            texts.append(disk_text(self.shown.get("disk")))
        if self.shown.get("status_page") is not None:
            texts.append("status page '%s'" % self.shown["status_page"])
        texts.append("layer %s" % self.shown.get("layer", "-"))
        if self.shown.get("screen"):
            texts.append("screen %s" % self.shown["screen"][:12])
        return texts

    def no_progress(self):
        return ", ".join(self.signal_texts())

    def last_progress(self):
        """What moved last, in words."""
        if not self.changes:
            return "none"
        words = []
        for name in self.last_change:
            if name == "disk":
                words.append(disk_text(self.shown.get("disk")).replace("disk ", "disk grew to ", 1))
            elif name == "status_page":
                words.append("status page '%s'" % self.shown.get("status_page"))
            elif name == "layer":
                words.append("reached %s" % self.shown.get("layer"))
            else:
                words.append("screen changed")
        return ", ".join(words)

    def stalled_message(self, failed):
        """`<layer>: stalled at <step or layer> for S s (no progress: ...)[: <layer message>]`."""
        layer = failed["layer"] if failed else "ready"
        text = "%s: stalled at %s for %s s (no progress: %s)" % (
            layer, self.where or layer, _seconds(self.stall_timeout), self.no_progress())
        if failed and self.where == layer:
            text += ": %s" % failed["message"]
        return text

    def cap_message(self, failed, timeout):
        """`<layer>: still progressing at the cap (deadline X s; last progress N s ago: ...): <message>`."""
        layer = failed["layer"] if failed else "ready"
        return "%s: still progressing at the cap (deadline %s s; last progress %s s ago: %s): %s" % (
            layer, _seconds(timeout), _seconds(round(self.quiet_s(), 1)), self.last_progress(),
            failed["message"] if failed else "")

    def describe(self):
        signals = {}
        if self.storage_path:
            signals["disk"] = self.shown.get("disk")
        signals["status_page"] = self.shown.get("status_page")
        signals["layer"] = self.shown.get("layer")
        signals["screen"] = self.shown.get("screen")
        return {
            "stalled": self.stalled(),
            "stall_timeout_s": self.stall_timeout,
            "last_progress_s_ago": round(self.quiet_s(), 1),
            "changes": self.changes,
            "last_change": list(self.last_change),
            "where": self.where,
            "signals": signals,
        }
