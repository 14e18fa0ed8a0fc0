# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The openadapt.waa host agent: the five-layer health probe every interval, on the host.

Installed by the role openadapt.waa.waa_agent next to a copy of the collection's module_utils
(<lib>/ansible_collections/openadapt/waa/plugins/module_utils), so it runs the very probe of
openadapt.waa.waa_health_probe, with nothing but Python's standard library.

Every cycle it writes the host's latest verdict atomically to <state_dir>/latest.json and appends
every transition (and every action of the self-healing) as one JSON line to
<state_dir>/history.jsonl, numbered (seq) so a controller (`waa-run watch`) can collect what it
has not seen yet. Files are world-readable (a verdict holds no secret) so the controller's SSH
user reads them without become.

Bounded self-healing (off unless the config says heal: true): after a recoverable verdict of the
container, vm_boot or waa_server layer has held for heal_grace_s, the container is started (when
stopped) or restarted once through the Docker engine API; then nothing more for heal_start_grace_s
(the boot); at most heal_max_restarts restarts in heal_window_s - past that the breaker is open and
nothing restarts until the window has moved past the restarts. Only a container run that was ready
once is restarted (heal_only_after_ready): a first boot that installs Windows, or a restart that did
not bring the host back, is never restarted again. Every action is recorded.

    waa_agent.py run --config FILE [--once] [--detach]
    waa_agent.py show --state-dir DIR [--after SEQ] [--newer-than T --wait S]
                                   # latest + history after SEQ, one JSON document; waits up to S
                                   # seconds for a verdict newer than T (a long poll)
    waa_agent.py status --state-dir DIR                 # exit 0 when an agent runs on DIR
    waa_agent.py stop --state-dir DIR [--timeout S]
"""
from __future__ import absolute_import, division, print_function

import argparse
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import tempfile
import time
import uuid

SCHEMA = 1
HEALABLE_LAYERS = ("container", "vm_boot", "waa_server")
HISTORY_MAX_BYTES = 8 << 20  # the history is rotated (one .1 kept) past this size
MAX_SHOW_ENTRIES = 1000  # what `show` returns at most (the controller asks again for the rest)

DEFAULTS = {
    "state_dir": "/var/lib/waa-agent",
    "lib_dir": "",
    "interval_s": 30.0,
    "container_name": "winarena",
    "host": "127.0.0.1",
    "ports": {"novnc": 8006, "server": 5000, "qmp": 7200},
    "docker_host": "/var/run/docker.sock",
    "layers": ["docker_daemon", "container", "vm_boot", "waa_server", "accessibility"],
    "a11y_backend": "win32",
    "check_screen": True,
    "request_timeout_s": 5.0,
    "a11y_timeout_s": 30.0,
    "probe_timeout_s": 20.0,
    "heal": False,
    "heal_grace_s": 60.0,
    "heal_start_grace_s": 300.0,
    "heal_max_restarts": 1,
    "heal_window_s": 3600.0,
    "heal_stop_timeout_s": 30.0,
    "heal_only_after_ready": True,
}


# ------------------------------------------------------------------------------ files
def iso(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + (".%03dZ" % int((timestamp % 1) * 1000))


def write_json_atomic(path, data):
    """Write, fsync and rename: a reader sees the old or the new document, never half of one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path, default=None):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return default
    return data if isinstance(data, dict) else default


def append_line(path, entry):
    """One JSON line, appended with a single write and fsynced; a torn last line is ended first."""
    line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path, after=0, limit=MAX_SHOW_ENTRIES):
    """History entries with seq > after (complete JSON lines only; a torn last line is skipped)."""
    found = []
    for name in (path + ".1", path):
        try:
            with open(name, "rb") as handle:
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break
                    try:
                        entry = json.loads(raw.decode("utf-8"))
                    except ValueError:
                        continue
                    if isinstance(entry, dict) and isinstance(entry.get("seq"), int) and entry["seq"] > after:
                        found.append(entry)
        except OSError:
            continue
    found.sort(key=lambda e: e["seq"])
    return found[:limit]


