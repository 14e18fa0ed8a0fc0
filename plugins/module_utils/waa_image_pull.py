# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pulling the WAA image with progress, stall detection, retries and a fallback registry.

A WAA image is 15-25 GB; from Docker Hub in a cloud region a pull takes 8-12 minutes and
sometimes stalls for good. The engine's own pull never gives up, so the stall has to be noticed
here: no new bytes for `stall_timeout` seconds aborts the attempt and retries with backoff.
Standard library only: this runs on the target host.

The pull itself runs in a detached worker process (see `spawn_worker`): the credentials reach it
through a pipe, never a file; it ends itself when its lease is not renewed or at its hard cap.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2 is not supported on targets
    from urllib import quote  # type: ignore

from ansible_collections.openadapt.waa.plugins.module_utils import waa_docker_api as docker_api


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

    def bytes(self):
        layers = list(self.layers.values())
        return sum(item["current"] for item in layers), sum(item["total"] for item in layers)

    def progress(self, stall_timeout=0, stalled=False):
        """The same shape as the health probe's `progress` (waa_health_progress): did a stall end
        the attempt, how long ago the bytes last grew, and the signals (bytes and layers)."""
        done, total = self.bytes()
        return {
            "stalled": bool(stalled),
            "stall_timeout_s": stall_timeout,
            "last_progress_s_ago": round(self.stalled_for(), 1),
            "where": "pull",
            "signals": {"bytes_done": done, "bytes_total": total,
                        "layers_done": sum(1 for item in self.layers.values() if item["done"]),
                        "layers_total": len(self.layers)},
        }

    def stalled_message(self, stall_timeout, why):
        """`stalled at pull for S s (N bytes of M): why` - the wording of a stalled health wait."""
        done, total = self.bytes()
        return "stalled at pull for %s s (%d bytes of %d): %s" % (stall_timeout, done, total, why)

    def snapshot(self, done=False, failed=None, stall_timeout=0, stalled=False):
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
            "progress": self.progress(stall_timeout, stalled),
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
    try:
        for message in messages:
            progress.update(message)
            now = progress.clock()
            if progress.stalled_for() > stall_timeout:
                raise PullError(progress.stalled_message(stall_timeout, "no progress for %ds (%s)" % (
                    stall_timeout, progress.status)), stalled=True)
            if now - last_report >= report_every:
                on_progress(progress.snapshot(stall_timeout=stall_timeout))
                last_report = now
    except PullError as err:
        if err.stalled and not str(err).startswith("stalled at pull"):
            raise PullError(progress.stalled_message(stall_timeout, str(err)), stalled=True)
        raise
    on_progress(progress.snapshot(stall_timeout=stall_timeout))


# ------------------------------------------------------------------------------- the engine
def inspect_image(client, reference):
    """The image's inspect document, or None when the engine has no such image (the client's
    inspect; an engine error becomes a PullError that names the reference)."""
    try:
        return client.inspect_image(reference, timeout=30)
    except docker_api.DockerAPIError as err:
        raise PullError("inspecting %s: engine answered %s" % (reference, err))


def pull_messages(client, reference, auth, stall_timeout):
    repository, tag, digest = split_reference(reference)
    query = {"fromImage": repository, "tag": digest or tag or "latest"}
    headers = {"X-Registry-Auth": auth} if auth else None
    try:
        yield from client.stream_json("POST", "/images/create", query=query, headers=headers,
                                      timeout=stall_timeout, idle_timeout=stall_timeout)
    except docker_api.StreamIdle:
        raise PullError("no data from the engine for %ds" % stall_timeout, stalled=True)
    except docker_api.DockerAPIError as err:
        raise PullError(str(err))


def tag_image(client, source_ref, target_ref):
    repository, tag, _digest = split_reference(target_ref)
    status, _h, body = client.request(
        "POST", "/images/%s/tag" % quote(source_ref, safe=""),
        query={"repo": repository, "tag": tag or "latest"}, timeout=30)
    if status not in (200, 201):
        raise PullError("tagging %s as %s: %s %s" % (source_ref, target_ref, status, body[:200]))


