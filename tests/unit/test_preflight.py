"""The preflight's pure helpers, and the module run on this machine through ansible."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.openadapt.waa.plugins.modules import waa_preflight as preflight

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text,gb", [("8G", 8.0), ("512M", 0.5), ("1T", 1024.0), ("8GB", 8.0)])
def test_parse_size(text, gb):
    assert preflight.parse_size_gb(text) == gb


def test_parse_size_refuses_nonsense():
    with pytest.raises(ValueError):
        preflight.parse_size_gb("eight")


def test_temp_disk_detection(tmp_path):
    (tmp_path / "mnt" / "storage").mkdir(parents=True)
    assert preflight.under_any(str(tmp_path / "mnt" / "storage" / "new"), [str(tmp_path / "mnt")]) == str(tmp_path / "mnt")
    assert preflight.under_any(str(tmp_path / "mntx"), [str(tmp_path / "mnt")]) is None


def test_busy_port_is_reported():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not preflight.port_free("127.0.0.1", port)


def run_module(**args) -> dict:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "openadapt.waa.waa_preflight",
         "-a", json.dumps(args), "-o"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    payload = proc.stdout.split("=>", 1)[1]
    return json.loads(payload)


def test_module_names_each_failure_with_its_fix(tmp_path):
    result = run_module(storage_path=str(tmp_path / "storage"), ram_size="4096G", min_free_storage_gb=1,
                        min_free_docker_gb=1, temp_disk_paths=[str(tmp_path)], temp_disk_policy="fail",
                        ports=[])
    assert result["ok"] is False and result["changed"] is False
    failures = " | ".join(result["failures"])
    assert "memory:" in failures and "RAM_SIZE 4096G" in failures and "lower waa_ram_size" in failures
    assert "storage_disk_persistence" in failures and "wipes on deallocate" in failures
    assert not (tmp_path / "storage").exists(), "the preflight must not create anything"
