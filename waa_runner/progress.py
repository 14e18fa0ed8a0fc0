"""Live progress for a terminal (a redrawn table) or for logs (plain lines)."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from waa_runner.results import ProgressEvent


class PlainProgress:
    """One line per phase change, pull progress at most every few seconds, failures at once."""

    def __init__(self, stream: TextIO = sys.stderr, pull_every_s: float = 5.0) -> None:
        self.stream = stream
        self.pull_every_s = pull_every_s
        self._last_pull: dict[str, float] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "phase":
            self._write(f"{event.host}: {event.phase}")
        elif event.kind == "pull" and event.pull is not None:
            now = time.monotonic()
            if now - self._last_pull.get(event.host, 0.0) >= self.pull_every_s:
                self._last_pull[event.host] = now
                self._write(f"{event.host}: {event.pull.line()}")
        elif event.kind == "host_failed":
            self._write(f"{event.host}: FAILED in {event.phase}: {event.message}")
        elif event.kind == "host_unreachable":
            self._write(f"{event.host}: UNREACHABLE: {event.message}")

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class TerminalProgress:
    """A per-host table (phase, last activity) redrawn in place."""

    def __init__(self, stream: TextIO = sys.stderr, min_interval_s: float = 0.2) -> None:
        self.stream = stream
        self.rows: dict[str, str] = {}
        self.drawn = 0
        self.started = time.monotonic()
        self.min_interval_s = min_interval_s
        self._last_draw = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "phase":
            self.rows[event.host] = f"{event.phase}"
        elif event.kind == "pull" and event.pull is not None:
            self.rows[event.host] = f"{event.phase}: {event.pull.line()}"
        elif event.kind == "step" and event.step is not None:
            self.rows[event.host] = f"{event.phase}: {event.step.task}"
        elif event.kind == "host_failed":
            self.rows[event.host] = f"FAILED in {event.phase}: {event.message}"
        elif event.kind == "host_unreachable":
            self.rows[event.host] = f"UNREACHABLE: {event.message}"
        now = time.monotonic()
        if now - self._last_draw >= self.min_interval_s or event.kind.startswith("host_"):
            self._draw()
            self._last_draw = now

    def _draw(self) -> None:
        width = 120
        lines = [f"[{time.monotonic() - self.started:6.1f}s] {len(self.rows)} host(s)"]
        lines += [f"  {host:<20} {row}"[:width] for host, row in sorted(self.rows.items())]
        out = ""
        if self.drawn:
            out += f"\x1b[{self.drawn}F"
        out += "".join(f"\x1b[2K{line}\n" for line in lines)
        self.stream.write(out)
        self.stream.flush()
        self.drawn = len(lines)

    def close(self) -> None:
        if self.rows:
            self._draw()