def pull_sources(reference, username="", password="", fallback_registry="", fallback_username="",
                 fallback_password=""):
    """Where to pull from, in order, each with the credentials of THAT registry only.

    The primary credentials belong to the registry the image reference names (Docker Hub when it
    names none); the fallback credentials to the fallback registry. A registry never sees the
    other's password: with no fallback credentials the fallback is pulled from anonymously.
    """
    sources = [{"reference": reference, "registry": registry_of(split_reference(reference)[0]) or "docker.io",
                "username": username or "", "password": password or ""}]
    if fallback_registry:
        fallback = with_registry(reference, fallback_registry)
        sources.append({"reference": fallback, "registry": fallback_registry,
                        "username": fallback_username or "", "password": fallback_password or ""})
    return sources


def run_pull(job, client, report, sleep=time.sleep):
    """Pull `job["image"]` from each source in turn (retries with backoff per source; a stall is
    an attempt that failed); returns the final snapshot, with the result fields (present,
    image_id, source, pull_attempts, changed, errors). `report(snapshot)` hears every progress."""
    reference, name = job["image"], job["name"]
    attempts, errors, last, last_stall = 0, [], None, None
    for source in job["sources"]:
        ref = source["reference"]
        auth = registry_auth_header(source.get("username"), source.get("password"),
                                    registry_of(split_reference(ref)[0]))
        delays = backoff_delays(job.get("backoff_initial", 5), 2.0, 60.0)
        for attempt in range(1, int(job.get("retries", 3)) + 1):
            attempts += 1
            progress = PullProgress(reference, ref, attempts)
            try:
                pull_once(pull_messages(client, ref, auth, job["stall_timeout"]), progress, job["stall_timeout"], report)
                if not inspect_image(client, ref):
                    raise PullError("the engine finished the pull but has no image %s" % ref)
                if ref != reference:
                    tag_image(client, ref, name)
                found = inspect_image(client, reference) or inspect_image(client, ref)
                final = progress.snapshot(done=True)
                final.update(present=True, changed=True, image_id=(found or {}).get("Id"), pull_attempts=attempts,
                             errors=errors)
                return final
            except (PullError, docker_api.DockerUnavailable, docker_api.DockerAPIError) as err:
                stalled = getattr(err, "stalled", False)
                errors.append("%s attempt %d: %s" % (ref, attempt, err))
                last = progress.snapshot(failed=str(err), stall_timeout=job["stall_timeout"], stalled=stalled)
                last_stall = str(err) if stalled else None
                last.update(pull_attempts=attempts)
                report(last)
                if attempt < int(job.get("retries", 3)):
                    sleep(next(delays))
    final = dict(last or {}, done=True, present=False, changed=False, pull_attempts=attempts, errors=errors)
    stalled = last_stall
    if stalled:  # the last attempt stalled: say so first, as a stalled health wait does
        final["failed"] = "%s; pull failed after %d attempts: %s" % (
            stalled.split(": ", 1)[0], attempts, " | ".join(errors[-3:]))
    else:
        final["failed"] = "pull failed after %d attempts: %s" % (attempts, " | ".join(errors[-3:]) or "no source")
    return final


# --------------------------------------------------------------------- the detached worker
# The pull runs in a worker process of its own, detached from the task that started it: the
# task returns at once (so Ansible removes its module file at once, and with pipelining there is
# none), the credentials reach the worker through a pipe and live only in its memory, and the
# worker ends itself when nobody renews its lease (the controller was killed or the run cancelled)
# or at its hard cap. Progress and the final result (never a secret) go to the progress file.
WORKER_NAME = "openadapt-waa-pull-worker"
_PREFIX = "ansible_collections.openadapt.waa.plugins.module_utils."
_MAX_JOB = 4 << 20
# Runs as `python -c BOOTSTRAP openadapt-waa-pull-worker <progress file>`: reads the job and the
# source of the collection's module_utils from stdin, serves those to `import`, runs the worker.
BOOTSTRAP = r"""
import importlib.abc, importlib.util, json, sys
data = json.loads(sys.stdin.buffer.read(%d).decode("utf-8"))
sys.stdin.close()
class _Sources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, sources):
        self.sources = sources
    def find_spec(self, name, path=None, target=None):
        if name in self.sources:
            return importlib.util.spec_from_loader(name, self, is_package=False)
        if any(key.startswith(name + ".") for key in self.sources):
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        source = self.sources.get(module.__name__)
        if source is not None:
            exec(compile(source, "<%%s>" %% module.__name__, "exec"), module.__dict__)
sys.meta_path.insert(0, _Sources(data["sources"]))
from ansible_collections.openadapt.waa.plugins.module_utils import waa_image_pull
waa_image_pull.worker_main(data["job"])
""" % _MAX_JOB


