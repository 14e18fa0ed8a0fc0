"""The waa_health_probe module's interface, run in-process with patch_module_args (ansible-core
2.19), against the fake host of test_health_layers; and its documentation through ansible-doc."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.modules import waa_health_probe
from tests.unit.test_health_layers import Host

REPO = Path(__file__).resolve().parents[2]
RETURN_KEYS = {"ready", "layers", "failed_layer", "exit_code", "failure_class", "hint", "message", "breaker",
               "duration_s", "attempts", "timed_out", "changed"}


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    yield h
    h.close()


def run_module(capsys, args: dict, check_mode: bool = False) -> tuple[int, dict]:
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        waa_health_probe.main()
    return int(exit_info.value.code or 0), json.loads(capsys.readouterr().out)


def host_args(host, tmp_path, **extra) -> dict:
    return dict({"docker_host": host.docker.path, "host": "127.0.0.1", "request_timeout": 1,
                 "ports": {"novnc": host.web.port, "server": host.server.port, "qmp": host.qmp.port},
                 "breaker_state_dir": str(tmp_path / "breaker")}, **extra)


def test_ready_host_returns_every_key_and_changes_nothing(host, tmp_path, capsys):
    rc, result = run_module(capsys, host_args(host, tmp_path))
    assert rc == 0 and result["ready"] is True and result["changed"] is False
    assert RETURN_KEYS <= set(result) and result["exit_code"] == 0 and result["failed_layer"] is None
    assert [layer["layer"] for layer in result["layers"]] == list(waa_health_probe.LAYERS)
    assert result["breaker"]["state"] == "closed"


def test_unhealthy_host_fails_with_one_line_and_every_key(host, tmp_path, capsys):
    host.server.answer("/probe", 500, {"status": "error", "message": "boom"})
    rc, result = run_module(capsys, host_args(host, tmp_path))
    assert rc == 1 and result["failed"] is True and RETURN_KEYS <= set(result)
    assert (result["failed_layer"], result["exit_code"], result["failure_class"]) == (
        "waa_server", codes.WAA_SERVER, codes.RECOVERABLE)
    assert result["msg"] == "%s (hint: %s)" % (result["message"], result["hint"])
    assert result["msg"].startswith("waa_server: /probe answered 500") and "\n" not in result["msg"]


def test_report_only_does_not_fail(host, tmp_path, capsys):
    rc, result = run_module(capsys, host_args(host, tmp_path, container_name="missing", fail_on_unhealthy=False))
    assert rc == 0 and "failed" not in result and result["ready"] is False
    assert (result["failed_layer"], result["exit_code"], result["failure_class"]) == ("container", 4, "permanent")


def test_check_mode_probes_but_never_writes_the_breaker(host, tmp_path, capsys):
    args = host_args(host, tmp_path, container_name="missing", wait=True, timeout=2, breaker_threshold=1)
    rc, result = run_module(capsys, args, check_mode=True)
    assert rc == 1 and result["exit_code"] == codes.CONTAINER and result["changed"] is False
    assert not (tmp_path / "breaker").exists()
    rc, result = run_module(capsys, args)  # the same wait for real opens the breaker (threshold 1)
    assert result["breaker"]["state"] == "open" and (tmp_path / "breaker" / "breaker-missing.json").exists()
    rc, result = run_module(capsys, args)
    assert result["exit_code"] == codes.CIRCUIT_OPEN and result["msg"].startswith("circuit_breaker: circuit open until")


def test_layers_wait_and_ports_are_passed_through(host, tmp_path, capsys):
    rc, result = run_module(capsys, host_args(host, tmp_path, layers=["vm_boot"], check_screen=False,
                                              wait=True, timeout=5, a11y_backend="uia"))
    assert rc == 0 and [r["layer"] for r in result["layers"]] == ["docker_daemon", "container", "vm_boot"]
    assert "/probe" not in host.server.hits and "screendump" not in host.qmp.commands


def test_the_engine_socket_is_a_parameter(tmp_path, capsys):
    rc, result = run_module(capsys, {"docker_host": "unix://" + str(tmp_path / "none.sock"),
                                     "breaker_threshold": 0})
    assert rc == 1 and result["exit_code"] == codes.DOCKER_DAEMON and result["failure_class"] == "permanent"
    assert result["msg"].startswith("docker_daemon: the Docker engine does not answer") and "(hint: " in result["msg"]
    assert result["breaker"]["state"] == "disabled"


@pytest.mark.parametrize("args,words", [
    ({"layers": ["vm_boot", "bogus"]}, ["layers", "bogus"]),
    ({"layers": []}, ["layers must name at least one"]),
    ({"timeout": -1}, ["timeout must be greater than 0"]),
    ({"request_timeout": 0}, ["request_timeout must be greater than 0"]),
    ({"jitter": 1.5}, ["jitter must be in [0, 1)"]),
    ({"backoff_factor": 0.5}, ["backoff_factor must be at least 1"]),
    ({"breaker_threshold": -1}, ["must not be negative"]),
    ({"ports": {"server": 70000}}, ["ports.server must be a TCP port"]),
    ({"ports": {"vnc": 1}}, ["vnc"]),
    ({"a11y_backend": "atspi"}, ["a11y_backend", "atspi"]),
    ({"wait": "maybe"}, ["wait"]),
    ({"no_such_option": 1}, ["no_such_option"]),
])
def test_bad_arguments_are_refused_by_name(capsys, args, words):
    rc, result = run_module(capsys, args)
    assert rc == 1 and result["failed"] is True
    assert all(word in result["msg"] for word in words), result["msg"]
    assert "layers" not in result or args.get("layers") is None


def test_ansible_doc_renders_the_modules():
    modules = ["waa_health_probe", "waa_preflight", "waa_image", "waa_image_progress"]
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "module", "--json",
                           *[f"openadapt.waa.{m}" for m in modules]], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert set(docs) == {f"openadapt.waa.{m}" for m in modules}
    probe_doc = docs["openadapt.waa.waa_health_probe"]
    options = set(probe_doc["doc"]["options"])
    assert options == set(waa_health_probe.argument_spec())
    assert RETURN_KEYS - {"changed"} <= set(probe_doc["return"])
    assert probe_doc["examples"].strip()
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "module",
                           "openadapt.waa.waa_health_probe"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "RETURN VALUES" in proc.stdout and "EXAMPLES" in proc.stdout, proc.stderr


def test_documentation_matches_the_argument_spec_as_ansible_test_sanity_wants():
    """validate-modules' rules: `Name (@handle)` authors, documented defaults equal to the spec's,
    the same types and choices, no undocumented option (suboptions included)."""
    import re

    import yaml

    doc = yaml.safe_load(waa_health_probe.DOCUMENTATION)
    assert all(re.match(r"^[^()]+ \(@[\w-]+\)$", author) for author in doc["author"]), doc["author"]

    def compare(documented: dict, spec: dict, where: str) -> None:
        assert set(documented) == set(spec), where
        for name, option in spec.items():
            described = documented[name]
            for key in ("type", "choices", "elements"):
                assert described.get(key) == option.get(key), f"{where}{name}.{key}"
            assert described.get("default") == option.get("default"), f"{where}{name}: documented default differs"
            if "options" in option:
                compare(described["suboptions"], option["options"], f"{where}{name}.")

    compare(doc["options"], waa_health_probe.argument_spec(), "")


def test_a_malformed_breaker_file_is_a_warning_not_a_crash(host, tmp_path, capsys):
    state = tmp_path / "breaker"
    state.mkdir()
    (state / "breaker-winarena.json").write_text('{"consecutive_failures": 5, "open_until": "soon"}')
    rc, result = run_module(capsys, host_args(host, tmp_path, wait=True, timeout=5))
    assert rc == 0 and result["ready"] and result["breaker"]["state"] == "closed"
    # the result says so (breaker.warning); the Ansible warning as well, unless this process already
    # warned the same text (ansible-core dedupes warnings per process, so it depends on test order)
    warning = json.dumps(result["breaker"].get("warning"))
    assert "malformed" in warning and "open_until is a str" in warning, result["breaker"]
    if "warnings" in result:
        assert "malformed" in json.dumps(result["warnings"])
    assert json.loads((state / "breaker-winarena.json").read_text())["open_until"] is None
