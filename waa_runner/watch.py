"""`waa-run watch`: keep every targeted host under observation, at a small fixed cost per host.

Each host runs the agent of the role openadapt.waa.waa_agent (the five-layer probe every interval,
its latest verdict and its history kept on the host). The controller only collects them: for a
remote host one `ssh` client per cycle through a master connection the watcher holds for its whole
life (ControlMaster, so no handshake per cycle), running the agent's `show` on the host, which
answers as soon as the agent has written a verdict newer than the one already seen (or after one
interval: then the verdict grows stale); for a local host (`ansible_connection: local`, or
--local) the agent's files are read directly. The host list comes from Ansible's own inventory
parsing (`ansible-inventory --list`), once at start.

Every cycle the watcher appends the new history entries of every host, and its own observations
(a host it cannot reach, a verdict older than max_age, no agent), to the health ledger
(waa_runner.ledger), keeps each host's latest observation in `<state dir>/watch/hosts/<host>.json`
(what `waa-run gate` reads for a remote host), and hands each cycle to a view (rich table on a
terminal, plain lines, or JSON lines) and to the Prometheus metrics (waa_runner.metrics).

    from waa_runner.watch import watch
    watch(inventory="fleet.yml", interval=30, on_cycle=print)        # until Ctrl-C (or cycles=N)
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from waa_runner.gate import read_json_object
from waa_runner.ledger import Ledger, iso

DEFAULT_INTERVAL = 30.0
DEFAULT_AGENT_DIR = "/var/lib/waa-agent"
DEFAULT_INSTALL_DIR = "/opt/waa-agent"
DEFAULT_PYTHON = "/usr/bin/python3"
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_ANSWER = 1 << 20  # one host's answer (latest + up to 1000 history lines) is a few hundred KB at most
CONNECT_TIMEOUT = 10
# The states the watcher decides itself (the agent's are status_of's: ready, not_ready, failed, ...)
UNREACHABLE, STALE, NO_AGENT = "unreachable", "stale", "no_agent"
# Exit codes of the table (plugins/module_utils/waa_exit_codes.py) for those states.
CODE_UNREACHABLE, CODE_STALE, CODE_NO_AGENT = 10, 16, 9  # the exit-code table's unreachable, stale, unknown
CODE_NAMES = {CODE_UNREACHABLE: "unreachable", CODE_STALE: "stale", CODE_NO_AGENT: "unknown", 0: "ready"}


class WatchError(Exception):
    """The targets could not be found (inventory error, no host matched)."""


@dataclass
class Target:
    name: str
    local: bool
    agent_dir: str = DEFAULT_AGENT_DIR
    install_dir: str = DEFAULT_INSTALL_DIR
    python: str = DEFAULT_PYTHON
    destination: str = ""  # user@address for ssh
    ssh_args: list[str] = field(default_factory=list)  # -i, -p and the inventory's ssh_common_args


@dataclass
class HostView:
    """One host as the watcher sees it after a cycle."""
    host: str
    state: str
    exit_code: int
    exit_name: str
    layer: str | None
    message: str
    since: float  # when this state began (controller clock)
    last_change: float | None  # the time of the last transition recorded
    probed_at: float | None  # the agent's probe time (controller clock)
    age_s: float | None
    probe_duration_s: float | None
    restarts_total: int
    breaker: str | None
    source: str  # "agent" or "watch"
    local: bool
    hint: str = ""

    @property
    def ready(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(since_iso=iso(self.since), ready=self.ready,
                    last_change_iso=iso(self.last_change) if self.last_change else None)
        return data


@dataclass
class Cycle:
    number: int
    started: float
    wall_s: float
    cpu_s: float  # controller CPU of this cycle: the watcher, its ssh clients and its ssh masters
    hosts: dict[str, HostView]
    transitions: list[dict[str, Any]]

    @property
    def cpu_per_host_ms(self) -> float:
        return 1000.0 * self.cpu_s / max(1, len(self.hosts))


# ------------------------------------------------------------------------------ targets
def _plain(value: Any) -> Any:
    """A host variable usable here: templated values ({{ }}) are not resolved, so they are ignored."""
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return None
    return value


def _ansible_inventory() -> str:
    here = Path(sys.executable).parent / "ansible-inventory"
    found = str(here) if here.exists() else shutil.which("ansible-inventory")
    if not found:
        raise WatchError("ansible-inventory is not installed (pip install ansible)")
    return found


def _members(groups: dict[str, Any], group: str, seen: set[str] | None = None) -> list[str]:
    seen = seen if seen is not None else set()
    if group in seen or group not in groups:
        return []
    seen.add(group)
    body = groups[group] or {}
    hosts = list(body.get("hosts") or [])
    for child in body.get("children") or []:
        hosts += _members(groups, child, seen)
    return hosts


def targets_from_inventory(inventory: str | os.PathLike[str], limit: str | None = None, pattern: str = "waa",
                           agent_dir: str | None = None, timeout: float = 120) -> list[Target]:
    """The hosts of group `pattern` (default waa, like the playbooks) in Ansible's own parse of the inventory."""
    argv = [_ansible_inventory(), "--list", "-i", str(Path(inventory).expanduser().resolve())]
    if limit:
        argv += ["--limit", limit]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"})
    if proc.returncode != 0:
        raise WatchError(f"ansible-inventory failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    data = json.loads(proc.stdout)
    hostvars = (data.get("_meta") or {}).get("hostvars") or {}
    names = list(dict.fromkeys(_members(data, pattern)))
    if not names:
        raise WatchError(f"no host matched {pattern!r}" + (f" with --limit {limit!r}" if limit else ""))
    return [target_of(name, hostvars.get(name) or {}, agent_dir) for name in names]


def target_of(name: str, hostvars: dict[str, Any], agent_dir: str | None = None) -> Target:
    v = {k: _plain(value) for k, value in hostvars.items()}
    connection = v.get("ansible_connection") or "ssh"
    local = connection == "local" or (name in LOCAL_NAMES and not v.get("ansible_host"))
    target = Target(name=name, local=local,
                    agent_dir=agent_dir or v.get("waa_agent_state_dir") or DEFAULT_AGENT_DIR,
                    install_dir=v.get("waa_agent_install_dir") or DEFAULT_INSTALL_DIR,
                    python=v.get("waa_agent_python") or DEFAULT_PYTHON)
    if local:
        return target
    address = v.get("ansible_host") or name
    user = v.get("ansible_user")
    target.destination = f"{user}@{address}" if user else str(address)
    args: list[str] = []
    if v.get("ansible_port"):
        args += ["-p", str(v["ansible_port"])]
    if v.get("ansible_ssh_private_key_file"):
        args += ["-i", str(Path(str(v["ansible_ssh_private_key_file"])).expanduser())]
    for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        if v.get(key):
            args += shlex.split(str(v[key]))
    target.ssh_args = args
    return target


def local_target(agent_dir: str | None = None) -> Target:
    return Target(name="localhost", local=True, agent_dir=agent_dir or DEFAULT_AGENT_DIR)


# ------------------------------------------------------------------------------ collection
def read_local(agent_dir: str, after: int, limit: int = 1000) -> dict[str, Any]:
    """What the agent's `show` answers, read in this process."""
    latest = read_json_object(os.path.join(agent_dir, "latest.json"))
    history: list[dict[str, Any]] = []
    base = os.path.join(agent_dir, "history.jsonl")
    for name in (base + ".1", base):
        try:
            with open(name, "rb") as handle:
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break
                    try:
                        entry = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(entry, dict) and isinstance(entry.get("seq"), int) and entry["seq"] > after:
                        history.append(entry)
        except OSError:
            continue
    history.sort(key=lambda e: e["seq"])
    return {"now": time.time(), "latest": latest, "history": history[:limit]}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, sort_keys=True, default=str)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the watcher dies, even by kill -9 (Linux prctl)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _proc_cpu(pid: int) -> float:
    """utime + stime of a live process in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Watcher:
    def __init__(self, targets: list[Target], *, interval: float = DEFAULT_INTERVAL, max_age: float | None = None,
                 state_dir: str | os.PathLike[str] | None = None, collect_timeout: float = 15.0):
        from waa_runner.state import state_dir as resolve

        if interval <= 0:
            raise ValueError("interval must be greater than 0")
        self.targets = targets
        self.interval = float(interval)
        self.max_age = float(max_age) if max_age else 2 * self.interval
        self.root = resolve(state_dir)
        self.ledger = Ledger(self.root / "ledger.jsonl")
        self.cache = self.root / "watch" / "hosts"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.collect_timeout = collect_timeout
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:10]
        self.control_dir = Path(tempfile.gettempdir()) / f"waa-watch-{os.getuid()}-{digest}"
        self.control_dir.mkdir(mode=0o700, exist_ok=True)
        self.masters: dict[str, subprocess.Popen[bytes]] = {}
        self.cursors: dict[str, tuple[str, int]] = self.ledger.cursors()
        last = self.ledger.last_state()
        self.ledger_state: dict[str, str] = {h: str(e.get("to")) for h, e in last.items()}
        self.last_change: dict[str, float] = {h: float(e["time"]) for h, e in last.items()}
        self.views: dict[str, HostView] = {}
        self.seen_time: dict[str, float] = {}
        self.cycle_number = 0
        self.fresh = 0
        self.cpu_total = 0.0
        self._master_cpu: dict[str, float] = {}

    # -- ssh ----------------------------------------------------------------------------------
    def _control_path(self, target: Target) -> str:
        key = hashlib.sha256((target.destination + " " + " ".join(target.ssh_args)).encode()).hexdigest()[:16]
        return str(self.control_dir / key)

    def _ssh(self, target: Target, master: bool) -> list[str]:
        # ssh takes the first value given for an option: these come before the inventory's own.
        own = ["-o", f"ControlPath={self._control_path(target)}", "-o", "BatchMode=yes",
               "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]
        if master:
            own = ["-M", "-N", "-o", "ControlMaster=yes", "-o", "ControlPersist=no", *own]
        else:
            own = ["-o", "ControlMaster=no", *own]
        return ["ssh", *own, *target.ssh_args, target.destination]

    def _ensure_master(self, target: Target) -> None:
        proc = self.masters.get(target.name)
        if proc is not None and proc.poll() is None:
            return
        if proc is not None:
            self.cpu_total += self._master_cpu.pop(target.name, 0.0)
        self.masters[target.name] = subprocess.Popen(
            self._ssh(target, master=True), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)

    def masters_cpu(self) -> float:
        total = 0.0
        for name, proc in self.masters.items():
            if proc.poll() is None:
                self._master_cpu[name] = _proc_cpu(proc.pid)
            total += self._master_cpu.get(name, 0.0)
        return total

    def close(self) -> None:
        for proc in self.masters.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.masters.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.masters.clear()
        try:
            self.control_dir.rmdir()  # only when empty: no master of another watcher lives in it
        except OSError:
            pass

    def _remote_argv(self, target: Target, after: int, newer_than: float) -> list[str]:
        command = [target.python, f"{target.install_dir}/waa_agent.py", "show", "--state-dir", target.agent_dir,
                   "--after", str(after), "--newer-than", f"{newer_than:.3f}", "--wait", f"{self.interval:.3f}"]
        # ssh hands the remote side one command line, read by the user's shell: every word is quoted
        return [*self._ssh(target, master=False), "--", shlex.join(command)]

    # -- one cycle ----------------------------------------------------------------------------
    def collect(self) -> dict[str, dict[str, Any] | str]:
        """Each host's answer ({now, latest, history}) or why there is none (str)."""
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            return self._collect(procs)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def _collect(self, procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, dict[str, Any] | str]:
        answers: dict[str, dict[str, Any] | str] = {}
        buffers: dict[str, bytearray] = {}
        end = time.monotonic() + self.interval + self.collect_timeout
        for target in self.targets:
            after = self._after(target.name)
            if target.local:
                continue
            self._ensure_master(target)
            procs[target.name] = subprocess.Popen(
                self._remote_argv(target, after, self.seen_time.get(target.name, 0.0)),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            buffers[target.name] = bytearray()
        locals_ = [t for t in self.targets if t.local]
        pending_local = {t.name for t in locals_}
        selector = selectors.DefaultSelector()
        for name, proc in procs.items():
            assert proc.stdout is not None
            selector.register(proc.stdout, selectors.EVENT_READ, name)
        open_pipes = len(procs)
        local_end = time.monotonic() + self.interval
        while open_pipes or pending_local:
            now = time.monotonic()
            if now >= end:
                break
            for target in locals_:
                if target.name not in pending_local:
                    continue
                answer = read_local(target.agent_dir, self._after(target.name))
                latest = answer.get("latest") or {}
                if float(latest.get("time") or 0) > self.seen_time.get(target.name, 0.0) or now >= local_end:
                    answers[target.name] = answer
                    pending_local.discard(target.name)
            if not open_pipes and not pending_local:
                break
            for key, _mask in selector.select(timeout=0.1 if pending_local else max(0.0, end - now)):
                name = key.data
                chunk = os.read(key.fd, 65536)
                if chunk and len(buffers[name]) + len(chunk) <= MAX_ANSWER:
                    buffers[name] += chunk
                    continue
                if chunk:
                    answers[name] = f"the answer exceeded {MAX_ANSWER} bytes"
                    procs[name].kill()
                selector.unregister(key.fileobj)
                open_pipes -= 1
        selector.close()
        for name, proc in procs.items():
            if proc.poll() is None and name not in answers and time.monotonic() >= end:
                answers[name] = f"no answer within {self.interval + self.collect_timeout:.0f}s"
                proc.kill()
            try:
                _out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                _out, err = proc.communicate()
            if name in answers:
                continue
            if proc.returncode != 0:
                lines = (err or b"").decode("utf-8", "replace").strip().splitlines()
                answers[name] = (lines[-1] if lines else f"ssh exited {proc.returncode}")[:300]
                continue
            try:
                data = json.loads(bytes(buffers[name]))
                answers[name] = data if isinstance(data, dict) else "the agent's answer is not a JSON object"
            except ValueError:
                answers[name] = "the agent's answer is not JSON"
        for name in pending_local:
            answers[name] = read_local(next(t for t in locals_ if t.name == name).agent_dir, self._after(name))
        return answers

    def _after(self, host: str) -> int:
        cursor = self.cursors.get(host)
        return cursor[1] if cursor else 0

    def cycle(self) -> Cycle:
        started = time.time()
        started_mono = time.monotonic()
        cpu_before = self._cpu_now()
        answers = self.collect()
        transitions: list[dict[str, Any]] = []
        now = time.time()
        self.fresh = 0
        for target in self.targets:
            transitions += self._observe(target, answers.get(target.name, "no answer"), now)
        self.ledger.append_many(transitions)
        self.cycle_number += 1
        cpu = self._cpu_now() - cpu_before
        left = self.interval - (time.monotonic() - started_mono)
        if not self.fresh and left > 0:
            time.sleep(left)  # nothing new from any host (all unreachable or stale): no faster than the interval
        return Cycle(self.cycle_number, started, time.monotonic() - started_mono, cpu, dict(self.views), transitions)

    def _cpu_now(self) -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + self.masters_cpu() + self.cpu_total

    def _observe(self, target: Target, answer: dict[str, Any] | str, now: float) -> list[dict[str, Any]]:
        host = target.name
        entries: list[dict[str, Any]] = []
        latest: dict[str, Any] | None = None
        skew = 0.0
        if isinstance(answer, dict):
            latest = answer.get("latest") if isinstance(answer.get("latest"), dict) else None
            host_now = answer.get("now")
            skew = now - float(host_now) if isinstance(host_now, (int, float)) and not target.local else 0.0
            cursor = self.cursors.get(host)
            agent_id = str((latest or {}).get("agent_id") or "")
            if latest and cursor and cursor[0] != agent_id:
                self.cursors[host] = (agent_id, 0)  # a new agent (reinstalled): its history from the start next time
            else:
                for item in answer.get("history") or []:
                    if not isinstance(item, dict) or not isinstance(item.get("seq"), int):
                        continue
                    entry = self._ledger_entry(host, item, skew)
                    entries.append(entry)
                    self.cursors[host] = (str(item.get("agent_id") or agent_id), item["seq"])
                    if entry["kind"] == "transition":
                        self.ledger_state[host] = entry["to"]
                        self.last_change[host] = entry["time"]
        view = self._view(target, answer, latest, skew, now)
        if self.ledger_state.get(host) != view.state and not (view.source == "agent" and host not in self.ledger_state
                                                               and entries):
            entry = {"time": round(now, 3), "time_iso": iso(now), "host": host, "kind": "transition",
                     "from": self.ledger_state.get(host), "to": view.state, "exit_code": view.exit_code,
                     "exit_name": view.exit_name, "layer": view.layer, "message": view.message, "action": None,
                     "source": "watch"}
            entries.append(entry)
            self.ledger_state[host] = view.state
            self.last_change[host] = now
        view.last_change = self.last_change.get(host)
        self.views[host] = view
        if latest is not None:
            if float(latest.get("time") or 0) > self.seen_time.get(host, 0.0):
                self.fresh += 1
            self.seen_time[host] = float(latest.get("time") or 0)
        _write_json(self.cache / f"{host}.json", {
            "host": host, "local": target.local, "agent_dir": target.agent_dir, "collected_at": round(now, 3),
            "skew_s": round(skew, 3), "interval_s": self.interval, "max_age_s": self.max_age,
            "view": view.to_dict(), "latest": latest})
        return entries

    def _ledger_entry(self, host: str, item: dict[str, Any], skew: float) -> dict[str, Any]:
        moment = float(item.get("time") or 0) + skew
        entry = {"time": round(moment, 3), "time_iso": iso(moment), "host": host,
                 "kind": item.get("kind") if item.get("kind") in ("transition", "heal", "error") else "transition",
                 "from": item.get("from"), "to": item.get("to"), "exit_code": item.get("exit_code"),
                 "exit_name": item.get("exit_name"), "layer": item.get("layer"), "message": item.get("message"),
                 "action": item.get("action"), "source": "agent", "agent_id": item.get("agent_id"),
                 "seq": item.get("seq"), "host_time": item.get("time")}
        return entry

    def _view(self, target: Target, answer: dict[str, Any] | str, latest: dict[str, Any] | None, skew: float,
              now: float) -> HostView:
        def watch_view(state: str, code: int, message: str) -> HostView:
            previous = self.views.get(target.name)
            since = previous.since if previous and previous.state == state else now
            return HostView(target.name, state, code, CODE_NAMES.get(code, "unknown"), None, message, since, None,
                            None, None, None, 0, None, "watch", target.local)

        if isinstance(answer, str):
            return watch_view(UNREACHABLE, CODE_UNREACHABLE, f"unreachable: {answer}")
        if latest is None or not isinstance(latest.get("verdict"), dict):
            return watch_view(NO_AGENT, CODE_NO_AGENT, f"no agent verdict in {target.agent_dir} on {target.name}: "
                                                       "install the agent (playbooks/watch_agent.yml)")
        verdict = latest["verdict"]
        probed = float(latest.get("time") or 0) + skew
        age = now - probed
        heal: dict[str, Any] = latest["heal"] if isinstance(latest.get("heal"), dict) else {}
        if age > self.max_age:
            view = watch_view(STALE, CODE_STALE, f"stale: the latest verdict ({verdict.get('exit_name')}) is "
                                                 f"{age:.0f}s old (max age {self.max_age:g}s): is the agent running?")
            view.probed_at, view.age_s = probed, round(age, 3)
            return view
        code = verdict.get("exit_code")
        return HostView(target.name, str(latest.get("state") or "unknown"), code if isinstance(code, int) else 9,
                        str(verdict.get("exit_name") or ""), verdict.get("layer"), str(verdict.get("message") or ""),
                        float(latest.get("since") or probed) + skew, None, probed, round(age, 3),
                        latest.get("probe_duration_s"), int(heal.get("restarts_total") or 0), heal.get("breaker"),
                        "agent", target.local, str(verdict.get("hint") or ""))


def watch(*, inventory: str | os.PathLike[str] | None = None, local: bool = False, limit: str | None = None,
          targets: list[Target] | None = None, interval: float = DEFAULT_INTERVAL, max_age: float | None = None,
          state_dir: str | os.PathLike[str] | None = None, agent_dir: str | None = None, cycles: int | None = None,
          on_cycle: Callable[[Cycle], None] | None = None, metrics_port: int | None = None,
          metrics_address: str = "127.0.0.1", stop: Callable[[], bool] | None = None) -> list[Cycle]:
    """Watch until Ctrl-C (KeyboardInterrupt ends it cleanly), `stop()` says so, or `cycles` cycles.

    Returns the cycles run when `cycles` is given (else an empty list: a long watch keeps nothing)."""
    if targets is None:
        if inventory is not None and not local:
            targets = targets_from_inventory(inventory, limit, agent_dir=agent_dir)
        else:
            targets = [local_target(agent_dir)]
    watcher = Watcher(targets, interval=interval, max_age=max_age, state_dir=state_dir)
    server = None
    if metrics_port is not None:
        from waa_runner.metrics import serve

        server = serve(watcher, metrics_port, metrics_address)
    kept: list[Cycle] = []
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        while cycles is None or watcher.cycle_number < cycles:
            if stop is not None and stop():
                break
            result = watcher.cycle()
            if cycles is not None:
                kept.append(result)
            if on_cycle is not None:
                on_cycle(result)
            if server is not None:
                server.last_cycle = result
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
        if server is not None:
            server.shutdown()
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return kept


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt()


def hosts_of(cycles: Iterable[Cycle]) -> dict[str, HostView]:
    found: dict[str, HostView] = {}
    for result in cycles:
        found.update(result.hosts)
    return found


class _CallableModule(types.ModuleType):
    """`waa_runner.watch(...)` calls watch() even after `import waa_runner.watch` bound the module to that name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return watch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
