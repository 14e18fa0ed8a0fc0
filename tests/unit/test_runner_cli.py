"""waa-run's command line without running anything: parsing, usage errors (exit 64, nothing run,
nothing written), the JSON report of a run that never started, progress output, --help speed,
and docs/exit-codes.md against the one table."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from waa_runner import api, cli
from waa_runner import exit_codes as codes
from waa_runner.progress import PlainProgress
from waa_runner.results import ProgressEvent, PullProgress, StepResult

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def nothing_runs(monkeypatch, tmp_path):
    """Fail the test if a run would start; point the state dir at tmp_path."""
    def refuse(*args, **kwargs):
        raise AssertionError("a run started")

    monkeypatch.setattr(api, "_run", refuse)
    monkeypatch.setenv("WAA_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


@pytest.mark.parametrize("argv,needle", [
    (["up", "--forks", "0"], "at least 1"),
    (["up", "--forks", "many"], "not a whole number"),
    (["up", "--timeout", "-5"], "greater than 0"),
    (["up", "--health-timeout", "0"], "greater than 0"),
    (["up", "--wait-lock", "-1"], "at least 0"),
    (["up", "--max-fail-percentage", "101"], "at most 100"),
    (["up", "-i", "/nonexistent/inventory.yml"], "/nonexistent/inventory.yml"),
    (["up", "-i", "inventory/local.yml", "--local"], "not both"),
    (["up", "--emulator", "--image", "x:y"], "not both"),
    (["up", "--image", "has space"], "not an image reference"),
    (["up", "-e", "novalue"], "KEY=VALUE"),
    (["up", "-e", "1bad=3"], "not a valid Ansible variable name"),
    (["up", "-e", "@/nonexistent/vars.yml"], "does not exist"),
    (["up", "-e", "{not json"], "not valid JSON"),
    (["up", "--limit", "   "], "not a host pattern"),
    (["up", "--limit", "a b"], "not a host pattern"),
    (["up", "--limit", "web[0:3"], "not a host pattern"),
    (["probe", "--deallocate"], "unrecognized arguments"),
    (["explode"], "invalid choice"),
    ([], "required"),
])
def test_usage_errors_exit_64_and_nothing_runs(nothing_runs, capsys, argv, needle):
    code = _main(argv)
    err = capsys.readouterr().err
    assert code == cli.usage_code() == codes.USAGE == 64
    assert needle in err and err.count("waa-run:") == 1, err
    assert not (nothing_runs / "state" / "runs").exists()


def _main(argv):
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return exit_.code


def test_a_usage_error_with_json_still_prints_one_report(nothing_runs, capsys):
    assert _main(["up", "--json", "--limit", "a b"]) == 64
    report = json.loads(capsys.readouterr().out)
    assert (report["exit_code"], report["exit_name"], report["runner_status"], report["hosts"]) == (
        64, "usage", "not_started", {})
    assert "limit 'a b'" in report["summary"] and report["schema_version"] == 1
    assert _main(["nope", "--json"]) == 64
    assert json.loads(capsys.readouterr().out)["exit_code"] == 64


def test_the_cli_passes_what_it_parsed_to_the_api(monkeypatch, tmp_path, capsys):
    calls = {}

    def fake(name):
        def run(**kwargs):
            calls[name] = kwargs
            from waa_runner.results import EventReducer, build_run_result
            return build_run_result(name, EventReducer(name), "successful", 0, time.monotonic(), None)
        return run

    for name in ("up", "probe", "down"):
        monkeypatch.setattr(api, name, fake(name))
    vars_file = tmp_path / "v.yml"
    vars_file.write_text("waa_registry_password: pw\nnested: {a: 1}\n")
    _main(["up", "--local", "--emulator", "-l", "waa", "--forks", "3", "--timeout", "60", "--health-timeout", "30",
           "-e", "n=3", "-e", "flag=true", "-e", "name=01", "-e", f"@{vars_file}", "--no-pull", "--wait-lock", "5",
           "--state-dir", str(tmp_path), "-vv", "--max-fail-percentage", "10"])
    up = calls["up"]
    assert (up["local"], up["inventory"], up["emulator"], up["limit"], up["forks"], up["timeout"]) == (
        True, None, True, "waa", 3, 60.0)
    assert up["extra_vars"] == {"n": 3, "flag": True, "name": "01", "waa_registry_password": "pw", "nested": {"a": 1}}
    assert (up["health_timeout"], up["pull"], up["wait_lock"], up["verbosity"], up["max_fail_percentage"]) == (
        30.0, False, 5.0, 2, 10)
    assert callable(up["cancel"]) and up["cancel"]() is False
    _main(["probe", "-i", str(vars_file), "--wait", "--force"])
    assert (calls["probe"]["inventory"], calls["probe"]["local"], calls["probe"]["wait"], calls["probe"]["force"]) == (
        str(vars_file), False, True, True)
    _main(["down", "--deallocate", "--remove"])
    assert calls["down"]["deallocate"] and calls["down"]["remove"] and "image" not in calls["down"]


def test_down_and_probe_add_their_variables(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(api, "_run", lambda playbook, inventory, limit, variables, **kw: seen.setdefault(playbook,
                                                                                                        variables))
    api.down(deallocate=True, remove=True, extra_vars={"x": 1}, state_dir=tmp_path)
    api.probe(wait=True, force=True, state_dir=tmp_path)
    down = {key: value for key, value in seen["down"].items() if not key.startswith("waa_lock_")}  # the host lock's
    assert down == {"x": 1, "waa_container_down_mode": "absent", "waa_deallocate": True}
    assert seen["probe"] == {"waa_probe_wait": True, "waa_health_force_probe": True}


def test_the_api_refuses_an_unknown_keyword_with_the_closest_one(tmp_path):
    with pytest.raises(api.UsageError, match=r"up takes no option 'health_timout' \(did you mean health_timeout\?\)"):
        api.up(health_timout=5, state_dir=tmp_path)
    with pytest.raises(api.UsageError, match="health_timeout inf must be a finite number greater than 0"):
        api.up(health_timeout=float("inf"), state_dir=tmp_path)


def test_every_option_is_described_once_and_drives_both_the_cli_and_the_api():
    from waa_runner import options

    for function in options.COMMANDS:
        doc = getattr(api, function).__doc__
        for option in options.for_command(function):
            assert f"{option.name}: {option.help}" in doc
        flags = {flag for option in options.for_command(function) for flag in option.flags}
        sub = next(action for action in cli.build_parser()._actions if action.dest == "command")
        parser = sub.choices[function.replace("_", "-")]
        assert flags <= {flag for action in parser._actions for flag in action.option_strings}


def test_extra_vars_parsing(tmp_path):
    (tmp_path / "v.yml").write_text("a: 1\nb: [x]\n")
    (tmp_path / "v.json").write_text('{"c": {"d": null}}')
    assert cli.parse_extra_vars(["n=3", "s=text with = sign", 'j={"k": true}', "e=", f"@{tmp_path / 'v.yml'}",
                                 f"@{tmp_path / 'v.json'}", '{"z": [1]}']) == {
        "n": 3, "s": "text with = sign", "j": {"k": True}, "e": "", "a": 1, "b": ["x"], "c": {"d": None}, "z": [1]}
    (tmp_path / "list.yml").write_text("- 1\n")
    (tmp_path / "bad.yml").write_text("a: [\n")
    for item, message in [("@" + str(tmp_path / "list.yml"), "mapping"), ("@" + str(tmp_path / "bad.yml"), "YAML")]:
        with pytest.raises(cli.CliError, match=message):
            cli.parse_extra_vars([item])


def test_help_answers_fast_without_importing_ansible():
    best = None
    for _ in range(3):
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "waa_runner.cli", "--help"], cwd="/",
                              capture_output=True, text=True, timeout=30)
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    assert proc.returncode == 0 and "vm-setup" in proc.stdout and "64  usage" in proc.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert not [name for name in imported if name.split(".")[0] in ("ansible", "ansible_runner", "yaml")]
    print(f"waa-run --help: best of 3 {best:.3f}s (benchmarks measure speed; this checks the imports)")


def test_docs_table_matches_the_one_source():
    text = (REPO / "docs" / "exit-codes.md").read_text()
    assert codes.markdown_table() in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    documented = {int(line.split("|")[1]) for line in rows if line.count("|") == 5}
    assert documented == set(codes.EXIT_CODES)


def test_help_lists_every_code_of_the_table(capsys):
    assert _main(["--help"]) == 0
    out = capsys.readouterr().out
    for code, row in codes.EXIT_CODES.items():
        assert f"{code:>3}  {row.name}" in out


def test_plain_progress_lines():
    out = io.StringIO()
    progress = PlainProgress(out, pull_every_s=60)
    pull = PullProgress.from_dict({"bytes_done": 120 * 2 ** 20, "bytes_total": 900 * 2 ** 20, "elapsed_s": 6.15,
                                   "layers_done": 1, "layers_total": 4})
    for item in [ProgressEvent("phase", "host1", phase="winarena_image"),
                 ProgressEvent("pull", "host1", pull=pull), ProgressEvent("pull", "host1", pull=pull),
                 ProgressEvent("step", "host1", step=StepResult("r", "t", "ok")),
                 ProgressEvent("health", "host1", message="ready"),
                 ProgressEvent("host_failed", "host2", phase="waa_health", message="waa_server: down"),
                 ProgressEvent("host_unreachable", "host3", message="ssh refused"),
                 ProgressEvent("lock_wait", "", message="waiting up to 5s for pid 1")]:
        progress(item)
    assert out.getvalue().splitlines() == [
        "host1: phase winarena_image", "host1: pulling 120/900 MB, 1/4 layers, ETA 40s", "host1: ready",
        "host2: FAILED in waa_health: waa_server: down", "host3: UNREACHABLE: ssh refused",
        "waa-run: waiting up to 5s for pid 1"]
