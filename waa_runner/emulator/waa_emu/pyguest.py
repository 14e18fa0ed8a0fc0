"""The guest's Python, as far as the snippets of WAA's and openadapt-evals' clients use it: the
values of platform, pyautogui, pygetwindow, os, os.path, open(), subprocess, ctypes' screen metrics,
win32gui, pyperclip, json. Only names in these tables can be called; everything else is UNKNOWN."""
from __future__ import annotations

import json
import ntpath
import subprocess
import time
from collections import namedtuple
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .config import SCREEN_H, SCREEN_W
from .desktop import HOME, HOSTNAME, OS_VERSION, PYTHON_VERSION, USER, WINDOWS
from .guest_files import ENV, expand, normalize
from .pyfiles import GuestException, GuestFile, _exists, _file_method, _listdir, _open, _remove, _stat

if TYPE_CHECKING:
    from .pysnippet import Interpreter

UNKNOWN: Any = type("Unknown", (), {"__repr__": lambda self: "<unknown>", "__bool__": lambda self: False})()
Point = namedtuple("Point", "x y")  # pyautogui's own types: str() prints Point(x=720, y=450)
Size = namedtuple("Size", "width height")
MAX_PRINTED = 1 << 20
STR_METHODS = frozenset(("startswith", "endswith", "strip", "lstrip", "rstrip", "lower", "upper", "split",
                         "splitlines", "replace", "join", "find", "count", "title", "encode", "decode"))


@dataclass(frozen=True)
class Ref:
    """A module, function or constant of the guest, by its dotted name (`os.path.exists`)."""
    name: str


@dataclass
class GuestWindow:  # pygetwindow.Win32Window
    title: str
    left: int
    top: int
    width: int
    height: int
    isActive: bool = False
    isMinimized: bool = False
    isMaximized: bool = False

    def __repr__(self) -> str:
        return (f'<Win32Window left="{self.left}", top="{self.top}", width="{self.width}", '
                f'height="{self.height}", title="{self.title}">')


def windows() -> list[GuestWindow]:
    return [GuestWindow(w.title, w.rect[0], w.rect[1], w.rect[2] - w.rect[0], w.rect[3] - w.rect[1], w.active)
            for w in WINDOWS]


ENVIRON: Mapping[str, str] = ENV
CONSTANTS: Mapping[str, Any] = MappingProxyType({
    "os.name": "nt", "os.sep": "\\", "os.linesep": "\r\n", "sys.platform": "win32", "os.environ": ENVIRON,
    "sys.version": f"{PYTHON_VERSION} (tags/v{PYTHON_VERSION}:6de2ca5, May 17 2022, 16:36:42) [MSC v.1929 64 bit "
                   "(AMD64)]", "sys.executable": r"C:\Users\Docker\AppData\Local\Programs\Python\Python39\python.exe",
    "pyautogui.FAILSAFE": True, "pyautogui.PAUSE": 0.1, "string.ascii_letters": "abcdefghijklmnopqrstuvwxyz"
                                                                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
})


def _move(it: "Interpreter", args: list[Any], kwargs: dict[str, Any], relative: bool = False) -> None:
    x = kwargs.get("x", kwargs.get("xOffset", args[0] if args else None))
    y = kwargs.get("y", kwargs.get("yOffset", args[1] if len(args) > 1 else None))
    if isinstance(x, (tuple, list)) and len(x) == 2:
        x, y = x
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        cx, cy = it.state.desktop.cursor
        it.state.desktop.move_cursor(int(cx + x) if relative else int(x), int(cy + y) if relative else int(y))


def _run(it: "Interpreter", args: Any, *rest: Any, **kwargs: Any) -> Any:
    from .execute import run_argv, run_cmd

    if isinstance(args, str):
        out, err, code = run_cmd(it.state, args) if kwargs.get("shell") else run_argv(it.state, [args])
    elif isinstance(args, list) and args and all(isinstance(a, str) for a in args):
        out, err, code = run_cmd(it.state, subprocess.list2cmdline(args)) if kwargs.get("shell") \
            else run_argv(it.state, args)
    else:
        return UNKNOWN
    captured = kwargs.get("capture_output") or kwargs.get("stdout") is not None
    if not captured:
        it.out.append(out)
        it.err.append(err)
    if kwargs.get("check") and code:
        raise GuestException("subprocess.CalledProcessError",
                             f"Command '{args}' returned non-zero exit status {code}.")
    as_text = kwargs.get("text") or kwargs.get("universal_newlines") or kwargs.get("encoding")
    wrap: Callable[[str], Any] = (lambda s: s) if as_text else (lambda s: s.replace("\n", "\r\n").encode())
    return subprocess.CompletedProcess(args, code, wrap(out) if captured else None, wrap(err) if captured else None)


