"""The WAA server's /setup/* routes: what SetupController (and the task configs) call to prepare
a task: launch, files and folders, wallpaper, windows, recordings. Nothing is launched or shown;
files go to the in-memory guest file system (guest_files.py)."""
from __future__ import annotations

import ntpath
import shlex

from .config import SCREEN_H, SCREEN_W
from .desktop import HOME, WINDOWS
from .guest_api import GuestError, Request, Response, Route, jsonify, text
from .guest_files import normalize
from .state import State

RECORDING = r"\\host.lan\Data\server\recordings\recording.mp4"
DOWNLOADS = HOME + r"\Downloads"


def _json_dict(request: Request) -> dict:
    data = request.json()
    if not isinstance(data, dict):
        raise GuestError(f"'{type(data).__name__}' object has no attribute 'get'")
    return data


def launch(state: State, request: Request) -> Response:
    data = _json_dict(request)
    shell_value = data.get("shell", False)
    shell = shell_value.lower() == "true" if isinstance(shell_value, str) else bool(shell_value)
    command = data.get("command", "" if shell else [])
    if isinstance(command, str) and not shell:
        command = shlex.split(command)
    if isinstance(command, list) and command and str(command[0]).lower() == "socat":
        return text("Caddy CDP proxy is already running")
    shown = command if shell else " ".join(str(part) for part in command)
    return text(f"{shown} launched successfully")


def create_folder(state: State, request: Request) -> Response:
    data = _json_dict(request)
    if "path" not in data:
        return jsonify({"error": "path required"}, 400)
    path = str(data["path"])
    if state.files.is_dir(path):
        return jsonify({"status": "success", "message": f"{path} already exists."})
    state.files.make_dirs(path)
    return jsonify({"status": "success", "message": f"{path} created."})


def create_file(state: State, request: Request) -> Response:
    data = _json_dict(request)
    if "path" not in data:
        return jsonify({"error": "path required"}, 400)
    path = normalize(str(data["path"]))
    if state.files.is_dir(path):
        return jsonify({"status": "error", "message": "path is not a file"}, 400)
    try:
        state.files.make_dirs(ntpath.dirname(path))
        state.files.write(path, str(data.get("content", "")).replace("\n", "\r\n").encode())
    except OSError:
        return jsonify({"status": "error", "message": f"Failed to create {path}."}, 400)
    return jsonify({"status": "success", "message": f"{path} created."})


def recycle(state: State, request: Request) -> Response:
    data = _json_dict(request)
    if "path" not in data:
        return jsonify({"error": "Missing 'path' parameter"}, 400)
    try:
        state.files.remove(str(data["path"]))
    except OSError:
        return jsonify({"status": "error", "message": f"Failed to recycle {data['path']}"}, 400)
    return jsonify({"status": "success", "message": f"{data['path']} recycled"})


def _existing_path(state: State, data: dict) -> tuple[str | None, Response | None]:
    path = data.get("path")
    if not path:
        return None, text("Path not supplied!", 400)
    full = normalize(str(path))
    if not state.files.exists(full):
        return None, text(f"File not found: {full}", 404)
    return full, None


def change_wallpaper(state: State, request: Request) -> Response:
    path, problem = _existing_path(state, _json_dict(request))
    if problem or path is None:
        return problem or text("Path not supplied!", 400)
    state.desktop.registry_set(r"HKCU:\Control Panel\Desktop", "Wallpaper", path)
    return text("Wallpaper changed successfully")


def download_file(state: State, request: Request) -> Response:
    data = _json_dict(request)
    url, path = data.get("url"), data.get("path")
    if not url or not path:
        return text("Path or URL not supplied!", 400)
    full = normalize(str(path))
    state.files.make_dirs(ntpath.dirname(full))
    state.files.write(full, b"")  # the emulator has no internet: an empty file stands in (docs/emulator.md)
    return text("File downloaded successfully")


def open_file(state: State, request: Request) -> Response:
    path, problem = _existing_path(state, _json_dict(request))
    return problem or text("File opened successfully")


def _find(title: str, strict: bool) -> list[str]:
    titles = [w.title for w in WINDOWS if w.title]
    if strict:
        return [t for t in titles if t == title]
    return [t for t in titles if title.upper() in t.upper()]  # pygetwindow.getWindowsWithTitle


def activate_window(state: State, request: Request) -> Response:
    data = _json_dict(request)
    name = data.get("window_name")
    if not name:
        return text("window_name required", 400)
    if data.get("by_class", False):
        return text("Get window by class name is currently not supported on Windows.", 500)
    if not _find(str(name), bool(data.get("strict", False))):
        return text(f"Window {name} not found (empty results)", 404)
    return text("Window activated successfully")


def close_window(state: State, request: Request) -> Response:
    data = _json_dict(request)
    if "window_name" not in data:
        return text("window_name required", 400)
    name = str(data["window_name"])
    if data.get("by_class", False):
        return text("Get window by class name is not supported on Windows currently.", 500)
    if not _find(name, False):
        return text(f"Window {name} not found (empty results)", 404)
    if data.get("strict", False):  # the real code compares a window with its title: never equal
        return text(f"Window {name} not found (strict mode).", 404)
    return text("Window closed successfully.")


def close_all(state: State, request: Request) -> Response:
    return text("All windows closed successfully.")


def clear_task_files(state: State, request: Request) -> Response:
    removed = []
    for name in state.files.listdir(DOWNLOADS):
        path = ntpath.join(DOWNLOADS, name)
        if state.files.is_file(path) and name.lower() != "desktop.ini":
            state.files.remove(path)
            removed.append(path)
    if removed:
        return text(f"All task files ({removed}) cleared successfully from {DOWNLOADS!r}.")
    return text(f"No task files to clear from {DOWNLOADS!r}.")


def start_recording(state: State, request: Request) -> Response:
    if state.desktop.recording:
        return jsonify({"status": "error", "message": "Recording is already in progress."}, 400)
    state.desktop.recording = True
    command = (f"ffmpeg -y -f gdigrab -draw_mouse 1 -video_size {SCREEN_W}x{SCREEN_H} -i desktop -pix_fmt yuv420p "
               f"-c:v libx264 -r 30 '{RECORDING}'")
    return jsonify({"status": "success", "message": f"Started recording to: {RECORDING}.\nCOMMAND: {command}"})


def end_recording(state: State, request: Request) -> Response:
    if not state.desktop.recording:
        return jsonify({"status": "error", "message": "No recording in progress to stop."}, 400)
    state.desktop.recording = False
    return jsonify({"status": "success", "message": f"record saved to: {RECORDING}"})


SETUP_ROUTES = (
    Route("/setup/launch", ("POST",), launch), Route("/setup/create_folder", ("POST",), create_folder),
    Route("/setup/create_file", ("POST",), create_file), Route("/setup/recycle", ("POST",), recycle),
    Route("/setup/change_wallpaper", ("POST",), change_wallpaper),
    Route("/setup/download_file", ("POST",), download_file), Route("/setup/open_file", ("POST",), open_file),
    Route("/setup/activate_window", ("POST",), activate_window),
    Route("/setup/clear_task_files", ("POST",), clear_task_files), Route("/setup/close_all", ("POST",), close_all),
    Route("/setup/close_window", ("POST",), close_window),
    Route("/start_recording", ("POST",), start_recording), Route("/end_recording", ("POST",), end_recording),
)