def lease_path(progress_file):
    return progress_file + ".lease"


def write_lease(path, seconds, now=None):
    """(Re)new the worker's lease: it ends itself once `expires_at` has passed."""
    now = time.time() if now is None else now
    write_progress(path, {"expires_at": now + seconds, "renewed_at": now})


def lease_left(path, now=None):
    """Seconds the lease still runs (<= 0: expired; a missing or unreadable lease is expired)."""
    lease = read_progress(path)
    now = time.time() if now is None else now
    try:
        return float(lease["expires_at"]) - now
    except (TypeError, KeyError, ValueError):
        return -1.0


def process_start(pid):
    """A process's start time (clock ticks since boot, /proc/<pid>/stat field 22): a pid and its
    start time name one process, even after the pid is reused. None when it does not exist."""
    if not os.path.exists("/proc/self/stat"):  # no procfs: only whether the pid exists
        try:
            os.kill(int(pid), 0)
            return "alive"
        except (OSError, ValueError, TypeError):
            return None
    try:
        with open("/proc/%d/stat" % int(pid)) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None
        return fields[19]
    except (IOError, OSError, ValueError, IndexError, TypeError):
        return None


def worker_alive(snapshot):
    """Whether the worker a progress snapshot names still runs."""
    pid, started = (snapshot or {}).get("worker_pid"), (snapshot or {}).get("worker_started")
    return bool(pid) and started is not None and process_start(pid) == started


