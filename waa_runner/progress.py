"""Live progress of a run: a redrawn per-host table on a terminal, plain lines otherwise.

Both take the ProgressEvents of waa_runner.results (through `on_event`); they are called from the
runner's worker thread, and the table also redraws once a second from its own thread so elapsed
times move while a host waits for Windows.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

from waa_runner.results import ProgressEvent


class PlainProgress:
    """For logs: one line when a host enters a phase (the first time), per verdict and per failure;
    pull progress at most every `pull_every_s`."""

    def __init__(self, stream: TextIO | None = None, pull_every_s: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.pull_every_s = pull_every_s
        self._last_pull: dict[str, float] = {}
        self._phases: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        line = self.line(event)
        if line is not None:
            with self._lock:
                self.stream.write(line + "\n")
                self.stream.flush()

    def line(self, event: ProgressEvent) -> str | None:
        host = event.host
        if event.kind == "phase":
            seen = self._phases.setdefault(host, set())
            if event.phase in seen:  # a role that looks up another one's state, then goes on: no new line
                return None
            seen.add(event.phase or "")
            return f"{host}: phase {event.phase}"
        if event.kind == "pull" and event.pull is not None:
            now = time.monotonic()
            finished = event.pull.bytes_total and event.pull.bytes_done >= event.pull.bytes_total
            if host in self._last_pull and now - self._last_pull[host] < self.pull_every_s and not finished:
                return None
            self._last_pull[host] = now
            return f"{host}: {event.pull.line()}"
        if event.kind == "health":
            return f"{host}: {event.message}"
        if event.kind == "host_failed":
            return f"{host}: FAILED in {event.phase or 'setup'}: {event.message}"
        if event.kind == "host_unreachable":
            return f"{host}: UNREACHABLE: {event.message}"
        if event.kind in ("lock_wait", "build"):
            return f"waa-run: {event.message}"
        return None

    def close(self) -> None:
        pass


class _Row:
    def __init__(self, now: float) -> None:
        self.phase = "-"
        self.activity = ""
        self.started = now
        self.finished: float | None = None


class TerminalProgress:
    """For a terminal: a per-host table (phase, elapsed, activity or pull bytes with ETA) redrawn in place."""

    def __init__(self, stream: TextIO | None = None, min_interval_s: float = 0.2, tick_s: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self.rows: dict[str, _Row] = {}
        self.note = ""
        self.started = time.monotonic()
        self._drawn = 0
        self._last_draw = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(tick_s,), daemon=True)
        self._ticker.start()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            now = time.monotonic()
            if not event.host:
                self.note = event.message
            else:
                row = self.rows.setdefault(event.host, _Row(now))
                if event.kind == "phase":
                    row.phase, row.activity = event.phase or "-", event.message
                elif event.kind == "pull" and event.pull is not None:
                    row.activity = event.pull.line()
                elif event.kind in ("step", "retry"):
                    row.activity = event.message
                elif event.kind == "health":
                    row.activity = event.message
                    if event.message == "ready":
                        row.finished = now
                elif event.kind == "host_failed":
                    row.activity, row.finished = f"FAILED: {event.message}", now
                elif event.kind == "host_unreachable":
                    row.activity, row.finished = f"UNREACHABLE: {event.message}", now
            urgent = event.kind in ("host_failed", "host_unreachable", "health", "phase")
            if urgent or now - self._last_draw >= self.min_interval_s:
                self._draw(now)

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            with self._lock:
                if self.rows or self.note:
                    self._draw(time.monotonic())

    def _draw(self, now: float) -> None:
        size = shutil.get_terminal_size((100, 24))
        width, height = max(40, size.columns - 1), max(5, size.lines - 2)
        lines = [f"waa-run  {now - self.started:6.1f}s  {len(self.rows)} host(s)  {self.note}"[:width],
                 f"{'HOST':<18} {'PHASE':<20} {'TIME':>6}  ACTIVITY"[:width]]
        items = sorted(self.rows.items())
        shown = items if len(items) <= height - 2 else items[:height - 3]
        for name, row in shown:
            elapsed = (row.finished or now) - row.started
            lines.append(f"{name[:18]:<18} {row.phase[:20]:<20} {elapsed:5.0f}s  {row.activity}"[:width])
        if len(shown) < len(items):
            lines.append(f"... and {len(items) - len(shown)} more host(s)")
        out = f"\x1b[{self._drawn}F" if self._drawn else ""
        out += "".join(f"\x1b[2K{line}\n" for line in lines)
        if self._drawn > len(lines):
            out += "\x1b[2K\n" * (self._drawn - len(lines)) + f"\x1b[{self._drawn - len(lines)}F"
        self.stream.write(out)
        self.stream.flush()
        self._drawn = len(lines)
        self._last_draw = now

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=2)
        with self._lock:
            if self.rows or self.note:
                self._draw(time.monotonic())


def for_stream(stream: TextIO, *, json_mode: bool) -> PlainProgress | TerminalProgress | None:
    """The table on a terminal; plain lines otherwise; nothing for --json into a pipe."""
    if stream.isatty():
        return TerminalProgress(stream)
    return None if json_mode else PlainProgress(stream)
