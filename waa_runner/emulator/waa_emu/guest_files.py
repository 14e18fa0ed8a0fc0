"""The guest's file system, in memory: what /file, /setup/upload, /list_directory and the file
snippets of /execute read and write. Windows rules: `\\` and `/` both separate, names compare
case-insensitively, `~` and %USERPROFILE% expand to C:\\Users\\Docker. Nothing touches the
container's own files. Bounded: at most MAX_FILE_BYTES a file and MAX_TOTAL_BYTES in all.
"""
from __future__ import annotations

import ntpath
import threading
import time
from types import MappingProxyType
from typing import Mapping

from .desktop import HOME

MAX_FILE_BYTES = 16 << 20
MAX_TOTAL_BYTES = 64 << 20
SEED_DIRS = (
    "C:\\", r"C:\Users", HOME, HOME + r"\Desktop", HOME + r"\Documents", HOME + r"\Downloads",
    HOME + r"\Pictures", HOME + r"\Music", HOME + r"\Videos", HOME + r"\AppData\Local\Temp", r"C:\Windows",
    r"C:\Windows\Web\Wallpaper\Windows", r"C:\Program Files", r"C:\Temp",
)
ENV: Mapping[str, str] = MappingProxyType({"userprofile": HOME, "homepath": r"\Users\Docker", "homedrive": "C:", "username": "Docker",
       "temp": HOME + r"\AppData\Local\Temp", "tmp": HOME + r"\AppData\Local\Temp",
       "systemroot": r"C:\Windows", "windir": r"C:\Windows", "appdata": HOME + r"\AppData\Roaming",
       "localappdata": HOME + r"\AppData\Local", "public": r"C:\Users\Public"})


def expand(path: str) -> str:
    """os.path.expandvars(os.path.expanduser(path)) as on the Windows guest."""
    if path == "~" or path.startswith(("~/", "~\\")):
        path = HOME + path[1:]
    out, rest = "", path
    while "%" in rest:
        before, _, after = rest.partition("%")
        name, found, tail = after.partition("%")
        if not found:
            out += before + "%" + after
            rest = ""
            break
        out += before + ENV.get(name.lower(), f"%{name}%")
        rest = tail
    return out + rest


def normalize(path: str) -> str:
    """An absolute Windows path (relative paths are relative to the server's cwd, the home folder)."""
    path = expand(path).replace("/", "\\")
    if not ntpath.isabs(path) or not ntpath.splitdrive(path)[0]:
        path = ntpath.join(HOME, path)
    return ntpath.normpath(path)


class FileTooLarge(OSError):
    pass


class GuestFiles:
    """Files (bytes, mtime) and directories, keyed by the lowercased normalized path."""

    def __init__(self, seed: dict[str, bytes] | None = None) -> None:
        self._lock = threading.Lock()
        self._dirs: dict[str, str] = {}
        self._files: dict[str, tuple[str, bytes, float]] = {}
        for directory in SEED_DIRS:
            self.make_dirs(directory)
        for path, data in (seed or {}).items():
            self.write(path, data)

    @staticmethod
    def key(path: str) -> str:
        return normalize(path).lower()

    def make_dirs(self, path: str) -> None:
        full = normalize(path)
        with self._lock:
            while True:
                self._dirs.setdefault(full.lower(), full)
                parent = ntpath.dirname(full)
                if parent == full:
                    return
                full = parent

    def is_dir(self, path: str) -> bool:
        with self._lock:
            return self.key(path) in self._dirs

    def is_file(self, path: str) -> bool:
        with self._lock:
            return self.key(path) in self._files

    def exists(self, path: str) -> bool:
        return self.is_dir(path) or self.is_file(path)

    def read(self, path: str) -> bytes:
        with self._lock:
            entry = self._files.get(self.key(path))
        if entry is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        return entry[1]

    def write(self, path: str, data: bytes) -> str:
        full = normalize(path)
        if len(data) > MAX_FILE_BYTES:
            raise FileTooLarge(27, "File too large", path)
        parent = ntpath.dirname(full)
        if not self.is_dir(parent):
            raise FileNotFoundError(2, "No such file or directory", path)
        with self._lock:
            if self.key(full) in self._dirs:
                raise IsADirectoryError(21, "Is a directory", path)
            used = sum(len(d) for _, d, _ in self._files.values()) - len(self._files.get(full.lower(), ("", b""))[1])
            if used + len(data) > MAX_TOTAL_BYTES:
                raise FileTooLarge(28, "No space left on device", path)
            self._files[full.lower()] = (full, data, time.time())
        return full

    def mtime(self, path: str) -> float:
        with self._lock:
            entry = self._files.get(self.key(path))
        return entry[2] if entry else 0.0

    def remove(self, path: str) -> None:
        with self._lock:
            if self._files.pop(self.key(path), None) is None:
                raise FileNotFoundError(2, "The system cannot find the file specified", path)

    def listdir(self, path: str) -> list[str]:
        """Names directly inside a directory, sorted case-insensitively as NTFS lists them."""
        prefix = self.key(path).rstrip("\\") + "\\"
        with self._lock:
            if prefix[:-1] not in self._dirs:
                raise FileNotFoundError(3, "The system cannot find the path specified", path)
            names = [full[len(prefix):] for key, full in list(self._dirs.items()) + [
                (k, v[0]) for k, v in self._files.items()] if key.startswith(prefix) and "\\" not in key[len(prefix):]
                and key != prefix[:-1]]
        return sorted(names, key=str.lower)

    def tree(self, path: str, depth: int = 0) -> dict:
        """/list_directory's directory_tree: {'type', 'name', 'children'} recursively."""
        full = normalize(path)
        node: dict = {"type": "directory", "name": ntpath.basename(full), "children": []}
        for name in self.listdir(full):
            child = ntpath.join(full, name)
            if self.is_dir(child) and depth < 32:
                node["children"].append(self.tree(child, depth + 1))
            else:
                node["children"].append({"type": "file", "name": name})
        return node
