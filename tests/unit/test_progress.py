"""The live progress view: a rich table on a terminal that can redraw, plain lines on a dumb
terminal or into a pipe, no colour with NO_COLOR; checked on rich consoles writing to memory and
once on a real pseudo-terminal."""
from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from waa_runner.progress import PlainProgress, TerminalProgress, for_stream
from waa_runner.results import ProgressEvent, PullProgress

REPO = Path(__file__).resolve().parents[2]
SGR_COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-7]m|\x1b\[[0-9;]*9[0-7]m")  # a foreground colour
CURSOR_UP = "\x1b[1A"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _console(out: io.StringIO, **kwargs) -> Console:
    kwargs.setdefault("color_system", "standard")
    return Console(file=out, force_terminal=True, width=100, height=30, highlight=False, **kwargs)


def _events() -> list[ProgressEvent]:
    pull = PullProgress.from_dict({"bytes_done": 10 * 2 ** 20, "bytes_total": 100 * 2 ** 20, "elapsed_s": 1})
    return [ProgressEvent("phase", "host1", phase="winarena_image"),
            ProgressEvent("pull", "host1", phase="winarena_image", pull=pull),
            ProgressEvent("phase", "host2", phase="waa_health"),
            ProgressEvent("host_failed", "host2", phase="waa_health", message="waa_server: down [bold]x[/bold]"),
            ProgressEvent("health", "host3", message="ready")]


def _draw(console: Console) -> str:
    out = console.file
    progress = TerminalProgress(out, min_interval_s=0, tick_s=0, console=console)  # type: ignore[arg-type]
    for event in _events():
        progress(event)
    progress.close()
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def _last_frame(text: str) -> list[str]:
    """The screen after the last redraw, without escapes."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text.split("\r")[-1] if "\r" in text else text)
    return [line.rstrip() for line in plain.splitlines() if line.strip()]


def test_the_table_is_redrawn_in_place_with_a_row_per_host():
    text = _draw(_console(io.StringIO()))
    assert CURSOR_UP in text, "each redraw moves the cursor back over the previous table"
    frame = _last_frame(text)
    assert frame[0].startswith("waa-run") and "3 host(s)" in frame[0]
    assert frame[1].split() == ["HOST", "PHASE", "TIME", "ACTIVITY"]
    rows = {line.split()[0]: line for line in frame[2:]}
    assert "winarena_image" in rows["host1"] and "pulling 10/100 MB" in rows["host1"]
    # A message is text, never rich markup: the brackets stay as they came.
    assert "FAILED: waa_server: down [bold]x[/bold]" in rows["host2"]
    assert rows["host3"].endswith("ready")


def test_failures_are_red_and_ready_hosts_green():
    text = _draw(_console(io.StringIO()))
    assert "\x1b[1;31mFAILED: waa_server" in text and "\x1b[32mready" in text


def test_no_color_keeps_the_table_without_colour(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("TERM", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    out = _Tty()
    progress = for_stream(out, json_mode=False)
    assert isinstance(progress, TerminalProgress) and progress.console.no_color
    for event in _events():
        progress(event)
    progress.close()
    text = out.getvalue()
    assert "host2" in text and "FAILED" in text and not SGR_COLOUR.search(text)


@pytest.mark.parametrize("term", ["dumb", "unknown"])
def test_a_dumb_terminal_gets_plain_lines(monkeypatch, term):
    monkeypatch.setenv("TERM", term)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    out = _Tty()
    progress = for_stream(out, json_mode=False)
    assert isinstance(progress, PlainProgress)
    for event in _events():
        progress(event)
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().splitlines()[0] == "host1: phase winarena_image"
    # --json with the progress going to a dumb terminal: a person still watches stderr.
    assert isinstance(for_stream(_Tty(), json_mode=True), PlainProgress)


def test_a_pipe_gets_plain_lines_and_nothing_beside_json(monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    assert isinstance(for_stream(io.StringIO(), json_mode=False), PlainProgress)
    assert for_stream(io.StringIO(), json_mode=True) is None


def test_many_hosts_are_cut_to_the_terminal_height():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=10, color_system=None)
    progress = TerminalProgress(out, min_interval_s=0, tick_s=0, console=console)
    for number in range(20):
        progress(ProgressEvent("phase", f"host{number:02d}", phase="winarena_container"))
    progress.close()
    frame = _last_frame(out.getvalue())
    assert frame[-1] == "... and 15 more host(s)" and len(frame) <= 10


def test_close_without_events_draws_nothing():
    out = io.StringIO()
    TerminalProgress(out, console=_console(out)).close()
    assert out.getvalue() == ""


def test_the_table_on_a_real_pseudo_terminal():
    """waa-run's own choice (for_stream on stderr) on a real pty, as a person's terminal has it."""
    script = (
        "import sys\n"
        "from waa_runner.progress import for_stream, TerminalProgress\n"
        "from waa_runner.results import ProgressEvent\n"
        "p = for_stream(sys.stderr, json_mode=False)\n"
        "print(type(p).__name__, file=sys.stderr)\n"
        "p(ProgressEvent('phase', 'host1', phase='waa_health'))\n"
        "p.close()\n"
    )
    outputs = {}
    for term in ("xterm-256color", "dumb"):
        primary, secondary = pty.openpty()
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
        env.update(TERM=term, COLUMNS="100", LINES="30", PYTHONPATH=str(REPO))
        proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=secondary, env=env, cwd=REPO)
        os.close(secondary)
        chunks: list[bytes] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # the child closed the pty
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        os.close(primary)
        assert proc.wait(timeout=10) == 0
        outputs[term] = b"".join(chunks).decode(errors="replace")
    assert outputs["xterm-256color"].startswith("TerminalProgress") and "\x1b[" in outputs["xterm-256color"]
    assert "host1" in outputs["xterm-256color"] and "waa_health" in outputs["xterm-256color"]
    assert outputs["dumb"].startswith("PlainProgress") and "\x1b" not in outputs["dumb"]
    assert "host1: phase waa_health" in outputs["dumb"]
