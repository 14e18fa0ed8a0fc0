"""The emulator's guest API in-process (127.0.0.1, an ephemeral port), driven with the requests
that WindowsAgentArena's PythonController and openadapt-evals' probe and live adapter send (the
same library, methods, bodies and headers; docs/emulator.md names the client commits), asserting
the answers a Windows host gives them."""
from __future__ import annotations

import base64
import io
import json
import time
import uuid
from dataclasses import dataclass
from xml.etree import ElementTree

import pytest
import requests

from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_png import png_is_black
from waa_runner.emulator.waa_emu.config import Settings, Timings
from waa_runner.emulator.waa_emu.guest_api import GuestHTTPServer
from waa_runner.emulator.waa_emu.guest_routes import ROUTES
from waa_runner.emulator.waa_emu.httpbase import serve
from waa_runner.emulator.waa_emu.logs import Log
from waa_runner.emulator.waa_emu.state import State

JSON = {"Content-Type": "application/json"}
PKGS_PREFIX = "import pyautogui; import time; pyautogui.FAILSAFE = False; {command}"  # PythonController's
TIMEOUT = 5


@dataclass
class Guest:
    state: State
    url: str

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=TIMEOUT, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=TIMEOUT, **kwargs)

    def python(self, command: str) -> dict:
        """PythonController.execute_python_command."""
        payload = json.dumps({"command": ["python", "-c", PKGS_PREFIX.format(command=command)], "shell": False})
        return self.post("/execute", headers=JSON, data=payload).json()

    def shell(self, command: str) -> dict:
        """PythonController.execute_shell_command (a string, no shell flag)."""
        return self.post("/execute", headers=JSON, json={"command": command}).json()


