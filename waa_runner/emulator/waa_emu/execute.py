"""POST /execute: what the guest's `subprocess.run(command, shell=shell, text=True)` would answer,
WITHOUT running anything. Known programs are recognised (cmd and its built-ins, python -c / python
script.py, powershell -Command, whoami, hostname, ...) and their known snippets answered by
pysnippet.py and pssnippet.py; docs/emulator.md lists what is recognised and what everything else
gets. Output is text as `text=True` reads it on Windows: "\\r\\n" arrives as "\\n"."""
from __future__ import annotations

import ntpath
import re
import shlex
import subprocess
from typing import Any, Callable

from .desktop import HOSTNAME, OS_VERSION, USER
from .guest_api import GuestError
from .state import State

Result = tuple[str, str, int]  # stdout, stderr, returncode
NOT_FOUND = "[WinError 2] The system cannot find the file specified"
# Programs on the guest's PATH that are known but not modelled: they succeed and print nothing.
QUIET_PROGRAMS = frozenset((
    "notepad", "explorer", "taskkill", "start", "code", "chrome", "msedge", "ffmpeg", "git", "caddy", "reg",
    "timeout", "schtasks", "shutdown", "ping", "ipconfig", "netsh", "soffice", "vlc", "mspaint", "calc",
    "rundll32", "control", "xcopy", "robocopy", "mkdir", "del", "copy", "move", "set", "cls", "pause", "rem",
))
CMD_BUILTINS = frozenset(("echo", "echo.", "exit", "ver", "cd", "chdir", "type", "set", "start", "dir", "cls",
                          "mkdir", "md", "rmdir", "rd", "del", "erase", "copy", "move", "rem", "pause", "title", "call"))
REDIRECT = re.compile(r'(?P<fd>[12]?)(?P<op>>>?)\s*(?P<target>&[12]|"[^"]*"|[^\s&|<>]+)')


