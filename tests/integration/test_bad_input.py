"""Every kind of bad input gets exit 64 (usage), names the variable and the bad value, and changes
nothing on the host: docs/exit-codes.md's promise, tried the way users run waa-run.

One emulator host is brought up once (its own container name, loopback address and storage);
then each bad input is given to `waa-run up` against it, and the host must be exactly as it was:
the same container (id, start time), the same files in its storage directory.
"""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import docker, free_loopback_address

pytestmark = pytest.mark.docker
WAA_RUN = str(Path(sys.executable).parent / "waa-run")
FAST_ENV = {"WAA_EMU_BOOT_S": 1, "WAA_EMU_INSTALL_S": 1, "WAA_EMU_SERVER_S": 1, "WAA_EMU_BLACK_S": 0.5}

# (what is wrong, extra variables or CLI flags, what the message must name)
BAD_INPUTS = [
    ("RAM with a space", {"waa_ram_size": "8 GB"}, ["waa_ram_size", "8 GB"]),
    ("no CPU cores", {"waa_cpu_cores": 0}, ["waa_cpu_cores", "0", "1 to 64"]),
    ("too many CPU cores", {"waa_cpu_cores": 65}, ["waa_cpu_cores", "65", "1 to 64"]),
    ("CPU cores as a word", {"waa_cpu_cores": "many"}, ["waa_cpu_cores", "many"]),
    ("container name with ;", {"waa_container_name": "win;rm -rf"}, ["waa_container_name", "win;rm -rf"]),
    ("container name with a space", {"waa_container_name": "bad name"}, ["waa_container_name", "bad name"]),
    ("port 0", {"waa_ports": {"novnc": 8006, "server": 0, "rdp": 3389, "qmp": 7200, "monitor": 7100}},
     ["waa_ports", "server=0"]),
    ("port 70000", {"waa_ports": {"novnc": 8006, "server": 70000, "rdp": 3389, "qmp": 7200, "monitor": 7100}},
     ["waa_ports", "server=70000"]),
    ("an unknown key in waa_ports", {"waa_ports": {"novnc": 8006, "server": 5000, "rdp": 3389, "qmp": 7200,
                                                   "monitor": 7100, "ssh": 22}}, ["waa_ports", "ssh"]),
    ("waa_ports incomplete", {"waa_ports": {"server": 5001}}, ["waa_ports", "novnc"]),
    ("two services on one port", {"waa_ports": {"novnc": 5000, "server": 5000, "rdp": 3389, "qmp": 7200,
                                                "monitor": 7100}}, ["waa_ports", "different port"]),
    ("waa_ports as a list", {"waa_ports": [8006, 5000]}, ["waa_ports"]),
    ("0.0.0.0 without the expose switch", {"waa_bind_address": "0.0.0.0"}, ["waa_bind_address", "0.0.0.0", "loopback"]),
    ("a host name as bind address", {"waa_bind_address": "localhost"}, ["waa_bind_address", "localhost"]),
    ("an unknown entry flag", {"waa_entry_flags": {"prepare_image": False, "bogus_flag": 1}}, ["waa_entry_flags", "bogus_flag"]),
    ("a shell metacharacter in a flag", {"waa_entry_flags": {"agent": "navi;reboot"}}, ["waa_entry_flags", "navi;reboot"]),
    ("an unknown health layer", {"waa_health_layers": ["vm_boot", "magic"]}, ["waa_health_layers", "magic"]),
    ("no health layer", {"waa_health_layers": []}, ["waa_health_layers", "at least one layer"]),
    ("a relative storage path", {"waa_storage_path": "storage/waa"}, ["waa_storage_path", "storage/waa", "absolute"]),
    ("storage on Azure's temporary disk", {"waa_storage_path": "/mnt/waa/storage"}, ["waa_storage_path", "/mnt/waa/storage"]),
    ("data-root on Azure's temporary disk", {"waa_docker_data_root": "/mnt/docker"}, ["waa_docker_data_root", "/mnt/docker"]),
    ("a negative timeout", {"waa_health_timeout": -5}, ["waa_health_timeout", "-5"]),
    ("an infinite timeout", {"waa_health_timeout": "inf"}, ["waa_health_timeout", "inf"]),
    ("a timeout that is not a number", {"waa_health_timeout": "nan"}, ["waa_health_timeout", "nan"]),
    ("a zero request timeout", {"waa_health_request_timeout": 0}, ["waa_health_request_timeout", "0"]),
    ("a short digest", {"waa_image_digest": "sha256:short"}, ["waa_image_digest", "sha256:short"]),
    ("an upper-case image path", {"waa_image": "UPPER/case"}, ["waa_image", "UPPER/case"]),
    ("an unknown Windows version", {"waa_windows_version": "95"}, ["waa_windows_version", "95"]),
    ("a disk size without a unit", {"waa_disk_size": "64"}, ["waa_disk_size", "64"]),
    ("a bool that is not one", {"waa_expose_publicly": "maybe"}, ["waa_expose_publicly", "maybe"]),
    ("an unknown temp-disk policy", {"waa_preflight_temp_disk_policy": "maybe"}, ["waa_preflight_temp_disk_policy", "maybe"]),
    ("an unknown restart policy", {"waa_container_restart_policy": "sometimes"}, ["waa_container_restart_policy", "sometimes"]),
    ("an unknown a11y backend", {"waa_a11y_backend": "gtk"}, ["waa_a11y_backend", "gtk"]),
    ("a fallback registry given as a URL", {"waa_image_fallback_registry": "https://myacr.azurecr.io"},
     ["waa_image_fallback_registry", "https://myacr.azurecr.io"]),
    ("a mirror that is not a URL", {"waa_docker_registry_mirrors": ["not a url"]}, ["waa_docker_registry_mirrors", "not a url"]),
    ("zero pull attempts", {"waa_image_pull_retries": 0}, ["waa_image_pull_retries", "0"]),
    ("a backoff that shrinks", {"waa_health_backoff_factor": 0.5}, ["waa_health_backoff_factor", "0.5"]),
    ("RAM_SIZE set around its validation", {"waa_container_env": {"RAM_SIZE": "64G"}}, ["waa_container_env", "RAM_SIZE", "waa_ram_size"]),
    ("an environment name with a space", {"waa_container_env": {"MY VAR": "1"}}, ["waa_container_env", "MY VAR"]),
    ("a variable that does not exist", {"waa_stop_timeout": 5}, ["waa_stop_timeout", "did you mean waa_container_stop_timeout"]),
    ("a misspelt variable", {"waa_health_timout": 60}, ["waa_health_timout", "did you mean waa_health_timeout"]),
    ("--health-timeout inf", ["--health-timeout", "inf"], ["inf"]),
    ("--health-timeout 0", ["--health-timeout", "0"], ["--health-timeout", "0"]),
    ("--timeout -1", ["--timeout", "-1"], ["--timeout", "-1"]),
    ("--forks 0", ["--forks", "0"], ["--forks", "0"]),
    ("an -e that is not KEY=VALUE", ["-e", "just-a-word"], ["just-a-word", "KEY=VALUE"]),
]


