"""The guest's Python file functions (os, os.path, open() and file objects) on the in-memory guest
file system: what pysnippet's snippets read and write."""
from __future__ import annotations

import ntpath
import time
from collections import namedtuple
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .guest_files import normalize

if TYPE_CHECKING:
    from .pysnippet import Interpreter

StatResult = namedtuple("StatResult", "st_mode st_size st_mtime st_file_attributes")


class GuestException(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message, self.lineno = kind, message, 0


def not_found(path: str) -> GuestException:
    return GuestException("FileNotFoundError", f"[WinError 2] The system cannot find the file specified: {path!r}")


@dataclass
class GuestFile:
    path: str
    mode: str
    data: bytes = b""
    written: list[bytes] = field(default_factory=list)


def _exists(it: "Interpreter", path: Any) -> bool:
    return isinstance(path, str) and it.state.files.exists(path)


def _stat(it: "Interpreter", path: Any) -> StatResult:
    if not isinstance(path, str) or not it.state.files.exists(path):
        raise not_found(str(path))
    if it.state.files.is_dir(path):
        return StatResult(16895, 0, 0.0, 16)
    return StatResult(33206, len(it.state.files.read(path)), time.time(), 32)


def _listdir(it: "Interpreter", path: Any = ".") -> list[str]:
    try:
        return it.state.files.listdir(str(path))
    except OSError:
        raise GuestException("FileNotFoundError", f"[WinError 3] The system cannot find the path specified: "
                                                  f"{path!r}") from None


def _remove(it: "Interpreter", path: Any) -> None:
    try:
        it.state.files.remove(str(path))
    except OSError:
        raise not_found(str(path)) from None


def _open(it: "Interpreter", path: Any, mode: Any = "r", *args: Any, **kwargs: Any) -> GuestFile:
    if not isinstance(path, str) or not isinstance(mode, str):
        raise GuestException("TypeError", "expected str, bytes or os.PathLike object")
    if "r" in mode and "+" not in mode:
        try:
            return GuestFile(normalize(path), mode, it.state.files.read(path))
        except OSError:
            raise GuestException("FileNotFoundError", f"[Errno 2] No such file or directory: {path!r}") from None
    if not it.state.files.is_dir(ntpath.dirname(normalize(path))):
        raise GuestException("FileNotFoundError", f"[Errno 2] No such file or directory: {path!r}")
    data = it.state.files.read(path) if "a" in mode and it.state.files.is_file(path) else b""
    handle = GuestFile(normalize(path), mode, data)
    it.names.setdefault("__open_files__", []).append(handle)
    return handle


def flush_files(it: "Interpreter") -> None:
    for handle in it.names.get("__open_files__", []):
        if handle.written or "w" in handle.mode:
            it.state.files.write(handle.path, handle.data + b"".join(handle.written))


def _file_method(method: str, handle: GuestFile, args: list[Any]) -> Any:
    if method == "file.read":
        return handle.data if "b" in handle.mode else handle.data.decode("utf-8", "replace").replace("\r\n", "\n")
    if method == "file.readlines":
        return handle.data.decode("utf-8", "replace").replace("\r\n", "\n").splitlines(keepends=True)
    if method == "file.write" and args:
        data = args[0] if isinstance(args[0], bytes) else str(args[0]).replace("\n", "\r\n").encode()
        handle.written.append(data)
        return len(args[0])
    return handle if method == "file.__enter__" else None
