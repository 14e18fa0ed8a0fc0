"""The WAA server's evaluator getters (PythonController.get_vm_*): folder and file checks, File
Explorer's view and sort order, read-only folders, image tags, libraries, the Clock app. They read
the in-memory guest file system; the emulated desktop runs no Clock app and tags no images."""
from __future__ import annotations

import ntpath
from types import MappingProxyType

from .desktop import HOME
from .guest_api import Request, Response, Route, jsonify
from .guest_setup import _json_dict
from .state import State

LIBRARIES = MappingProxyType({"documents": "Documents", "music": "Music", "pictures": "Pictures", "videos": "Videos"})


def _missing(data: dict, *names: str) -> Response | None:
    for name in names:
        if name not in data:
            return jsonify({"error": f"{name} required"}, 400)
    return None


def folder_exists(state: State, request: Request) -> Response:
    data = _json_dict(request)
    problem = _missing(data, "folder_name", "path")
    if problem:
        return problem
    name, path = str(data["folder_name"]), str(data["path"])
    if state.files.is_dir(ntpath.join(path, name)):
        return jsonify({"status": "success", "message": f"Folder {name} exists in {path}."})
    return jsonify({"status": "error", "message": f"Folder {name} does not exist in {path}."}, 400)


def file_exists(state: State, request: Request) -> Response:
    data = _json_dict(request)
    problem = _missing(data, "file_name", "path")
    if problem:
        return problem
    name, path = str(data["file_name"]), str(data["path"])
    if state.files.is_file(ntpath.join(path, name)):
        return jsonify({"status": "success", "message": f"File {name} exists in {path}."})
    return jsonify({"status": "error", "message": f"File {name} does not exist in {path}."}, 400)


def is_details_view(state: State, request: Request) -> Response:
    data = _json_dict(request)
    if "path" not in data:
        return jsonify({"error": "path is required"}, 400)
    # Windows 11's File Explorer opens folders in Details view: the emulated one too.
    return jsonify({"status": "success", "message": "File Explorer is in Details view", "is_details_view": True})


def sorted_by_modified_time(state: State, request: Request) -> Response:
    data = _json_dict(request)
    if "directory" not in data:
        return jsonify({"error": "directory is required"}, 400)
    directory = str(data["directory"])
    shown = state.files.listdir(directory) if state.files.is_dir(directory) else []  # Explorer sorts by name
    items = []
    for name in shown:
        path = ntpath.join(directory, name)
        is_dir = state.files.is_dir(path)
        items.append((name, 0 if is_dir else int(state.files.mtime(path)), is_dir))
    descending = [i[0] for i in sorted(items, key=lambda x: (x[2], -x[1], x[0]))]
    ascending = [i[0] for i in sorted(items, key=lambda x: (-x[2], x[1], x[0]))]
    if shown in (descending, ascending):
        return jsonify({"status": "success", "message": f"{directory}: files are sorted by modified time"})
    return jsonify({"status": "error", "message": f"{directory}: files are not sorted by modified time"}, 400)


def read_only_for_user(state: State, request: Request) -> Response:
    data = _json_dict(request)
    if "directory" not in data:
        return jsonify({"error": "directory is required"}, 400)
    if "user" not in data:
        return jsonify({"error": "user is required"}, 400)
    directory, user = data["directory"], data["user"]
    return jsonify({"status": "error", "message": f"{directory} is not read-only for {user}"}, 400)


def all_images_tagged(state: State, request: Request) -> Response:
    data = _json_dict(request)
    if "directory" not in data:
        return jsonify({"error": "directory is required"}, 400)
    if "tag" not in data:
        return jsonify({"error": "tag is required"}, 400)
    directory, tag = str(data["directory"]), data["tag"]
    images = [f for f in state.files.listdir(directory) if f.lower().endswith(("jpg", "jpeg", "tiff"))]
    if images:  # the emulated files carry no tags
        return jsonify({"status": "error", "message": f"{images[0]} in {directory} is not tagged with {tag}"}, 400)
    return jsonify({"status": "success", "message": f"All images in {directory} are tagged with {tag}"})


def library_folders(state: State, request: Request) -> Response:
    data = _json_dict(request)
    if "library_name" not in data:
        return jsonify({"error": "library_name is required"}, 400)
    name = str(data["library_name"])
    folder = LIBRARIES.get(name.lower())
    if folder is None:
        return jsonify({"error": f"{name} does not exist"}, 400)
    return jsonify({"status": "success", "output": [ntpath.join(HOME, folder)]})


def timer_started(state: State, request: Request) -> Response:
    data = _json_dict(request)
    for name in ("hours", "minutes", "seconds"):
        if name not in data:
            return jsonify({"error": f"{name} is required"}, 400)
    return jsonify({"status": "error", "message": "Timer does not exist"}, 400)


def world_clock_exists(state: State, request: Request) -> Response:
    data = _json_dict(request)
    if "city" not in data or "country" not in data:
        return jsonify({"error": "city and country are required"}, 400)
    return jsonify({"status": "error", "message": "World clock does not exist"}, 400)


CHECK_ROUTES = (
    Route("/folder_exists", ("POST",), folder_exists), Route("/file_exists", ("POST",), file_exists),
    Route("/is_details_view", ("POST",), is_details_view),
    Route("/are_files_sorted_by_modified_time", ("POST",), sorted_by_modified_time),
    Route("/is_directory_read_only_for_user", ("POST",), read_only_for_user),
    Route("/are_all_images_tagged", ("POST",), all_images_tagged),
    Route("/library_folders", ("POST",), library_folders),
    Route("/check_if_timer_started", ("POST",), timer_started),
    Route("/check_if_world_clock_exists", ("POST",), world_clock_exists),
)
