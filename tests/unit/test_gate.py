"""waa-run gate: 0 only for a fresh ready verdict; else the verdict's code, 16 when stale, 9 when none."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from waa_runner.gate import gate

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "roles" / "waa_agent" / "files"))
import waa_agent  # noqa: E402  (the agent's own writer)


def write_latest(directory: Path, code: int, name: str, age: float, interval: float = 30, layer: str | None = None):
    directory.mkdir(parents=True, exist_ok=True)
    moment = time.time() - age
    waa_agent.write_json_atomic(str(directory / "latest.json"), {
        "time": moment, "interval_s": interval, "state": "ready" if code == 0 else "not_ready", "since": moment,
        "verdict": {"exit_code": code, "exit_name": name, "layer": layer, "message": f"{name}: test",
                    "hint": "" if code == 0 else "do something", "step": "waa_health", "failure_class": None}})


def test_a_fresh_ready_verdict_opens_the_gate(tmp_path):
    write_latest(tmp_path / "agent", 0, "ready", age=1)
    result = gate("localhost", agent_dir=str(tmp_path / "agent"), state_dir=tmp_path / "state")
    assert result.ok and result.exit_code == 0 and result.max_age_s == 60 and result.age_s < 5


def test_a_not_ready_verdict_closes_it_with_its_own_code(tmp_path):
    write_latest(tmp_path / "agent", 6, "waa_server", age=1, layer="waa_server")
    result = gate("localhost", agent_dir=str(tmp_path / "agent"), state_dir=tmp_path / "state")
    assert (result.exit_code, result.exit_name, result.hint) == (6, "waa_server", "do something")


def test_a_stale_verdict_is_16_and_max_age_defaults_to_two_intervals(tmp_path):
    write_latest(tmp_path / "agent", 0, "ready", age=25, interval=10)
    result = gate("localhost", agent_dir=str(tmp_path / "agent"), state_dir=tmp_path / "state")
    assert result.exit_code == 16 and "stale" in result.message and result.max_age_s == 20
    assert gate("localhost", agent_dir=str(tmp_path / "agent"), state_dir=tmp_path / "state", max_age=30).ok


def test_no_verdict_is_9_and_says_where_it_looked(tmp_path):
    result = gate("localhost", agent_dir=str(tmp_path / "nothing"), state_dir=tmp_path / "state")
    assert result.exit_code == 9 and str(tmp_path / "nothing") in result.message
    remote = gate("waa-7", state_dir=tmp_path / "state")
    assert remote.exit_code == 9 and "waa-run watch" in remote.hint


def test_a_remote_host_is_answered_from_the_watchers_record(tmp_path):
    hosts = tmp_path / "state" / "watch" / "hosts"
    hosts.mkdir(parents=True)
    latest = {"time": time.time() - 100, "interval_s": 30,
              "verdict": {"exit_code": 0, "exit_name": "ready", "message": "ready"}}
    (hosts / "waa-1.json").write_text(json.dumps({"local": False, "skew_s": 90, "latest": latest}))
    assert gate("waa-1", state_dir=tmp_path / "state").ok  # the host's clock is 90 s behind ours
    (hosts / "waa-1.json").write_text(json.dumps({"local": False, "skew_s": 0, "latest": latest}))
    assert gate("waa-1", state_dir=tmp_path / "state").exit_code == 16


def test_the_command_exits_with_the_code_fast(tmp_path):
    write_latest(tmp_path / "agent", 6, "waa_server", age=1, layer="waa_server")
    argv = [sys.executable, "-m", "waa_runner.cli_watch", "gate", "localhost", "--agent-dir", str(tmp_path / "agent"),
            "--state-dir", str(tmp_path / "state")]
    timings = []
    for _ in range(3):
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
        timings.append(time.monotonic() - started)
    assert proc.returncode == 6 and "closed" in proc.stdout and "hint: do something" in proc.stdout
    assert min(timings) < 0.3, timings
    write_latest(tmp_path / "agent", 0, "ready", age=1)
    proc = subprocess.run([*argv, "--json"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"] is True