# ------------------------------------------------------------------------------ the probe
def import_probe(lib_dir):
    """The collection's module_utils (the copy next to the agent, else an installed collection)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (lib_dir, os.path.join(here, "lib")):
        if candidate and os.path.isdir(candidate) and candidate not in sys.path:
            sys.path.insert(0, candidate)
    from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
    from ansible_collections.openadapt.waa.plugins.module_utils.waa_docker_api import (
        DockerAPIError, DockerClient, DockerUnavailable)
    from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import Prober
    from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_wait import probe
    return codes, Prober, probe, DockerClient, (DockerUnavailable, DockerAPIError)


class Agent(object):
    def __init__(self, config, clock=time.time):
        self.config = dict(DEFAULTS)
        self.config.update(config or {})
        self.clock = clock
        self.state_dir = self.config["state_dir"]
        self.latest_path = os.path.join(self.state_dir, "latest.json")
        self.history_path = os.path.join(self.state_dir, "history.jsonl")
        self.heal_path = os.path.join(self.state_dir, "heal.json")
        (self.codes, Prober, self._probe, DockerClient, self._docker_errors) = import_probe(self.config["lib_dir"])
        c = self.config
        self.prober = Prober(container_name=c["container_name"], host=c["host"], ports=c["ports"],
                             docker_host=c["docker_host"], a11y_backend=c["a11y_backend"],
                             check_screen=bool(c["check_screen"]), request_timeout=float(c["request_timeout_s"]),
                             a11y_timeout=float(c["a11y_timeout_s"]))
        self.docker = DockerClient(c["docker_host"])
        previous = read_json(self.latest_path) or {}
        meta = read_json(os.path.join(self.state_dir, "agent.json")) or {}
        if not meta.get("agent_id"):
            meta = {"agent_id": uuid.uuid4().hex[:12], "created_at": iso(self.clock())}
            write_json_atomic(os.path.join(self.state_dir, "agent.json"), meta)
        self.agent_id = meta["agent_id"]
        last = read_lines(self.history_path, after=0, limit=10 ** 9)
        self.seq = max([e["seq"] for e in last] + [int(previous.get("seq") or 0)])
        self.verdict = previous.get("verdict") if isinstance(previous.get("verdict"), dict) else None
        self.since = float(previous.get("since") or 0) or None
        self.cycle = 0
        heal = read_json(self.heal_path) or {}
        self.restarts = [float(t) for t in heal.get("restarts", []) if isinstance(t, (int, float))]
        self.restarts_total = int(heal.get("restarts_total") or 0)
        self.breaker_open = bool(heal.get("breaker_open"))
        self.last_action = heal.get("last_action")
        # the StartedAt (UNIX time) of the container run that was last seen ready: a run that never was
        # ready (a first boot installing Windows, a restart that did not help) is never restarted
        self.ready_run = heal.get("ready_run")

    # -- one cycle ------------------------------------------------------------------------------
    def probe_once(self):
        started = time.monotonic()
        report = self._probe(self.prober, list(self.config["layers"]), wait=False,
                             timeout=float(self.config["probe_timeout_s"]), breaker=None, persist=False)
        found = self.codes.verdict_of_report(report)
        return found, report, time.monotonic() - started

    def state_of(self, found):
        return self.codes.status_of(found)

    def record(self, kind, now, **fields):
        self.seq += 1
        entry = {"seq": self.seq, "agent_id": self.agent_id, "time": round(now, 3), "time_iso": iso(now),
                 "kind": kind, "container": self.config["container_name"]}
        entry.update(fields)
        if os.path.exists(self.history_path) and os.path.getsize(self.history_path) > HISTORY_MAX_BYTES:
            os.rename(self.history_path, self.history_path + ".1")
        append_line(self.history_path, entry)
        return entry

    def step(self):
        """Probe, record a transition, heal when due, write latest.json. Returns latest."""
        found, report, duration = self.probe_once()
        now = self.clock()
        self.cycle += 1
        old = self.verdict
        changed = old is None or (old.get("exit_code"), old.get("layer")) != (found["exit_code"], found.get("layer"))
        action = None
        if changed:
            self.record("transition", now, **{
                "from": self.state_of(old) if old else None, "to": self.state_of(found),
                "from_exit_code": old.get("exit_code") if old else None,
                "exit_code": found["exit_code"], "exit_name": found["exit_name"], "layer": found.get("layer"),
                "failure_class": found.get("failure_class"), "message": found.get("message"), "action": None})
            self.since = now
        self.verdict = found
        latest = {
            "schema": SCHEMA, "agent_id": self.agent_id, "hostname": socket.gethostname(),
            "container": self.config["container_name"], "time": round(now, 3), "time_iso": iso(now),
            "interval_s": float(self.config["interval_s"]), "since": round(self.since or now, 3),
            "since_iso": iso(self.since or now), "state": self.state_of(found), "verdict": found,
            "probe_duration_s": round(duration, 4), "timed_out": bool(report.get("timed_out")),
            "layers": [{"layer": r.get("layer"), "healthy": r.get("healthy"), "duration_s": r.get("duration_s")}
                       for r in report.get("layers") or []],
            "seq": self.seq, "cycle": self.cycle, "pid": os.getpid(),
            "heal": self.heal_status(now), "last_action": self.last_action,
        }
        write_json_atomic(self.latest_path, latest)  # before a restart, which can take a while
        if self.config["heal"]:
            action = self.heal(found, now)
            if action is not None or self.seq != latest["seq"]:
                latest.update(seq=self.seq, heal=self.heal_status(self.clock()), last_action=self.last_action)
                write_json_atomic(self.latest_path, latest)
        return latest

    # -- bounded self-healing -------------------------------------------------------------------
    def heal_status(self, now):
        c = self.config
        window = [t for t in self.restarts if now - t < float(c["heal_window_s"])]
        return {"enabled": bool(c["heal"]), "restarts_in_window": len(window), "restarts_total": self.restarts_total,
                "max_restarts": int(c["heal_max_restarts"]), "window_s": float(c["heal_window_s"]),
                "grace_s": float(c["heal_grace_s"]), "start_grace_s": float(c["heal_start_grace_s"]),
                "breaker": "open" if self.breaker_open else "closed",
                "last_restart": iso(self.restarts[-1]) if self.restarts else None}

    def _save_heal(self):
        write_json_atomic(self.heal_path, {"restarts": self.restarts[-100:], "restarts_total": self.restarts_total,
                                           "breaker_open": self.breaker_open, "last_action": self.last_action,
                                           "ready_run": self.ready_run})

    def heal(self, found, now):
        c = self.config
        window_s = float(c["heal_window_s"])
        self.restarts = [t for t in self.restarts if now - t < max(window_s, float(c["heal_start_grace_s"]))]
        in_window = [t for t in self.restarts if now - t < window_s]
        if self.breaker_open and len(in_window) < int(c["heal_max_restarts"]):
            self.breaker_open = False
            self.last_action = self.record("heal", now, action="breaker_closed", exit_code=found["exit_code"],
                                           layer=found.get("layer"), message="the window moved past the restarts")
            self._save_heal()
        run = self.prober.started_at
        if found["exit_code"] == self.codes.READY:
            if run is not None and run != self.ready_run:
                self.ready_run = run
                self._save_heal()
            return None
        if c["heal_only_after_ready"] and found.get("layer") != "container" and (run is None or run != self.ready_run):
            return None  # this run of the container was never ready: a boot or an install, not a fault
        if found.get("failure_class") != self.codes.RECOVERABLE or found.get("layer") not in HEALABLE_LAYERS:
            return None
        if self.since is None or now - self.since < float(c["heal_grace_s"]):
            return None  # not held long enough
        if self.restarts and now - self.restarts[-1] < float(c["heal_start_grace_s"]):
            return None  # the last start is still booting
        if len(in_window) >= int(c["heal_max_restarts"]):
            if not self.breaker_open:
                self.breaker_open = True
                self.last_action = self.record(
                    "heal", now, action="breaker_open", exit_code=found["exit_code"], layer=found.get("layer"),
                    message="%d restart(s) in the last %gs (heal_max_restarts=%d): no more restarts until %s" % (
                        len(in_window), window_s, int(c["heal_max_restarts"]), iso(min(in_window) + window_s)))
                self._save_heal()
            return None
        return self.restart(found, now)

    def restart(self, found, now):
        c = self.config
        name = c["container_name"]
        stop_timeout = int(float(c["heal_stop_timeout_s"]))
        verb = "start" if found.get("layer") == "container" else "restart"
        path = "/containers/%s/%s" % (name, verb)
        query = {"t": stop_timeout} if verb == "restart" else None
        try:
            status, _headers, body = self.docker.request("POST", path, query=query, timeout=stop_timeout + 30)
            ok = status in (204, 304)
            detail = "" if ok else "%s %s" % (status, body[:200].decode("utf-8", "replace").strip())
        except self._docker_errors as err:
            ok, detail = False, str(err)
        self.restarts.append(now)
        self.restarts_total += 1
        held = now - (self.since or now)
        message = "%s %s after %s held %.0fs" % (verb, name, found.get("exit_name"), held)
        self.last_action = self.record(
            "heal", self.clock(), action=verb if ok else verb + "_failed", exit_code=found["exit_code"],
            layer=found.get("layer"), message=message + (": " + detail if detail else ""))
        self._save_heal()
        return self.last_action


# ------------------------------------------------------------------------------ commands
class _Stop(Exception):
    pass


def _lock(state_dir):
    """An exclusive lock on <state_dir>/agent.lock held for the agent's life: one agent per state dir."""
    fd = os.open(os.path.join(state_dir, "agent.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def _detach():
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def cmd_run(args):
    config = read_json(args.config)
    if config is None:
        print("waa_agent: cannot read the config %s" % args.config, file=sys.stderr)
        return 2
    state_dir = config.get("state_dir") or DEFAULTS["state_dir"]
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, 0o755)
    lock = _lock(state_dir)
    if lock is None:
        print("waa_agent: an agent already runs on %s" % state_dir, file=sys.stderr)
        return 0
    if args.detach:
        _detach()
    os.ftruncate(lock, 0)
    os.write(lock, ("%d\n" % os.getpid()).encode())

    def stop(_signum, _frame):
        raise _Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent = Agent(config)
    interval = float(agent.config["interval_s"])
    try:
        while True:
            started = time.monotonic()
            try:
                agent.step()
            except _Stop:
                raise
            except Exception as err:  # a cycle that crashed is recorded, the agent goes on
                agent.record("error", time.time(), message="%s: %s" % (type(err).__name__, err))
            if args.once:
                return 0
            time.sleep(max(0.05, interval - (time.monotonic() - started)))
    except _Stop:
        return 0
    finally:
        os.close(lock)


def _pid_of(state_dir):
    """The pid of the agent holding state_dir's lock, or None."""
    path = os.path.join(state_dir, "agent.lock")
    if not os.path.exists(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def cmd_status(args):
    pid = _pid_of(args.state_dir)
    print(json.dumps({"running": pid is not None, "pid": pid}))
    return 0 if pid is not None else 3


def cmd_stop(args):
    pid = _pid_of(args.state_dir)
    if pid is None:
        return 0
    if pid > 0:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    end = time.monotonic() + args.timeout
    while time.monotonic() < end:
        if _pid_of(args.state_dir) is None:
            return 0
        time.sleep(0.1)
    print("waa_agent: the agent (pid %s) did not stop within %ss" % (pid, args.timeout), file=sys.stderr)
    return 1


def cmd_show(args):
    path = os.path.join(args.state_dir, "latest.json")
    end = time.time() + max(0.0, args.wait)
    latest = read_json(path)
    # a long poll: answer as soon as the agent has written a verdict newer than the one the caller has
    while time.time() < end and float((latest or {}).get("time") or 0) <= args.newer_than:
        time.sleep(0.1)
        latest = read_json(path)
    history = read_lines(os.path.join(args.state_dir, "history.jsonl"), after=args.after)
    sys.stdout.write(json.dumps({"now": round(time.time(), 3), "latest": latest, "history": history}))
    sys.stdout.write("\n")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="waa_agent.py", description="openadapt.waa host agent")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run")
    run.add_argument("--config", required=True)
    run.add_argument("--once", action="store_true")
    run.add_argument("--detach", action="store_true", help="point stdin, stdout and stderr at /dev/null")
    for name in ("show", "status", "stop"):
        p = sub.add_parser(name)
        p.add_argument("--state-dir", default=DEFAULTS["state_dir"])
        if name == "show":
            p.add_argument("--after", type=int, default=0, help="history entries with a larger seq")
            p.add_argument("--newer-than", type=float, default=0.0, help="wait for a verdict newer than this time")
            p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for it at most")
        if name == "stop":
            p.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "show": cmd_show, "status": cmd_status, "stop": cmd_stop}
    if args.command not in handlers:
        parser.print_usage(sys.stderr)
        return 2
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