def _print(it: "Interpreter", *args: Any, **kwargs: Any) -> None:
    if any(a is UNKNOWN for a in args):
        return  # print() of something the emulator does not model prints nothing: docs/emulator.md
    target = it.err if kwargs.get("file") == Ref("sys.stderr") else it.out
    if sum(len(chunk) for chunk in target) > MAX_PRINTED:
        return  # the reply is capped: docs/emulator.md
    target.append(str(kwargs.get("sep", " ")).join(str(a) for a in args) + str(kwargs.get("end", "\n")))


def _exit(it: "Interpreter", code: Any = 0) -> None:
    from .pysnippet import Exit

    raise Exit(code if isinstance(code, int) else 1)


def _clip_copy(it: "Interpreter", value: Any) -> None:
    it.state.desktop.clipboard = str(value)


MOVES: Mapping[str, bool] = MappingProxyType({"moveTo": False, "dragTo": False, "click": False, "doubleClick": False, "rightClick": False,
         "middleClick": False, "tripleClick": False, "mouseDown": False, "mouseUp": False, "moveRel": True,
         "move": True, "dragRel": True, "drag": True})
F = Callable[..., Any]
FUNCTIONS: Mapping[str, F] = MappingProxyType({
    "print": _print, "open": _open, "sys.exit": _exit, "exit": _exit, "quit": _exit,
    "platform.system": lambda it: "Windows", "platform.release": lambda it: "10",
    "platform.version": lambda it: OS_VERSION, "platform.platform": lambda it: f"Windows-10-{OS_VERSION}-SP0",
    "platform.machine": lambda it: "AMD64", "platform.node": lambda it: HOSTNAME,
    "platform.python_version": lambda it: PYTHON_VERSION, "platform.architecture": lambda it: ("64bit", "WindowsPE"),
    "socket.gethostname": lambda it: HOSTNAME, "getpass.getuser": lambda it: USER, "os.getlogin": lambda it: USER,
    "pyautogui.position": lambda it: Point(*it.state.desktop.cursor),
    "pyautogui.size": lambda it: Size(SCREEN_W, SCREEN_H),
    "pyautogui.onScreen": lambda it, x, y=None: 0 <= x < SCREEN_W and 0 <= (y or 0) < SCREEN_H,
    "pyautogui.getActiveWindowTitle": lambda it: it.state.desktop.active_window().title,
    "pygetwindow.getActiveWindowTitle": lambda it: it.state.desktop.active_window().title,
    "pyautogui.getAllTitles": lambda it: it.state.desktop.titles(),
    "pygetwindow.getAllTitles": lambda it: it.state.desktop.titles(),
    "pygetwindow.getAllWindows": lambda it: windows(), "pyautogui.getAllWindows": lambda it: windows(),
    "pygetwindow.getActiveWindow": lambda it: next(w for w in windows() if w.isActive),
    "pygetwindow.getWindowsWithTitle": lambda it, t: [w for w in windows() if str(t).upper() in w.title.upper()],
    "ctypes.windll.user32.GetSystemMetrics": lambda it, i: {0: SCREEN_W, 1: SCREEN_H}.get(i, 0),
    "win32gui.GetForegroundWindow": lambda it: 65814,
    "win32gui.GetWindowText": lambda it, hwnd: it.state.desktop.active_window().title,
    "win32gui.GetWindowRect": lambda it, hwnd: it.state.desktop.active_window().rect,
    "pyperclip.paste": lambda it: it.state.desktop.clipboard or "", "pyperclip.copy": _clip_copy,
    "time.sleep": lambda it, s=0: None, "time.time": lambda it: time.time(),
    "os.getcwd": lambda it: HOME, "os.listdir": _listdir, "os.remove": _remove, "os.unlink": _remove,
    "os.makedirs": lambda it, p, *a, **k: it.state.files.make_dirs(str(p)),
    "os.mkdir": lambda it, p, *a, **k: it.state.files.make_dirs(str(p)), "os.stat": _stat,
    "os.getenv": lambda it, k, d=None: ENV.get(str(k).lower(), d), "os.startfile": lambda it, *a: None,
    "os.environ.get": lambda it, k, d=None: ENV.get(str(k).lower(), d),
    "os.path.exists": _exists, "os.path.isfile": lambda it, p: isinstance(p, str) and it.state.files.is_file(p),
    "os.path.isdir": lambda it, p: isinstance(p, str) and it.state.files.is_dir(p),
    "os.path.getsize": lambda it, p: _stat(it, p).st_size, "os.path.getmtime": lambda it, p: _stat(it, p).st_mtime,
    "os.path.basename": lambda it, p: ntpath.basename(p), "os.path.dirname": lambda it, p: ntpath.dirname(p),
    "os.path.join": lambda it, *p: ntpath.join(*p), "os.path.abspath": lambda it, p: normalize(p),
    "os.path.normpath": lambda it, p: ntpath.normpath(p), "os.path.splitext": lambda it, p: ntpath.splitext(p),
    "os.path.expanduser": lambda it, p: expand(p) if str(p).startswith("~") else p,
    "os.path.expandvars": lambda it, p: expand(p), "subprocess.run": _run, "subprocess.call":
        lambda it, *a, **k: _run(it, *a, **k).returncode,
    "subprocess.check_output": lambda it, *a, **k: _run(it, *a, **{**k, "capture_output": True, "check": True}).stdout,
    "json.dumps": lambda it, v, **k: json.dumps(v, **{x: y for x, y in k.items() if x in ("indent", "sort_keys")}),
    "json.loads": lambda it, s: json.loads(s),
    "str": lambda it, v="": str(v), "int": lambda it, v=0, *b: int(v, *b), "float": lambda it, v=0.0: float(v),
    "bool": lambda it, v=False: bool(v), "len": lambda it, v: len(v), "repr": lambda it, v: repr(v),
    "list": lambda it, v=(): list(v), "sorted": lambda it, v, **k: sorted(v, reverse=bool(k.get("reverse"))),
    "min": lambda it, *v: min(*v), "max": lambda it, *v: max(*v), "abs": lambda it, v: abs(v),
    "round": lambda it, v, n=None: round(v, n), "any": lambda it, v: any(v), "all": lambda it, v: all(v),
})
BUILTINS: Mapping[str, Ref] = MappingProxyType({name: Ref(name) for name in ("print", "open", "exit", "quit", "str", "int", "float", "bool", "len",
                                         "repr", "list", "sorted", "min", "max", "abs", "round", "any", "all")})


