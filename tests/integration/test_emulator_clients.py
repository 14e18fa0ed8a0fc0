"""Real clients' calls against a real emulator container, through its ports published on a
loopback address: the requests WindowsAgentArena's PythonController and openadapt-evals' probe,
live adapter and QEMU reset send (docs/emulator.md, "Client versions checked"), with the answers
a Windows host gives. No fixed sleeps: every wait polls with a deadline."""
from __future__ import annotations

import json
import socket
import uuid
from xml.etree import ElementTree

import pytest
import requests

from tests.integration.test_emulator import DEADLINE, FAST, ready, wait_ready
from tests.support.emulator import poll_until

pytestmark = pytest.mark.docker

JSON = {"Content-Type": "application/json"}
PKGS_PREFIX = "import pyautogui; import time; pyautogui.FAILSAFE = False; {command}"
TIMEOUT = 10


def url(handle, path: str) -> str:
    return handle.url("server", path)


def python(handle, command: str) -> dict:
    """PythonController.execute_python_command, byte for byte."""
    payload = json.dumps({"command": ["python", "-c", PKGS_PREFIX.format(command=command)], "shell": False})
    return requests.post(url(handle, "/execute"), headers=JSON, data=payload, timeout=TIMEOUT).json()


@pytest.fixture
def host(emulator):
    handle = emulator(env=FAST)
    wait_ready(handle)
    return handle


def test_python_controller_calls(host):
    assert requests.get(url(host, "/probe"), timeout=TIMEOUT).status_code == 200  # get_probe
    assert python(host, "import platform; print(platform.system())")["output"].strip() == "Windows"  # get_vm_platform
    assert requests.post(url(host, "/screen_size"), timeout=TIMEOUT).json() == {"width": 1440, "height": 900}
    shot = requests.get(url(host, "/screenshot"), timeout=TIMEOUT)
    assert shot.status_code == 200 and shot.content.startswith(b"\x89PNG\r\n\x1a\n")
    tree = requests.get(url(host, "/accessibility?backend=uia"), timeout=TIMEOUT).json().get("AT")
    assert ElementTree.fromstring(tree).tag == "desktop"
    obs = requests.get(url(host, "/obs_winagent"), timeout=TIMEOUT).json()
    assert obs["window_title"] == "File Explorer" and obs["rect"] == [320, 140, 1120, 640]
    python(host, "pyautogui.click(button='left', x=640, y=300)")  # execute_action CLICK
    assert python(host, "print(pyautogui.position())")["output"] == "Point(x=640, y=300)\n"
    apps = requests.post(url(host, "/execute"), headers=JSON, timeout=TIMEOUT, json={
        "command": 'powershell -Command "Get-AppxPackage | Select-Object Name,PackageFullName | ConvertTo-Json"'})
    assert "Microsoft.WindowsCalculator" in [app["Name"] for app in json.loads(apps.json()["output"])]
    assert requests.post(url(host, "/desktop_path"), timeout=TIMEOUT).json()["desktop_path"] == \
        r"C:\Users\Docker\Desktop"


def test_run_python_script_upload_execute_cleanup(host):
    path = r"C:\Users\Docker\AppData\Local\Temp\locallstc_task_" + uuid.uuid4().hex + ".py"
    upload = requests.post(url(host, "/setup/upload"), data={"file_path": path}, timeout=TIMEOUT,
                           files={"file_data": ("locallstc_task.py", b"import platform\nprint(platform.node())\n",
                                                "text/x-python")})
    assert upload.text == "File Uploaded"
    reply = requests.post(url(host, "/execute"), json={"command": ["python", path], "shell": False},
                          timeout=TIMEOUT).json()
    assert (reply["status"], reply["output"], reply["returncode"]) == ("success", "WIN-WAAEMU01\n", 0)
    assert requests.post(url(host, "/file"), data={"file_path": path}, timeout=TIMEOUT).status_code == 200
    cleanup = "import os; p=" + repr(path) + "; os.remove(p) if os.path.exists(p) else None"
    requests.post(url(host, "/execute"), json={"command": ["python", "-c", cleanup], "shell": False}, timeout=TIMEOUT)
    assert requests.post(url(host, "/file"), data={"file_path": path}, timeout=TIMEOUT).status_code == 404


def test_openadapt_evals_multi_layer_probe(host):
    shot = requests.get(url(host, "/screenshot"), timeout=TIMEOUT)
    a11y = requests.get(url(host, "/accessibility"), params={"backend": "uia"}, timeout=TIMEOUT)
    action = requests.post(url(host, "/execute"), timeout=TIMEOUT,
                           json={"command": 'python -c "import pyautogui; print(pyautogui.position())"'})
    score = requests.post(url(host, "/evaluate"), timeout=TIMEOUT,
                          json={"command": "echo probe_test", "expected": "probe_test", "metric": "exact_match"})
    assert shot.content[:8] == b"\x89PNG\r\n\x1a\n"  # screenshot: PASS
    assert a11y.status_code == 200 and a11y.text.strip()  # a11y: PASS
    assert action.status_code == 200 and "Point" in str(action.json().get("output", ""))  # action: PASS
    assert score.status_code == 500  # score: FAIL, as on a WAA host without openadapt's /evaluate


def test_openadapt_evals_qemu_reset_through_the_monitor(emulator):
    host = emulator(env={**FAST, "WAA_EMU_SERVER_S": "4"})  # the reboot outlasts `docker exec ... nc -q1`
    wait_ready(host)
    proc = host.exec("bash", "-c", "echo system_reset | nc -q1 localhost 7100")
    assert proc.returncode == 0 and "(qemu)" in proc.stdout
    poll_until(lambda: not ready(host), deadline_s=DEADLINE, what="the WAA server goes away while Windows reboots")
    wait_ready(host)  # and comes back, as after a real reset (~90 s there)


def test_vm_controller_screendump_over_qmp(host):
    with socket.create_connection((host.host, host.ports["qmp"]), timeout=5) as sock:
        reader = sock.makefile("r")
        assert "QMP" in json.loads(reader.readline())
        for command in ({"execute": "qmp_capabilities"},
                        {"execute": "screendump", "arguments": {"filename": "/tmp/screenshot.png", "format": "png"}}):
            sock.sendall(json.dumps(command).encode() + b"\r\n")
            assert json.loads(reader.readline()) == {"return": {}}
    magic = host.exec("python3", "-c", "print(open('/tmp/screenshot.png', 'rb').read(8).hex())").stdout.strip()
    assert magic == b"\x89PNG\r\n\x1a\n".hex()
