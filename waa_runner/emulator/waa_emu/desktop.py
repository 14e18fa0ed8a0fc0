"""The emulated Windows desktop: its windows, the accessibility tree, the cursor, the registry.

One model answers every way of looking at the desktop: /accessibility, /obs_winagent, the window
lists and cursor position that /execute snippets print, and the pictures in pictures.py.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from .config import SCREEN_H, SCREEN_W

USER = "Docker"
HOME = r"C:\Users\Docker"
HOSTNAME = "WIN-WAAEMU01"  # dockur's guests get a random WIN-... name; this one is fixed
OS_CAPTION = "Microsoft Windows 11 Enterprise Evaluation"
OS_VERSION = "10.0.22631"
PYTHON_VERSION = "3.9.13"


@dataclass(frozen=True)
class Window:
    title: str
    class_name: str  # the Win32 class; the tree's tag is class_name.lower()
    rect: tuple[int, int, int, int]  # left, top, right, bottom
    active: bool = False
    process: str = "explorer"


WINDOWS = (  # top-level windows, in z-order as pywinauto's Desktop().windows() lists them
    Window("Taskbar", "Shell_TrayWnd", (0, SCREEN_H - 48, SCREEN_W, SCREEN_H)),
    Window("File Explorer", "CabinetWClass", (320, 140, 1120, 640), active=True),
    Window("Program Manager", "Progman", (0, 0, SCREEN_W, SCREEN_H)),
)
NAMESPACES = (
    ("st", "uri:deskat:state.at-spi.gnome.org"), ("attr", "uri:deskat:attributes.at-spi.gnome.org"),
    ("cp", "uri:deskat:component.at-spi.gnome.org"), ("doc", "uri:deskat:document.at-spi.gnome.org"),
    ("docattr", "uri:deskat:attributes.document.at-spi.gnome.org"), ("txt", "uri:deskat:text.at-spi.gnome.org"),
    ("val", "uri:deskat:value.at-spi.gnome.org"), ("act", "uri:deskat:action.at-spi.gnome.org"),
    ("win", "uri:deskat:uia.windows.microsoft.org"),
)
APPX_PACKAGES = (  # Get-AppxPackage | Select-Object Name,PackageFullName
    ("Microsoft.WindowsCalculator", "Microsoft.WindowsCalculator_11.2311.0.0_x64__8wekyb3d8bbwe"),
    ("Microsoft.WindowsNotepad", "Microsoft.WindowsNotepad_11.2312.18.0_x64__8wekyb3d8bbwe"),
    ("Microsoft.WindowsAlarms", "Microsoft.WindowsAlarms_11.2311.20.0_x64__8wekyb3d8bbwe"),
    ("Microsoft.Paint", "Microsoft.Paint_11.2311.30.0_x64__8wekyb3d8bbwe"),
    ("Microsoft.Windows.Photos", "Microsoft.Windows.Photos_2023.11120.5010.0_x64__8wekyb3d8bbwe"),
)
REGISTRY: Mapping[tuple[str, str], str] = MappingProxyType({  # (path lowercased, name lowercased) -> value
    (r"hkcu:\control panel\desktop", "wallpaper"): r"C:\Windows\web\wallpaper\Windows\img0.jpg",
    (r"hkcu:\software\microsoft\windows\currentversion\explorer\advanced", "hidefileext"): "1",
    (r"hkcu:\software\microsoft\windows\currentversion\explorer\advanced", "hidden"): "2",
    (r"hklm:\software\microsoft\windows nt\currentversion", "productname"): "Windows 10 Enterprise Evaluation",
    (r"hklm:\software\microsoft\windows nt\currentversion", "currentbuild"): "22631",
    (r"hklm:\software\microsoft\windows nt\currentversion", "displayversion"): "23H2",
})


def _node(window_tag: str, name: str, rect: tuple[int, int, int, int], backend: str, children: str = "",
          active: bool = False) -> str:
    x0, y0, x1, y1 = rect
    wrapper = "pywinauto.controls.uiawrapper.UIAWrapper" if backend == "uia" else \
        "pywinauto.controls.hwndwrapper.HwndWrapper"
    attrs = (f'name="{name}" st:enabled="true" st:visible="true" st:active="{str(active).lower()}" '
             f'cp:screencoord="({x0}, {y0})" cp:size="({x1 - x0}, {y1 - y0})" '
             f'win:class="&lt;class \'{wrapper}\'&gt;"')
    return f"<{window_tag} {attrs}>{children}</{window_tag}>" if children else f"<{window_tag} {attrs}/>"


def accessibility_tree(backend: str) -> str:
    """Like the WAA server's pywinauto tree: <desktop> with one child per top-level window."""
    declarations = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NAMESPACES)
    taskbar, explorer, progman = WINDOWS
    children = {
        "Taskbar": _node("start", "Start", (628, SCREEN_H - 48, 676, SCREEN_H), backend)
        + _node("traynotifywnd", "", (1240, SCREEN_H - 48, SCREEN_W, SCREEN_H), backend),
        "File Explorer": _node("shelltabwindowclass", "Home", (320, 172, 1120, 640), backend),
        "Program Manager": _node("shelldll_defview", "", progman.rect, backend, children=(
            _node("syslistview32", "FolderView", progman.rect, backend))),
    }
    nodes = "".join(_node(w.class_name.lower(), w.title, w.rect, backend, children[w.title], w.active)
                    for w in (taskbar, explorer, progman))
    return f"<desktop {declarations}>{nodes}</desktop>"


class Desktop:
    """What changes on the desktop: the cursor (pyautogui moves it), the clipboard, the registry."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cursor = (SCREEN_W // 2, SCREEN_H // 2)
        self.clipboard: str | None = None  # the WAA server's computer.clipboard (None until /update_computer)
        self.registry: dict[tuple[str, str], str] = dict(REGISTRY)
        self.recording = False

    def move_cursor(self, x: int, y: int) -> None:
        with self.lock:
            self.cursor = (min(max(0, x), SCREEN_W - 1), min(max(0, y), SCREEN_H - 1))

    @staticmethod
    def active_window() -> Window:
        return next(w for w in WINDOWS if w.active)

    @staticmethod
    def titles() -> list[str]:
        """pygetwindow.getAllTitles(): every top-level window, the Program Manager included."""
        return [w.title for w in WINDOWS]

    @staticmethod
    def open_applications() -> list[str]:
        """WindowManager.find_open_applications() of the WAA server: titled app windows."""
        return [w.title for w in WINDOWS if w.title not in ("Taskbar", "Program Manager")]

    def registry_get(self, path: str, name: str) -> str | None:
        with self.lock:
            return self.registry.get((path.lower().rstrip("\\"), name.lower()))

    def registry_set(self, path: str, name: str, value: str) -> None:
        with self.lock:
            self.registry[(path.lower().rstrip("\\"), name.lower())] = value
