"""Bad role input is refused before anything changes on the host, with a message naming the
value; and two runs at once against one host end with exactly one container."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import docker, free_loopback_address

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def run_up(extra: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    vars_file = tmp_path / f"vars-{uuid.uuid4().hex[:6]}.json"
    vars_file.write_text(json.dumps(extra))
    return subprocess.run([PLAYBOOK, "openadapt.waa.vm_setup", "-i", "inventory/local.yml", "-e", f"@{vars_file}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture
def base(tmp_path, emulator_image):
    name = f"waa-mol-val-{uuid.uuid4().hex[:6]}"
    values = {"waa_container_name": name, "waa_image": emulator_image, "waa_image_pull": False,
              "waa_storage_path": str(tmp_path / "storage"), "waa_ram_size": "1G",
              "waa_bind_address": free_loopback_address(), "waa_preflight_min_free_storage_gb": 1,
              "waa_preflight_min_free_docker_gb": 1, "waa_health_timeout": 60,
              "waa_container_env": {"WAA_EMU_BOOT_S": 1, "WAA_EMU_INSTALL_S": 1, "WAA_EMU_SERVER_S": 1,
                                    "WAA_EMU_BLACK_S": 0.5}}
    yield values
    docker("rm", "-f", "-v", name, check=False)


@pytest.mark.parametrize("override,needle", [
    ({"waa_ram_size": "8GB"}, "waa_ram_size=8GB"),
    ({"waa_cpu_cores": 0}, "waa_cpu_cores=0"),
    ({"waa_cpu_cores": 65}, "waa_cpu_cores=65"),
    ({"waa_cpu_cores": "many"}, "waa_cpu_cores"),
    ({"waa_container_name": "bad name"}, "waa_container_name=bad name"),
    ({"waa_image": "UPPER/case"}, "waa_image=UPPER/case"),
    ({"waa_image_digest": "sha256:short"}, "waa_image_digest=sha256:short"),
    ({"waa_entry_flags": {"prepare_image": False, "bogus_flag": 1}}, "bogus_flag"),
    ({"waa_bind_address": "0.0.0.0"}, "waa_bind_address=0.0.0.0"),
    ({"waa_storage_path": "/mnt/waa/storage"}, "waa_storage_path=/mnt/waa/storage"),
    ({"waa_docker_data_root": "/mnt/docker"}, "waa_docker_data_root=/mnt/docker"),
    ({"waa_windows_version": "95"}, "waa_windows_version=95"),
    ({"waa_preflight_temp_disk_policy": "maybe"}, "maybe"),
    ({"waa_health_layers": ["vm_boot", "magic"]}, "magic"),
])
def test_bad_values_are_refused_before_any_change(base, tmp_path, override, needle):
    proc = run_up({**base, **override}, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert needle in output, output[-3000:]
    assert docker("inspect", base["waa_container_name"], check=False).returncode != 0, "a container was created"
    assert not (tmp_path / "storage").exists(), "the storage directory was created"


def test_public_exposure_needs_the_explicit_switch_and_warns(base, tmp_path):
    proc = run_up({**base, "waa_bind_address": "127.0.0.1", "waa_expose_publicly": True,
                   "waa_ports": {"novnc": 18006, "server": 15000, "rdp": 13389, "qmp": 17200, "monitor": 17100},
                   "waa_health_layers": ["docker_daemon", "container"]}, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "WARNING: waa_expose_publicly is true" in proc.stdout
    info = json.loads(docker("inspect", base["waa_container_name"]).stdout)[0]
    assert {b["HostIp"] for p in info["HostConfig"]["PortBindings"].values() for b in p} == {"0.0.0.0"}


def test_two_runs_at_once_end_with_exactly_one_container(base, tmp_path):
    # The host lock lets one run at a time work on the container; with waa_lock_wait the other
    # waits for it (without, it is refused busy: test_locks.py), then finds the container as set up.
    results: list[subprocess.CompletedProcess] = []
    waiting = {**base, "waa_lock_wait": 240}
    threads = [threading.Thread(target=lambda: results.append(run_up(waiting, tmp_path))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.returncode for r in results] == [0, 0], [r.stdout[-2000:] for r in results]
    names = docker("ps", "-a", "--filter", f"name=^{base['waa_container_name']}$", "--format", "{{.Names}}").stdout.split()
    assert names == [base["waa_container_name"]]


def test_a_second_plain_run_at_once_is_refused_busy_and_changes_nothing(base, tmp_path):
    results: list[subprocess.CompletedProcess] = []
    threads = [threading.Thread(target=lambda: results.append(run_up(base, tmp_path))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(r.returncode for r in results)
    # both succeed only when one run had released the lock before the other asked for it
    assert codes in ([0, 0], [0, 2]), [r.stdout[-2000:] for r in results]
    if codes == [0, 2]:
        refused = next(r for r in results if r.returncode == 2)
        assert "busy" in refused.stdout and "exit 12" in refused.stdout, refused.stdout[-2000:]
    names = docker("ps", "-a", "--filter", f"name=^{base['waa_container_name']}$", "--format", "{{.Names}}").stdout.split()
    assert names == [base["waa_container_name"]]
