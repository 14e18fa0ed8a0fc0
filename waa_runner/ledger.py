"""The health ledger: every state transition of every watched host, one JSON line each.

`waa-run watch` appends to `<state dir>/ledger.jsonl`: what each host's agent recorded (its
transitions and its self-healing actions, collected in order, so nothing is lost while the
controller was down) and what the controller saw itself (a host it could not reach, a verdict
grown stale). Each line is written with one `write` on an O_APPEND descriptor under an
exclusive flock and fsynced, so the file survives a `kill -9` of the watcher: at most the last
line is torn, and a torn line is skipped when reading (and ended before the next append).

A line::

    {"time": 1796117809.58, "time_iso": "2026-12-01T09:36:49.580Z", "host": "waa-1",
     "kind": "transition", "from": "ready", "to": "not_ready", "exit_code": 6, "exit_name": "waa_server",
     "layer": "waa_server", "message": "waa_server: /probe failed: ...", "action": null,
     "source": "agent", "agent_id": "1c1909c3a468", "seq": 5}

`kind` is `transition` (from/to are states: ready, not_ready, failed, unreachable, stale, ...) or
`heal` (action: restart, start, restart_failed, breaker_open, breaker_closed).

    from waa_runner.ledger import unhealthy_windows
    unhealthy_windows("waa-1", since, until)   # [Window(start, end, exit_code, exit_name, layer, message)]

Standard library only, and no ansible import: `waa-run gate` and harnesses read it fast.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

LEDGER_NAME = "ledger.jsonl"
READY = "ready"
MAX_LINE = 64 << 10  # a line longer than this is not one of ours


def default_path(state_dir: str | os.PathLike[str] | None = None) -> Path:
    from waa_runner.state import state_dir as resolve

    return resolve(state_dir) / LEDGER_NAME


def iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str | float | int | datetime | None, now: float | None = None) -> float | None:
    """A moment as UNIX seconds: a number, an ISO 8601 time (UTC when it has no zone), `now`, or a
    duration ago (`90s`, `15m`, `2h`, `1d`). None stays None; anything else raises ValueError."""
    if text is None:
        return None
    if isinstance(text, datetime):
        return (text if text.tzinfo else text.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    value = str(text).strip()
    now = time.time() if now is None else now
    if value == "now":
        return now
    match = _DURATION.match(value)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a time: give ISO 8601 (2026-12-01T09:30:00Z), UNIX seconds, "
                         "'now' or a duration ago (90s, 15m, 2h, 1d)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


@dataclass(frozen=True)
class Window:
    """A span in which a host was not ready (clipped to the asked range); end is None while it lasts."""
    host: str
    start: float
    end: float | None
    state: str
    exit_code: int | None
    exit_name: str | None
    layer: str | None
    message: str

    @property
    def duration_s(self) -> float:
        return (self.end if self.end is not None else time.time()) - self.start

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(start_iso=iso(self.start), end_iso=iso(self.end) if self.end is not None else None,
                    duration_s=round(self.duration_s, 3))
        return data


class Ledger:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one entry (time defaults to now); returns it as written."""
        record = dict(entry)
        record.setdefault("time", round(time.time(), 3))
        record.setdefault("time_iso", iso(float(record["time"])))
        self.append_many([record])
        return record

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        payload = "".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in entries).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size:
                with open(self.path, "rb") as handle:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":  # a writer killed mid-line: end its torn line
                        payload = b"\n" + payload
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self, since: float | None = None, until: float | None = None,
                host: str | None = None) -> Iterator[dict[str, Any]]:
        """Complete, valid lines in file order, filtered by time (since <= time <= until) and host."""
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return
        with handle:
            for raw in handle:
                if not raw.endswith(b"\n") or len(raw) > MAX_LINE:
                    continue  # torn (the writer was killed) or not ours
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(entry, dict) or not isinstance(entry.get("time"), (int, float)):
                    continue
                if host is not None and entry.get("host") != host:
                    continue
                moment = float(entry["time"])
                if (since is not None and moment < since) or (until is not None and moment > until):
                    continue
                yield entry

    def transitions(self, host: str | None = None) -> list[dict[str, Any]]:
        found = [e for e in self.entries(host=host) if e.get("kind") == "transition"]
        found.sort(key=lambda e: float(e["time"]))
        return found

    def last_state(self) -> dict[str, dict[str, Any]]:
        """The last transition of every host (what a restarted watcher starts from)."""
        last: dict[str, dict[str, Any]] = {}
        for entry in self.transitions():
            last[str(entry.get("host"))] = entry
        return last

    def cursors(self) -> dict[str, tuple[str, int]]:
        """Per host, the (agent_id, seq) of the newest agent entry recorded: what was already collected."""
        found: dict[str, tuple[str, int]] = {}
        for entry in self.entries():
            if entry.get("source") == "agent" and isinstance(entry.get("seq"), int):
                key = str(entry.get("host"))
                agent = str(entry.get("agent_id"))
                if key not in found or found[key][0] != agent or found[key][1] < entry["seq"]:
                    found[key] = (agent, entry["seq"])
        return found

    def unhealthy_windows(self, host: str, since: Any = None, until: Any = None) -> list[Window]:
        """The spans of [since, until] in which the ledger has `host` in a state other than ready.

        The state at `since` is the one of the last transition before it; a window still open at
        `until` ends there (end None when until was not given: it lasts). Hosts never recorded have
        no windows: the ledger only knows what a watcher saw.
        """
        start = parse_time(since)
        stop = parse_time(until)
        windows: list[Window] = []
        current: dict[str, Any] | None = None
        opened: float | None = None
        for entry in self.transitions(host):
            moment = float(entry["time"])
            if stop is not None and moment > stop:
                break
            unhealthy = entry.get("to") != READY
            if current is not None and opened is not None:
                windows.append(_window(host, current, opened, moment))
                current, opened = None, None
            if unhealthy:
                current, opened = entry, moment
        if current is not None and opened is not None:
            windows.append(_window(host, current, opened, stop))
        clipped = []
        for window in windows:
            begin = max(window.start, start) if start is not None else window.start
            end = window.end
            if start is not None and end is not None and end <= start:
                continue
            if end is not None and stop is not None:
                end = min(end, stop)
            clipped.append(Window(host, begin, end, window.state, window.exit_code, window.exit_name,
                                  window.layer, window.message))
        return _merge(clipped)


def _window(host: str, entry: dict[str, Any], start: float, end: float | None) -> Window:
    code = entry.get("exit_code")
    return Window(host=host, start=start, end=end, state=str(entry.get("to")),
                  exit_code=code if isinstance(code, int) else None, exit_name=entry.get("exit_name"),
                  layer=entry.get("layer"), message=str(entry.get("message") or ""))


def _merge(windows: list[Window]) -> list[Window]:
    """Back-to-back windows (not_ready at one layer, then another) stay separate records but a
    window of zero length is dropped."""
    return [w for w in windows if w.end is None or w.end > w.start]


def unhealthy_windows(host: str, since: Any = None, until: Any = None, *,
                      state_dir: str | os.PathLike[str] | None = None, path: str | os.PathLike[str] | None = None) -> list[Window]:
    """Spans in which `host` was not ready, from the ledger of `state_dir` (or the file `path`)."""
    return Ledger(path or default_path(state_dir)).unhealthy_windows(host, since, until)


def overlaps(host: str, since: Any, until: Any, **kwargs: Any) -> bool:
    """Whether a task that ran on `host` from since to until overlapped an unhealthy span."""
    return bool(unhealthy_windows(host, since, until, **kwargs))
