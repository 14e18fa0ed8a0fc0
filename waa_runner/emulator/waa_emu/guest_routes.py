"""The WAA server's routes (its vm/setup/server/main.py): probe, platform, screen, accessibility,
execute, shutdown, the agent's observations, files. ROUTES is the table GuestServer serves and
docs/emulator.md's table is checked against (tests/unit/test_emulator_docs.py)."""
from __future__ import annotations

import base64
import binascii
import mimetypes
import ntpath
import time

from .config import SCREEN_H, SCREEN_W
from .desktop import HOME, accessibility_tree
from .execute import execute as run_execute
from .guest_api import GuestError, Request, Response, Route, jsonify, text
from .guest_checks import CHECK_ROUTES
from .guest_setup import SETUP_ROUTES
from .pictures import crop_png
from .pysnippet import Interpreter
from .state import State


def probe(state: State, request: Request) -> Response:
    return jsonify({"status": "Probe successful", "message": "Service is operational"})


def platform(state: State, request: Request) -> Response:
    return text("Windows")


def screenshot(state: State, request: Request) -> Response:
    return Response(200, state.screen_image("png"), "image/png")


def accessibility(state: State, request: Request) -> Response:
    backend = request.arg("backend", "win32")
    if backend not in ("win32", "uia"):
        return text("Invalid backend specified", 400)
    if state.settings.a11y_delay_s:
        time.sleep(state.settings.a11y_delay_s)
    return jsonify({"AT": "" if state.faults.has("empty_tree") else accessibility_tree(backend)})


def execute(state: State, request: Request) -> Response:
    return jsonify(run_execute(state, request.json()))


def execute_windows(state: State, request: Request) -> Response:
    """exec(command, {'computer': ..., 'human': ...}): checked for syntax, its pyautogui moves applied."""
    data = request.json()
    command = data.get("command") if isinstance(data, dict) else None
    if not isinstance(command, str):
        raise GuestError("exec() arg 1 must be a string, bytes or code object")
    try:
        compile(command, "<string>", "exec")  # compiles only; nothing runs
    except SyntaxError as err:
        return jsonify({"status": "error", "message": f"{err.msg} (<string>, line {err.lineno})"}, 500)
    out, errors, code = Interpreter(state).run(command)
    if code or "error" in out.lower():
        return jsonify({"status": "error", "message": (out + errors).strip() or "error"}, 500)
    return jsonify({"status": "success"})


def update_computer(state: State, request: Request) -> Response:
    data = request.json()
    if not isinstance(data, dict):
        raise GuestError(f"'{type(data).__name__}' object has no attribute 'get'")
    shot = data.get("screenshot")
    if not isinstance(shot, str):
        raise GuestError(f"argument should be a bytes-like object or ASCII string, not '{type(shot).__name__}'")
    try:
        raw = base64.b64decode(shot)
    except (binascii.Error, ValueError) as err:
        raise GuestError(str(err)) from None
    if not raw.startswith((b"\x89PNG", b"\xff\xd8", b"BM", b"GIF8")):  # what PIL.Image.open can read
        raise GuestError("cannot identify image file <_io.BytesIO object at 0x000001E2C1F0A9A0>")
    clipboard = data.get("clipboard_content")
    state.desktop.clipboard = clipboard if isinstance(clipboard, str) else None
    return jsonify({"success": True})


def shutdown(state: State, request: Request) -> Response:
    state.machine.schedule_power_off(2.0)  # `shutdown /s /t 2`
    return jsonify({"status": "Shutdown started successfully", "message": "Shutdown started successfully"})


def screen_size(state: State, request: Request) -> Response:
    return jsonify({"width": SCREEN_W, "height": SCREEN_H})


def cursor_position(state: State, request: Request) -> Response:
    # The real view returns the tuple (x, y): Flask reads it as (body, status) and fails.
    raise GuestError("The view function did not return a valid response. The return type must be a string, dict, "
                     "list, tuple with headers or status, Response instance, or WSGI callable, but it was a int.")


def terminal(state: State, request: Request) -> Response:
    return text("Currently not implemented for platform Windows-10-10.0.22631-SP0.", 500)


