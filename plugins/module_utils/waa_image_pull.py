# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pulling the WAA image with progress, stall detection, retries and a fallback registry.

A WAA image is 15-25 GB; from Docker Hub in a cloud region a pull takes 8-12 minutes and
sometimes stalls for good. The engine's own pull never gives up, so the stall has to be noticed
here: no new bytes for `stall_timeout` seconds aborts the attempt and retries with backoff.
Standard library only: this runs on the target host.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import random
import tempfile
import time


class PullError(Exception):
    """A pull attempt failed; `stalled` tells a stall (worth a retry) from a refusal."""

    def __init__(self, message, stalled=False):
        super(PullError, self).__init__(message)
        self.stalled = stalled


def split_reference(reference):
    """'reg:5000/a/b:tag@sha256:x' -> ('reg:5000/a/b', 'tag' or None, 'sha256:x' or None)."""
    digest = None
    if "@" in reference:
        reference, digest = reference.split("@", 1)
    tag = None
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        reference, tag = reference.rsplit(":", 1)
    return reference, tag, digest


def registry_of(repository):
    first = repository.split("/", 1)[0]
    if "/" in repository and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def with_registry(reference, registry):
    """Rewrite a reference to pull it from another registry (a mirror holding the same path)."""
    repository, tag, digest = split_reference(reference)
    path = repository
    if registry_of(repository):
        path = repository.split("/", 1)[1]
    out = "%s/%s" % (registry.rstrip("/"), path)
    if tag:
        out += ":" + tag
    if digest:
        out += "@" + digest
    return out


def registry_auth_header(username, password, registry):
    if not username:
        return None
    payload = {"username": username, "password": password or "", "serveraddress": registry or "docker.io"}
    return base64.urlsafe_b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")


class PullProgress(object):
    """Folds the engine's pull messages into bytes and layers done, for a progress line and a file."""

    DONE_STATES = ("Pull complete", "Already exists")

    def __init__(self, image, source, attempt, clock=time.time):
        self.image = image
        self.source = source
        self.attempt = attempt
        self.layers = {}
        self.status = "starting"
        self.clock = clock
        self.started = clock()
        self.last_growth = self.started

    def update(self, message):
        if message.get("error"):
            raise PullError(message.get("error"))
        layer = message.get("id")
        status = message.get("status", "")
        detail = message.get("progressDetail") or {}
        if layer and status not in ("Pulling from",) and not status.startswith("Pulling from"):
            entry = self.layers.setdefault(layer, {"current": 0, "total": 0, "done": False})
            if status == "Downloading" and detail.get("total"):
                if detail.get("current", 0) > entry["current"]:
                    self.last_growth = self.clock()
                entry["current"] = detail.get("current", 0)
                entry["total"] = detail.get("total", 0)
            elif status in ("Download complete", "Verifying Checksum"):
                entry["current"] = entry["total"]
                self.last_growth = self.clock()
            elif status in self.DONE_STATES:
                entry["current"] = entry["total"]
                entry["done"] = True
                self.last_growth = self.clock()
        if status:
            self.status = status if not layer else "%s %s" % (status, layer)

    def stalled_for(self):
        return self.clock() - self.last_growth

    def snapshot(self, done=False, failed=None):
        layers = list(self.layers.values())
        return {
            "image": self.image,
            "source": self.source,
            "attempt": self.attempt,
            "bytes_done": sum(item["current"] for item in layers),
            "bytes_total": sum(item["total"] for item in layers),
            "layers_done": sum(1 for item in layers if item["done"]),
            "layers_total": len(layers),
            "status": self.status,
            "elapsed_s": round(self.clock() - self.started, 1),
            "done": bool(done),
            "failed": failed,
        }


def write_progress(path, snapshot):
    """Atomically replace the progress file so a reader never sees half a document."""
    if not path:
        return
    directory = os.path.dirname(path) or "."
    handle, tmp = tempfile.mkstemp(prefix=".waa-pull-", dir=directory)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(snapshot, out)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_progress(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def backoff_delays(initial, factor, maximum, rng=random.random):
    delay = initial
    while True:
        yield min(maximum, delay) * (0.5 + rng() / 2.0)
        delay *= factor


def pull_once(messages, progress, stall_timeout, on_progress, report_every=0.5):
    """Consume one attempt's messages; raise PullError(stalled=True) when bytes stop growing."""
    last_report = 0.0
    for message in messages:
        progress.update(message)
        now = progress.clock()
        if progress.stalled_for() > stall_timeout:
            raise PullError("no progress for %ds (%s)" % (stall_timeout, progress.status), stalled=True)
        if now - last_report >= report_every:
            on_progress(progress.snapshot())
            last_report = now
    on_progress(progress.snapshot())
