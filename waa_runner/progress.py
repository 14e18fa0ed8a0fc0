"""Live progress of a run: a per-host table drawn by rich on a terminal, plain lines otherwise.

Both take the ProgressEvents of waa_runner.results (through `on_event`); they are called from the
runner's worker thread, and the table also redraws once a second (rich's refresh thread) so elapsed
times move while a host waits for Windows.

Which one a stream gets (`for_stream`) follows the terminal conventions rich implements: a stream
that is not a TTY, or a terminal with TERM=dumb (or unknown), gets plain lines without escapes;
NO_COLOR keeps the table but draws it without colour; FORCE_COLOR forces the table.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

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
        self.style = ""
        self.started = now
        self.finished: float | None = None


class TerminalProgress:
    """For a terminal: a per-host table (phase, elapsed, activity or pull bytes with ETA) that rich
    redraws in place. Host names and messages are drawn as text, never read as rich markup."""

    def __init__(self, stream: TextIO | None = None, min_interval_s: float = 0.2, tick_s: float = 1.0,
                 console: Console | None = None) -> None:
        self.stream = stream or sys.stderr
        self.console = console or Console(file=self.stream, highlight=False)
        self.min_interval_s = min_interval_s
        self.tick_s = tick_s
        self.rows: dict[str, _Row] = {}
        self.note = ""
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._lock = threading.Lock()  # guards rows/note; never held while rich's Live lock is taken
        self._live: Live | None = None
        self._closed = False

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            if not event.host:
                self.note = event.message
            else:
                row = self.rows.setdefault(event.host, _Row(now))
                if event.kind == "phase":
                    row.phase, row.activity, row.style = event.phase or "-", event.message, ""
                elif event.kind == "pull" and event.pull is not None:
                    row.activity, row.style = event.pull.line(), ""
                elif event.kind in ("step", "retry"):
                    row.activity, row.style = event.message, "yellow" if event.kind == "retry" else ""
                elif event.kind == "health":
                    row.activity = event.message
                    if event.message == "ready":
                        row.finished, row.style = now, "green"
                elif event.kind == "host_failed":
                    row.activity, row.finished, row.style = f"FAILED: {event.message}", now, "bold red"
                elif event.kind == "host_unreachable":
                    row.activity, row.finished, row.style = f"UNREACHABLE: {event.message}", now, "bold magenta"
            urgent = event.kind in ("host_failed", "host_unreachable", "health", "phase")
            draw = urgent or now - self._last_draw >= self.min_interval_s
            if draw:
                self._last_draw = now
            live = self._live
            start = live is None
        if start:
            self._start()
        elif draw and live is not None:
            live.refresh()

    def _start(self) -> None:
        live = Live(get_renderable=self.render, console=self.console, auto_refresh=self.tick_s > 0,
                    refresh_per_second=1 / self.tick_s if self.tick_s > 0 else 1,
                    transient=False, redirect_stdout=False, redirect_stderr=False)
        with self._lock:
            if self._live is not None or self._closed:
                return
            self._live = live
        live.start(refresh=True)

    def render(self) -> RenderableType:
        """The header line and the host table as of now (rich calls this on every refresh)."""
        with self._lock:
            now = time.monotonic()
            height = max(5, self.console.size.height - 2)
            items = sorted(self.rows.items())
            shown = items if len(items) <= height - 2 else items[:height - 3]
            header = Text.assemble(("waa-run", "bold"), f"  {now - self.started:6.1f}s  {len(self.rows)} host(s)  ",
                                   self.note, no_wrap=True, overflow="ellipsis")
            table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold", expand=False)
            table.add_column("HOST", no_wrap=True, max_width=24, overflow="ellipsis")
            table.add_column("PHASE", no_wrap=True, max_width=20, overflow="ellipsis", style="cyan")
            table.add_column("TIME", justify="right", no_wrap=True)
            table.add_column("ACTIVITY", no_wrap=True, overflow="ellipsis")
            for name, row in shown:
                elapsed = (row.finished or now) - row.started
                table.add_row(Text(name), Text(row.phase), f"{elapsed:.0f}s", Text(row.activity, style=row.style))
            parts: list[RenderableType] = [header, table]
            if len(shown) < len(items):
                parts.append(Text(f"... and {len(items) - len(shown)} more host(s)"))
            return Group(*parts)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            live = self._live
        if live is not None:
            live.stop()  # draws the final state once more and leaves it on the screen


def for_stream(stream: TextIO, *, json_mode: bool) -> PlainProgress | TerminalProgress | None:
    """The table on a terminal that can redraw; plain lines on a dumb terminal or into a pipe or file;
    nothing for --json into a pipe (the JSON report is the output there)."""
    console = Console(file=stream, highlight=False)
    if console.is_dumb_terminal:  # a person watches, but the terminal cannot move the cursor
        return PlainProgress(stream)
    if console.is_terminal:
        return TerminalProgress(stream, console=console)
    return None if json_mode else PlainProgress(stream)