def obs_winagent(state: State, request: Request) -> Response:
    window = state.desktop.active_window()
    image = crop_png(state.screen.rows(state.machine.screen_black()), *window.rect)
    return jsonify({"image": base64.b64encode(image).decode(), "window_title": window.title,
                    "rect": list(window.rect), "window_names_str": "\n".join(state.desktop.open_applications()),
                    "computer_clipboard": state.desktop.clipboard, "human_input": [], "status": "success"})


def desktop_path(state: State, request: Request) -> Response:
    return jsonify({"desktop_path": HOME + r"\Desktop"})


def documents_path(state: State, request: Request) -> Response:
    return jsonify({"documents_path": HOME + r"\Documents"})


def window_size(state: State, request: Request) -> Response:
    if "app_class_name" not in request.form():
        return jsonify({"error": "app_class_name is required"}, 400)
    raise GuestError('Bad display name ""')  # the real route asks X11 (Xlib) on Windows


def wallpaper(state: State, request: Request) -> Response:
    return Response(200, state.screen.image(False, "png"), "image/png")


def list_directory(state: State, request: Request) -> Response:
    data = request.json()
    if "path" not in data:
        return jsonify({"error": "Missing 'path' parameter"}, 400)
    if not isinstance(data["path"], str) or not state.files.is_dir(data["path"]):
        return jsonify({"error": "The provided path is not a directory"}, 400)
    return jsonify({"directory_tree": state.files.tree(data["path"])})


def get_file(state: State, request: Request) -> Response:
    form = request.form()
    if "file_path" not in form:
        return jsonify({"error": "file_path is required"}, 400)
    try:
        data = state.files.read(form["file_path"])
    except OSError:
        return jsonify({"error": "File not found"}, 404)
    name = ntpath.basename(form["file_path"].replace("/", "\\"))
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(200, data, kind, {"Content-Disposition": f"attachment; filename={name}"})


def upload(state: State, request: Request) -> Response:
    form, files = request.form(), request.files()
    if "file_path" not in form or "file_data" not in files:
        return jsonify({"error": "file_path and file_data are required"}, 400)
    try:
        state.files.write(form["file_path"], files["file_data"][1])
    except OSError as err:
        raise GuestError(f"[Errno {err.errno}] {err.strerror}: {form['file_path']!r}") from None
    return text("File Uploaded")


def revert_to_snapshot(state: State, request: Request) -> Response:
    return jsonify({"error": "Restore snapshot no implemented"}, 501)


def save_state(state: State, request: Request) -> Response:
    if "snapshot_name" not in request.form():
        return jsonify({"error": "snapshot_name is required"}, 400)
    raise GuestError("400 Bad Request: The browser (or proxy) sent a request that this server could not understand."
                     "\nKeyError: 'file_path'")  # the real route reads request.form['file_path']


CORE_ROUTES = (
    Route("/probe", ("GET",), probe), Route("/platform", ("GET",), platform),
    Route("/screenshot", ("GET",), screenshot), Route("/accessibility", ("GET",), accessibility),
    Route("/terminal", ("GET",), terminal), Route("/obs_winagent", ("GET",), obs_winagent),
    Route("/cursor_position", ("GET",), cursor_position),
    Route("/execute", ("POST",), execute), Route("/setup/execute", ("POST",), execute),
    Route("/execute_windows", ("POST",), execute_windows), Route("/update_computer", ("POST",), update_computer),
    Route("/shutdown", ("POST",), shutdown), Route("/screen_size", ("POST",), screen_size),
    Route("/window_size", ("POST",), window_size), Route("/desktop_path", ("POST",), desktop_path),
    Route("/documents_path", ("POST",), documents_path), Route("/wallpaper", ("POST",), wallpaper),
    Route("/list_directory", ("POST",), list_directory), Route("/file", ("POST",), get_file),
    Route("/setup/upload", ("POST",), upload), Route("/save_state", ("POST",), save_state),
    Route("/revert_to_snapshot", ("POST",), revert_to_snapshot),
)
ROUTES: tuple[Route, ...] = CORE_ROUTES + SETUP_ROUTES + CHECK_ROUTES
