"""The health ledger: append-only JSON lines that survive a killed writer; unhealthy windows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from waa_runner.ledger import Ledger, parse_time, unhealthy_windows

REPO = Path(__file__).resolve().parents[2]


def transition(host: str, at: float, to: str, code: int, layer: str | None = None) -> dict:
    return {"time": at, "host": host, "kind": "transition", "to": to, "exit_code": code, "layer": layer,
            "exit_name": "x", "message": f"{to} at {at}"}


def test_entries_come_back_in_order_and_filtered(tmp_path):
    book = Ledger(tmp_path / "ledger.jsonl")
    book.append(transition("a", 100, "ready", 0))
    book.append_many([transition("b", 110, "not_ready", 6, "waa_server"), transition("a", 120, "not_ready", 5)])
    assert [e["time"] for e in book.entries()] == [100, 110, 120]
    assert [e["time"] for e in book.entries(host="a")] == [100, 120]
    assert [e["time"] for e in book.entries(since=105, until=115)] == [110]
    assert all(e["time_iso"].endswith("Z") for e in book.entries() if "time_iso" in e)


def test_a_torn_last_line_is_skipped_and_ended_before_the_next_append(tmp_path):
    path = tmp_path / "ledger.jsonl"
    book = Ledger(path)
    book.append(transition("a", 100, "ready", 0))
    with open(path, "ab") as handle:  # what a writer killed in the middle of a line leaves
        handle.write(b'{"time": 200, "host": "a", "kind": "transi')
    assert [e["time"] for e in book.entries()] == [100]
    book.append(transition("a", 300, "not_ready", 6))
    assert [e["time"] for e in book.entries()] == [100, 300]
    assert path.read_bytes().count(b"\n") == 3  # the torn line was ended, not glued to the new one


def test_the_ledger_survives_kill_9_of_its_writer(tmp_path):
    path = tmp_path / "ledger.jsonl"
    code = ("import sys, itertools; sys.path.insert(0, %r)\n"
            "from waa_runner.ledger import Ledger\n"
            "book = Ledger(%r)\n"
            "for i in itertools.count():\n"
            "    book.append({'time': 1000 + i, 'host': 'h', 'kind': 'transition', 'to': 'ready' if i %% 2 else 'not_ready',"
            " 'message': 'x' * 2000})\n") % (str(REPO), str(path))
    writer = subprocess.Popen([sys.executable, "-c", code])
    end = time.monotonic() + 30
    while time.monotonic() < end and (not path.exists() or path.stat().st_size < 200_000):
        time.sleep(0.02)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    entries = list(Ledger(path).entries())
    assert len(entries) >= 50
    assert [e["time"] for e in entries] == list(range(1000, 1000 + len(entries)))  # no hole, no garbage


def test_unhealthy_windows_clip_to_the_range_and_start_from_the_state_before_it(tmp_path):
    book = Ledger(tmp_path / "ledger.jsonl")
    book.append_many([transition("h", 100, "ready", 0), transition("h", 200, "not_ready", 6, "waa_server"),
                      transition("h", 260, "ready", 0), transition("h", 400, "unreachable", 10),
                      transition("other", 150, "not_ready", 5)])
    windows = book.unhealthy_windows("h", 0, 1000)
    assert [(w.start, w.end, w.exit_code) for w in windows] == [(200, 260, 6), (400, 1000, 10)]
    assert [(w.start, w.end) for w in book.unhealthy_windows("h", 230, 300)] == [(230, 260)]
    assert book.unhealthy_windows("h", 270, 390) == []
    assert [(w.start, w.end) for w in book.unhealthy_windows("h", 500, None)] == [(500, None)]
    assert windows[0].layer == "waa_server" and windows[0].to_dict()["duration_s"] == 60
    assert unhealthy_windows("h", 0, 1000, path=tmp_path / "ledger.jsonl") == windows
    assert book.unhealthy_windows("never-seen", 0, 1000) == []


def test_times_are_iso_unix_now_or_a_duration_ago():
    assert parse_time("2026-12-01T09:30:00Z") == parse_time("2026-12-01T09:30:00") == 1796117400.0
    assert parse_time("1796117400") == 1796117400.0
    assert parse_time("15m", now=1000.0) == 100.0
    assert parse_time("now", now=5.0) == 5.0
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday-ish")


def test_cli_ledger_prints_entries_and_windows(tmp_path):
    book = Ledger(tmp_path / "ledger.jsonl")
    book.append_many([transition("h", 100, "ready", 0), transition("h", 200, "not_ready", 6, "waa_server"),
                      transition("h", 260, "ready", 0)])

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "waa_runner.cli_watch", "ledger", "--state-dir", str(tmp_path),
                               *args], capture_output=True, text=True, cwd=REPO)

    lines = run("--json", "--since", "150", "--until", "300").stdout.splitlines()
    assert [json.loads(line)["time"] for line in lines] == [200, 260]
    window = json.loads(run("--json", "--unhealthy", "--since", "0", "--until", "1000").stdout)
    assert (window["start"], window["end"], window["exit_code"]) == (200, 260, 6)
    bad = run("--since", "whenever")
    assert bad.returncode == 64 and "not a time" in bad.stderr