def attribute(it: "Interpreter", value: Any, name: str) -> Any:
    if isinstance(value, Ref):
        full = f"{value.name}.{name}"
        return CONSTANTS.get(full, Ref(full))
    if isinstance(value, str) and name in STR_METHODS:
        return getattr(value, name)
    if isinstance(value, GuestFile) and name in ("read", "readlines", "write", "close", "__enter__"):
        return Ref(f"file.{name}").name, value
    if isinstance(value, (tuple, GuestWindow, subprocess.CompletedProcess)) and not name.startswith("_"):
        return getattr(value, name, UNKNOWN)
    return UNKNOWN


def call(it: "Interpreter", func: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if UNKNOWN in args or func is UNKNOWN:
        return UNKNOWN
    if isinstance(func, tuple) and len(func) == 2 and isinstance(func[1], GuestFile):
        return _file_method(func[0], func[1], args)
    if callable(func) and getattr(func, "__self__", None).__class__ is str:  # a whitelisted str method
        if _str_result_too_big(func.__self__, func.__name__, args):
            return UNKNOWN
        try:
            return func(*args, **kwargs)
        except (TypeError, ValueError):
            return UNKNOWN
    if not isinstance(func, Ref):
        return UNKNOWN
    name = func.name
    if name.startswith(("pyautogui.", "pydirectinput.")) and name.split(".")[-1] in MOVES:
        _move(it, args, kwargs, relative=MOVES[name.split(".")[-1]])
        return None
    handler = FUNCTIONS.get(name)
    if handler is None:
        return None if name.startswith("pyautogui.") else UNKNOWN  # press, write, hotkey, scroll: no output
    try:
        return handler(it, *args, **kwargs)
    except TypeError as err:
        raise GuestException("TypeError", str(err)) from None


def _str_result_too_big(text: str, method: str, args: list[Any]) -> bool:
    """replace() and join() can multiply sizes: refuse results over the output cap before building them."""
    from .pysnippet import MAX_OUTPUT

    if method == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = len(text) + 1 if args[0] == "" else text.count(args[0])
        return len(text) + count * len(args[1]) > MAX_OUTPUT
    if method == "join" and args and isinstance(args[0], (list, tuple)):
        return sum(len(str(item)) for item in args[0]) + len(text) * len(args[0]) > MAX_OUTPUT
    return False


def set_attribute(it: "Interpreter", target: Any, name: str, value: Any) -> None:
    """`pyautogui.FAILSAFE = False` and the like: accepted, nothing to change."""


def subscript(value: Any, index: Any) -> Any:
    if value is UNKNOWN or index is UNKNOWN:
        return UNKNOWN
    if value is ENVIRON and isinstance(index, str):
        if index.lower() not in value:
            raise GuestException("KeyError", repr(index.upper()))
        return value[index.lower()]
    try:
        return value[index] if isinstance(value, (list, tuple, str, dict, bytes, MappingProxyType)) else UNKNOWN
    except (IndexError, KeyError, TypeError) as err:
        raise GuestException(type(err).__name__, str(err)) from None