def stop_worker(snapshot, wait_s=10.0):
    """End the (live) worker a progress snapshot names: SIGTERM, then SIGKILL after `wait_s`."""
    if not worker_alive(snapshot):
        return False
    pid = int(snapshot["worker_pid"])
    for sig, wait in ((signal.SIGTERM, wait_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except OSError:
            return True
        deadline = time.time() + wait
        while time.time() < deadline and process_start(pid) == snapshot["worker_started"]:
            time.sleep(0.05)
        if process_start(pid) != snapshot["worker_started"]:
            return True
    return True


def collection_sources():
    """The source of every module_utils of this collection the calling module has loaded."""
    sources = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith(_PREFIX) or module is None:
            continue
        loader = getattr(getattr(module, "__spec__", None), "loader", None) or getattr(module, "__loader__", None)
        source = loader.get_source(name) if loader is not None and hasattr(loader, "get_source") else None
        if source is None:
            raise PullError("cannot hand %s to the pull worker: its source is not available" % name)
        sources[name] = source
    return sources


def spawn_worker(job, python=None, handshake_s=15.0):
    """Start the detached worker for `job` (credentials included: they travel through the pipe,
    never argv, environment or a file) and wait until it announced itself in the progress file.
    Returns its first snapshot. Raises PullError when it does not start."""
    payload = json.dumps({"sources": collection_sources(), "job": job}).encode("utf-8")
    progress_file = job["progress_file"]
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        proc = subprocess.Popen([python or sys.executable, "-c", BOOTSTRAP, WORKER_NAME, progress_file],
                                stdin=subprocess.PIPE, stdout=devnull, stderr=subprocess.PIPE, cwd="/",
                                close_fds=True, start_new_session=True)
    finally:
        os.close(devnull)
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except (IOError, OSError):
        pass
    del payload
    deadline = time.time() + handshake_s
    try:
        while time.time() < deadline:
            snapshot = read_progress(progress_file)
            if snapshot and snapshot.get("worker_pid") == proc.pid:
                return snapshot
            if proc.poll() is not None:
                err = proc.stderr.read(4000).decode("utf-8", "replace").strip().splitlines()
                raise PullError("the pull worker exited at once (%s): %s"
                                % (proc.returncode, err[-1] if err else "no message"))
            time.sleep(0.05)
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        raise PullError("the pull worker did not start within %ds" % handshake_s)
    finally:
        proc.stderr.close()


STALL_HINT = ("the registry stopped sending (no new bytes for the stall timeout): pull from a regional mirror "
              "(waa_image_fallback_registry), check the registry's rate limits, or raise waa_image_stall_timeout "
              "if it is only slow")


def failure_hint(snapshot, default):
    """The hint of a failed pull: the stall's when the last attempt stalled, else `default`."""
    info = (snapshot or {}).get("progress") or {}
    return STALL_HINT if info.get("stalled") else default


def cap_message(snapshot, cap_s, stall_timeout):
    """The hard cap's verdict: `still progressing at the cap (...)` when the bytes grew within the
    stall timeout, the wording of a health wait the cap ended while it moved."""
    info = (snapshot or {}).get("progress") or {}
    signals = info.get("signals") or {}
    ago = info.get("last_progress_s_ago")
    where = "%d bytes of %d" % (signals.get("bytes_done", 0), signals.get("bytes_total", 0))
    if ago is not None and (not stall_timeout or ago < stall_timeout):
        return "still progressing at the cap (deadline %d s; last progress %s s ago: %s): hard cap: the pull did " \
               "not finish within %ds" % (cap_s, ago, where, cap_s)
    return "hard cap: the pull did not finish within %ds (%s)" % (cap_s, where)


def worker_main(job):
    """The worker's body (in its own process): pull, report, obey the lease and the hard cap."""
    os.umask(0o077)
    try:
        with open("/proc/self/comm", "w") as comm:  # `ps`/`top` show what it is
            comm.write("waa-pull-worker")
    except (IOError, OSError):
        pass
    progress_file, lease_file = job["progress_file"], job["lease_file"]
    cap_s = int(job["timeout"])
    hard_cap = time.time() + cap_s
    lock = threading.Lock()
    me = {"worker_pid": os.getpid(), "worker_started": process_start(os.getpid()), "deadline": hard_cap,
          "lease_file": lease_file}
    latest = [dict(PullProgress(job["image"], job["sources"][0]["reference"], 0).snapshot(), **me)]

    def report(snapshot):
        with lock:
            latest[0] = dict(snapshot, **me)
            write_progress(progress_file, latest[0])

    report(latest[0])
    devnull = os.open(os.devnull, os.O_RDWR)  # the starter stops listening after the handshake
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)

    def finish(snapshot, code):
        with lock:
            final = dict(snapshot, done=True, **me)
            final.pop("deadline", None)
            write_progress(progress_file, final)
            try:
                os.unlink(lease_file)
            except OSError:
                pass
            os._exit(code)

    def watchdog():
        while True:
            time.sleep(0.5)
            now = time.time()
            why = None
            if now >= hard_cap:
                why = cap_message(latest[0], cap_s, job.get("stall_timeout") or 0)
            elif lease_left(lease_file, now) <= 0:
                why = ("abandoned: nobody renewed the pull's lease (the controller is gone or the run was "
                       "cancelled); the worker stopped the pull")
            if why:
                finish(dict(latest[0], failed=why, present=False, changed=False, status="aborted"), 3)

    thread = threading.Thread(target=watchdog)
    thread.daemon = True
    thread.start()
    try:
        final = run_pull(job, docker_api.DockerClient(job["docker_host"]), report)
    except Exception as err:  # anything unforeseen still ends with a result, never a silent death
        final = dict(latest[0], failed="the pull worker failed: %s: %s" % (type(err).__name__, err), present=False)
    job.clear()  # drop the credentials before the last write
    finish(final, 0 if final.get("present") else 3)