def split_windows(line: str) -> list[str]:
    """CommandLineToArgvW's rules (quotes group, backslashes before a quote escape it)."""
    args: list[str] = []
    current, quoted, backslashes, has_arg = "", False, 0, False
    for char in line:
        if char == "\\":
            backslashes += 1
            continue
        if char == '"':
            current += "\\" * (backslashes // 2)
            if backslashes % 2:
                current += '"'
            else:
                quoted = not quoted
            backslashes, has_arg = 0, True
            continue
        current += "\\" * backslashes
        backslashes = 0
        if char in " \t" and not quoted:
            if current or has_arg:
                args.append(current)
            current, has_arg = "", False
        else:
            current += char
    current += "\\" * backslashes
    if current or has_arg:
        args.append(current)
    return args


def split_chain(line: str) -> list[str]:
    """`a & b`, `a && b`: the commands of one cmd line (an & inside double quotes stays)."""
    parts, current, quoted = [], "", False
    for char in line:
        if char == '"':
            quoted = not quoted
        if char == "&" and not quoted and not current.endswith(">"):  # `2>&1` stays
            parts.append(current)
            current = ""
        else:
            current += char
    return [part for part in parts + [current] if part.strip()]


def program_name(arg: str) -> str:
    name = ntpath.basename(arg.strip("\"'")).lower()
    return name[:-4] if name.endswith((".exe", ".com", ".bat", ".cmd")) else name


def run_cmd(state: State, line: str) -> Result:
    """cmd.exe /c LINE: its built-ins, then the programs; `a & b` and `a && b` run in order."""
    out, err, code = "", "", 0
    for raw in split_chain(line):
        redirects = [(m.group("fd") or "1", m.group("op"), m.group("target").strip('"')) for m in REDIRECT.finditer(raw)]
        part = REDIRECT.sub("", raw)
        argv = split_windows(part.strip())
        if not argv:
            continue
        stripped = part.strip()
        name = program_name(argv[0])
        if stripped.lower() == "echo":
            o, e, code = "ECHO is on.\n", "", 0
        elif stripped.lower().startswith(("echo ", "echo.")):
            o, e, code = part.lstrip()[5:] + "\n", "", 0  # cmd keeps the spaces before `&` and `>`
        elif name == "exit":
            tail = argv[1:2] if argv[1:2] != ["/b"] else argv[2:3]
            value = tail[0] if tail else "0"
            return out, err, int(value) if value.lstrip("-").isdigit() else 0
        elif name == "ver":
            o, e, code = f"\nMicrosoft Windows [Version {OS_VERSION}.2861]\n", "", 0
        elif name in ("cd", "chdir") and len(argv) == 1:
            o, e, code = r"C:\Users\Docker" + "\n", "", 0
        elif name == "type" and len(argv) > 1:
            o, e, code = _type(state, argv[1])
        elif name in ("mkdir", "md"):
            for path in argv[1:]:
                state.files.make_dirs(path)
            o, e, code = "", "", 0
        elif name in CMD_BUILTINS:
            o, e, code = "", "", 0
        else:
            o, e, code = run_argv(state, argv, from_shell=True)
        o, e = _redirect(state, redirects, o, e)
        out, err = out + o, err + e
    return out, err, code


def _redirect(state: State, redirects: list[tuple[str, str, str]], out: str, err: str) -> tuple[str, str]:
    """`> file`, `>> file`, `2>NUL`, `2>&1`: where each stream of one command goes."""
    for fd, op, target in redirects:
        text = out if fd == "1" else err
        if target == "&1" and fd == "2":
            out, err = out + err, ""
            continue
        if target.upper() != "NUL" and not target.startswith("&"):
            try:
                old = state.files.read(target) if op == ">>" and state.files.is_file(target) else b""
                state.files.write(target, old + text.replace("\n", "\r\n").encode())
            except OSError:
                return out, err + "The system cannot find the path specified.\n"
        out, err = ("", err) if fd == "1" else (out, "")
    return out, err


def _type(state: State, path: str) -> Result:
    try:
        return state.files.read(path).decode("utf-8", "replace").replace("\r\n", "\n"), "", 0
    except OSError:
        return "", "The system cannot find the file specified.\n", 1


def run_argv(state: State, argv: list[str], from_shell: bool = False) -> Result:
    from . import pssnippet, pysnippet

    name = program_name(argv[0])
    handlers: dict[str, Callable[[State, list[str]], Result]] = {
        "cmd": lambda s, a: _cmd(s, a), "python": pysnippet.run_python, "python3": pysnippet.run_python,
        "py": pysnippet.run_python, "pythonw": pysnippet.run_python, "powershell": pssnippet.run_powershell,
        "pwsh": pssnippet.run_powershell,
        "whoami": lambda s, a: (f"{HOSTNAME.lower()}\\{USER.lower()}\n", "", 0),
        "hostname": lambda s, a: (HOSTNAME + "\n", "", 0),
    }
    if name in handlers:
        return handlers[name](state, argv[1:])
    if name in QUIET_PROGRAMS:
        return "", "", 0
    if from_shell:
        return "", (f"'{argv[0]}' is not recognized as an internal or external command,\n"
                    "operable program or batch file.\n"), 1
    raise GuestError(NOT_FOUND)  # CreateProcess: FileNotFoundError, the route answers 500


def _cmd(state: State, args: list[str]) -> Result:
    for index, arg in enumerate(args):
        if arg.lower() in ("/c", "/k"):
            return run_cmd(state, subprocess.list2cmdline(args[index + 1:]))
    return f"Microsoft Windows [Version {OS_VERSION}.2861]\n(c) Microsoft Corporation. All rights reserved.\n", "", 0


def execute(state: State, data: Any) -> dict[str, Any]:
    """The route's body: the same checks, in the same order, as the real server."""
    if not isinstance(data, dict):
        raise GuestError(f"'{type(data).__name__}' object has no attribute 'get'")
    shell = data.get("shell", False)
    command = data.get("command", "" if shell else [])
    if isinstance(command, str) and not shell:
        command = shlex.split(command)  # a bad quote raises ValueError: 500, as the real server
    if isinstance(command, (int, float, bool)) or command is None or isinstance(command, dict):
        raise GuestError(f"'{type(command).__name__}' object is not iterable")
    if isinstance(command, list):
        for arg in command:
            if not isinstance(arg, str):
                raise GuestError(f"'{type(arg).__name__}' object has no attribute 'startswith'")
    if shell:
        line = command if isinstance(command, str) else subprocess.list2cmdline(command)
        out, err, code = run_cmd(state, line)
    else:
        if not command:
            raise GuestError("[WinError 87] The parameter is incorrect")
        out, err, code = run_argv(state, command)
    return {"status": "success", "output": out, "error": err, "returncode": code}


__all__ = ["execute", "run_argv", "run_cmd", "split_windows"]