MAYBE_CREATED = {str(bad.get("waa_container_name")) for _, bad, _ in BAD_INPUTS if isinstance(bad, dict)} - {"None"}


@pytest.fixture(scope="module")
def host(tmp_path_factory, emulator_image):
    """One ready emulator host of this module's own; removed at the end."""
    tmp = tmp_path_factory.mktemp("bad-input")
    name = f"waa-test-bad-{uuid.uuid4().hex[:6]}"
    variables = {"waa_container_name": name, "waa_bind_address": free_loopback_address(),
                 "waa_storage_path": str(tmp / "storage"), "waa_ram_size": "1G", "waa_container_env": FAST_ENV,
                 "waa_health_timeout": 60, "waa_health_breaker_threshold": 0}
    vars_file = tmp / "vars.json"
    vars_file.write_text(json.dumps(variables))
    info = {"name": name, "vars": vars_file, "storage": tmp / "storage", "state": tmp / "state"}
    proc = run(info, "up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield info
    docker("rm", "-f", "-v", name, check=False)


def run(host: dict, *args: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    argv = [WAA_RUN, "up", "--local", "--emulator", "-e", f"@{host['vars']}", "--state-dir", str(host["state"]), "--wait-lock", "600",
            *[a for a in args if a != "up"]]
    if extra:
        extra_file = host["vars"].with_name(f"extra-{uuid.uuid4().hex[:6]}.json")
        extra_file.write_text(json.dumps(extra))
        argv += ["-e", f"@{extra_file}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def snapshot(host: dict) -> tuple:
    info = json.loads(docker("inspect", host["name"]).stdout)[0]
    files = sorted(str(p.relative_to(host["storage"])) for p in host["storage"].rglob("*"))
    # containers a bad input could have made: ours under another name (other tests' containers are not ours)
    names = set(docker("ps", "-a", "--format", "{{.Names}}").stdout.split()) & MAYBE_CREATED
    return info["Id"], info["State"]["StartedAt"], info["State"]["Running"], files, sorted(names)


@pytest.mark.parametrize("what,bad,needles", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_exit_64_names_the_value_and_changes_nothing(host, what, bad, needles):
    before = snapshot(host)
    proc = run(host, *bad) if isinstance(bad, list) else run(host, extra=bad)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 64, f"{what}: exit {proc.returncode}\n{output[-3000:]}"
    for needle in needles:
        assert needle in output, f"{what}: {needle!r} not in the output\n{output[-3000:]}"
    assert snapshot(host) == before, f"{what}: the host changed"


def test_json_report_of_bad_input_names_the_variable(host):
    proc = run(host, "--json", extra={"waa_cpu_cores": 65})
    data = json.loads(proc.stdout)
    assert (proc.returncode, data["exit_code"], data["exit_name"]) == (64, 64, "usage")
    verdict = data["hosts"]["localhost"]
    assert verdict["status"] == "usage" and "waa_cpu_cores=65" in verdict["message"]
    assert verdict["hint"] and output_once(proc.stdout, verdict["hint"])


def output_once(text: str, hint: str) -> bool:
    return text.count(hint) == 1


def probe(host: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([WAA_RUN, "probe", "--local", "-e", f"@{host['vars']}", "--state-dir", str(host["state"]), "--wait-lock", "600",
                           *args], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_up_and_probe_agree_on_a_host_that_is_not_ready(host):
    docker("exec", host["name"], "waa-emu-fault", "server_down")
    try:
        up = run(host, "--json", "--health-timeout", "8", extra={"waa_health_recover": False})
        probed, text = probe(host, "--json"), probe(host)
    finally:
        docker("exec", host["name"], "waa-emu-fault", "clear")
    up_host, probe_host = json.loads(up.stdout)["hosts"]["localhost"], json.loads(probed.stdout)["hosts"]["localhost"]
    assert (up.returncode, probed.returncode, text.returncode) == (6, 6, 6)
    for key in ("status", "exit_code", "failed_layer", "failure_class", "hint"):
        assert up_host[key] == probe_host[key], key
    assert up_host["status"] == "not_ready"
    line = next(line for line in text.stdout.splitlines() if line.startswith("localhost"))
    assert "not_ready" in line and line.count(probe_host["hint"]) == 1 and text.stdout.count("hint:") == 1