@pytest.fixture
def guest(tmp_path):
    settings = Settings(fault_file=str(tmp_path / "faults"), storage=str(tmp_path / "storage"),
                        guest_addr="127.0.0.1", guest_port=0, timings=Timings(server=0.0, black=0.0))
    state = State.create(settings, Log(io.StringIO()))
    state.faults.reset(())
    state.machine.start_qemu(time.monotonic() - 1)  # Windows is up, the desktop shows
    server = serve(GuestHTTPServer(("127.0.0.1", 0), state, ROUTES), poll_interval=0.05)
    yield Guest(state, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------- WindowsAgentArena: PythonController
def test_probe_platform_and_screen(guest):
    assert guest.get("/probe").json() == {"status": "Probe successful", "message": "Service is operational"}
    reply = guest.get("/platform")
    assert (reply.status_code, reply.text, reply.headers["Content-Type"]) == (200, "Windows", "text/html; charset=utf-8")
    shot = guest.get("/screenshot")
    assert shot.headers["Content-Type"] == "image/png" and png_is_black(shot.content)[0] is False
    assert guest.post("/screen_size").json() == {"width": 1440, "height": 900}  # get_vm_screen_size


def test_get_vm_platform_runs_platform_system(guest):
    reply = guest.python("import platform; print(platform.system())")
    assert reply == {"status": "success", "output": "Windows\n", "error": "", "returncode": 0}
    assert reply["output"].strip() == "Windows"  # what get_vm_platform returns


@pytest.mark.parametrize("backend", [None, "win32", "uia"])
def test_accessibility_tree(guest, backend):
    path = f"/accessibility?backend={backend}" if backend else "/accessibility"
    tree = ElementTree.fromstring(guest.get(path).json().get("AT"))
    assert tree.tag == "desktop"
    assert [child.get("name") for child in tree] == ["Taskbar", "File Explorer", "Program Manager"]
    assert guest.get("/accessibility?backend=atspi").status_code == 400


def test_obs_winagent(guest):
    reply = guest.get("/obs_winagent").json()
    image = base64.b64decode(reply["image"])
    assert image.startswith(b"\x89PNG") and image[16:24] == (800).to_bytes(4, "big") + (500).to_bytes(4, "big")
    assert (reply["window_title"], reply["rect"], reply["window_names_str"]) == (
        "File Explorer", [320, 140, 1120, 640], "File Explorer")
    assert reply["computer_clipboard"] is None and reply["status"] == "success"


def test_actions_move_the_cursor_that_pyautogui_reports(guest):
    guest.python("pyautogui.click(button='left', x=100, y=200)")  # execute_action CLICK
    assert guest.python("print(pyautogui.position())")["output"] == "Point(x=100, y=200)\n"
    guest.python("pyautogui.moveTo(1400, 10, 0.7, pyautogui.easeInQuad)")  # MOVE_TO
    guest.python("pyautogui.typewrite('hello')")  # TYPING: nothing to show, no error
    assert guest.python("print(pyautogui.position().x, pyautogui.size())")["output"] == \
        "1400 Size(width=1440, height=900)\n"
    assert guest.post("/execute_windows", headers=JSON, json={"command": "computer.mouse.move_id(3)"}).json() == \
        {"status": "success"}
    assert guest.post("/execute_windows", headers=JSON, json={"command": "def ("}).status_code == 500


def test_files_upload_read_list_and_run_python_script(guest):
    path = r"C:\Users\Docker\AppData\Local\Temp\locallstc_task_" + uuid.uuid4().hex + ".py"
    script = "import platform\nprint(platform.system(), platform.release())\n"
    upload = guest.post("/setup/upload", data={"file_path": path},
                        files={"file_data": ("locallstc_task.py", script.encode(), "text/x-python")})
    assert (upload.status_code, upload.text) == (200, "File Uploaded")
    ran = guest.post("/execute", json={"command": ["python", path], "shell": False}).json()
    assert ran["output"] == "Windows 10\n" and ran["returncode"] == 0
    assert guest.post("/file", data={"file_path": path}).content == script.encode()  # get_file
    cleanup = "import os; p=" + repr(path) + "; os.remove(p) if os.path.exists(p) else None"
    assert guest.post("/execute", json={"command": ["python", "-c", cleanup], "shell": False}).json()["returncode"] == 0
    assert guest.post("/file", data={"file_path": path}).status_code == 404
    tree = guest.post("/list_directory", headers=JSON, data=json.dumps({"path": r"C:\Users\Docker"})).json()
    assert {c["name"] for c in tree["directory_tree"]["children"]} >= {"Desktop", "Documents", "Downloads"}


def test_file_hidden_status_snippet(guest):
    guest.post("/setup/create_file", json={"path": r"C:\Users\Docker\Desktop\notes.txt", "content": "x"})
    command = ("import os; print(1 if os.path.basename(r'{p}').startswith('.') or (os.name == 'nt' and "
               "bool(os.stat(r'{p}').st_file_attributes & 2)) else 0)")
    assert guest.python(command.format(p=r"C:\Users\Docker\Desktop\notes.txt"))["output"] == "0\n"
    assert guest.python(command.format(p=r"C:\Users\Docker\Desktop\.hidden"))["output"] == "1\n"
    missing = guest.python(command.format(p=r"C:\Users\Docker\Desktop\gone.txt"))
    assert missing["returncode"] == 1 and "FileNotFoundError: [WinError 2]" in missing["error"]


def test_powershell_snippets(guest):
    apps = guest.shell('powershell -Command "Get-AppxPackage | Select-Object Name,PackageFullName | ConvertTo-Json"')
    assert {"Name", "PackageFullName"} <= set(json.loads(apps["output"])[0])
    key = r"HKCU:\Software\WAA"
    assert guest.shell(f"powershell -Command \"Set-ItemProperty -Path '{key}' -Name 'Mode' -Value 'dark'\"")[
        "returncode"] == 0
    assert guest.shell(f"powershell -Command \"Get-ItemPropertyValue -Path '{key}' -Name 'Mode'\"")["output"] == "dark\n"
    missing = guest.shell(f"powershell -Command \"Get-ItemPropertyValue -Path '{key}' -Name 'Nope'\"")
    assert missing["returncode"] == 1 and "Property Nope does not exist" in missing["error"]


def test_evaluator_getters(guest):
    def post(path: str, payload: dict) -> requests.Response:
        return guest.post(path, headers=JSON, data=json.dumps(payload))

    assert guest.post("/desktop_path").json() == {"desktop_path": r"C:\Users\Docker\Desktop"}
    assert guest.post("/documents_path").json() == {"documents_path": r"C:\Users\Docker\Documents"}
    assert post("/folder_exists", {"folder_name": "Desktop", "path": r"C:\Users\Docker"}).status_code == 200
    assert post("/folder_exists", {"folder_name": "Nope", "path": r"C:\Users\Docker"}).status_code == 400
    assert post("/file_exists", {"file_name": "a.txt", "path": r"C:\Users\Docker"}).status_code == 400
    assert post("/library_folders", {"library_name": "Documents"}).json()["output"] == [r"C:\Users\Docker\Documents"]
    assert post("/is_details_view", {"path": r"C:\Users\Docker"}).json()["is_details_view"] is True
    assert post("/are_files_sorted_by_modified_time", {"directory": r"C:\Users\Docker\Music"}).status_code == 200
    assert post("/is_directory_read_only_for_user", {"directory": "C:\\", "user": "Docker"}).status_code == 400
    assert post("/are_all_images_tagged", {"directory": r"C:\Users\Docker\Pictures", "tag": "x"}).status_code == 200
    assert post("/check_if_timer_started", {"hours": 0, "minutes": 5, "seconds": 0}).status_code == 400
    assert post("/check_if_world_clock_exists", {"city": "Oslo", "country": "Norway"}).status_code == 400
    assert guest.post("/window_size", data={"app_class_name": "notepad"}).status_code == 500  # Xlib on Windows
    assert guest.post("/wallpaper").content.startswith(b"\x89PNG")
    assert guest.get("/terminal").status_code == 500  # not implemented on Windows


def test_state_recording_and_errors_as_the_real_server(guest):
    # save_state sends a form body under a JSON content type: the real server never sees the field
    assert guest.post("/save_state", headers=JSON, data={"snapshot_name": "s"}).status_code == 400
    assert guest.post("/revert_to_snapshot", headers=JSON, data={"snapshot_name": "s"}).status_code == 501
    assert guest.post("/start_recording").json()["status"] == "success"
    assert guest.post("/start_recording").status_code == 400
    assert guest.post("/end_recording").json()["status"] == "success"
    assert guest.post("/end_recording").status_code == 400
    shot = base64.b64encode(guest.get("/screenshot").content).decode()
    assert guest.post("/update_computer", headers=JSON, json={"rects": [], "window_rect": [0, 0, 1440, 900],
                                                              "screenshot": shot, "scale": 1,
                                                              "clipboard_content": "copied"}).json() == {"success": True}
    assert guest.get("/obs_winagent").json()["computer_clipboard"] == "copied"
    reply = guest.get("/cursor_position")  # the real view returns a tuple Flask cannot serve
    assert reply.status_code == 500 and reply.json()["status"] == "error"
    reply = guest.get("/no/such/route")
    assert reply.status_code == 500 and reply.json()["message"].startswith("404 Not Found")
    assert guest.get("/execute").json()["message"].startswith("405 Method Not Allowed")
    assert guest.post("/execute", data="x").json()["message"].startswith("415 Unsupported Media Type")


# ---------------------------------------------------------------------------- openadapt-evals
def test_multi_layer_probe_requests(guest):
    shot = guest.get("/screenshot")
    assert shot.status_code == 200 and shot.content[:8] == b"\x89PNG\r\n\x1a\n"  # screenshot layer
    a11y = guest.get("/accessibility", params={"backend": "uia"})
    assert a11y.status_code == 200 and a11y.text.strip()  # a11y layer
    action = guest.post("/execute", json={"command": 'python -c "import pyautogui; print(pyautogui.position())"'})
    assert action.status_code == 200 and "Point" in action.json()["output"]  # action layer
    score = guest.post("/evaluate", json={"command": "echo probe_test", "expected": "probe_test",
                                          "metric": "exact_match"})
    assert score.status_code == 500  # a stock WAA server has no /evaluate: the layer fails on a real host too


def test_live_adapter_requests(guest):
    recovery = 'python -c "import pyautogui; pyautogui.FAILSAFE=False; pyautogui.moveTo(500, 400)"'
    assert guest.post("/execute", json={"command": recovery}).status_code == 200
    assert guest.python("print(pyautogui.position())")["output"] == "Point(x=500, y=400)\n"
    script = "(Get-CimInstance Win32_OperatingSystem).Caption"
    code = ("import subprocess; "
            f"r = subprocess.run(['powershell', '-Command', {script!r}], capture_output=True, text=True, timeout=30); "
            "print(r.stdout)")
    reply = guest.post("/execute", json={"command": f'python -c "{code}"'}).json()
    assert reply["output"] == "Microsoft Windows 11 Enterprise Evaluation\n\n"
    assert "stdout" not in reply  # run_powershell reads "stdout": a real server answers "output" too
    dismiss = ("import pyautogui, subprocess; subprocess.run('taskkill /F /IM OneDriveStandaloneUpdater.exe /T', "
               "shell=True, capture_output=True, timeout=5); pyautogui.press('escape'); pyautogui.press('escape')")
    assert guest.post("/execute_windows", json={"command": dismiss}).json() == {"status": "success"}


def test_faults_reach_the_guest_api(guest):
    guest.state.faults.reset(("empty_tree", "black_screen"))
    assert guest.get("/accessibility").json() == {"AT": ""}
    assert png_is_black(guest.get("/screenshot").content)[0] is True
    guest.state.faults.reset(("server_down",))
    with pytest.raises(requests.ConnectionError):
        guest.get("/probe")
