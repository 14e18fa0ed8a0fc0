"""`powershell -Command SCRIPT` on the guest, answered without running PowerShell: the statements
of SCRIPT (split at `;` and newlines outside quotes) are matched against the cmdlets WAA's clients
send (Get-AppxPackage | ConvertTo-Json, Get-/Set-ItemProperty, Get-Content, Test-Path, the OS
caption, window titles, the screen size, Write-Output, exit). Others succeed with no output."""
from __future__ import annotations

import re
from typing import Callable

from .config import SCREEN_H, SCREEN_W
from .desktop import APPX_PACKAGES, HOME, HOSTNAME, OS_CAPTION, USER, WINDOWS
from .guest_files import ENV, normalize
from .state import State

Result = tuple[str, str, int]
ARG = r"""(?:'(?P<{0}1>[^']*)'|"(?P<{0}2>[^"]*)"|(?P<{0}3>[^\s'";|]+))"""


def _arg(name: str) -> str:
    return ARG.format(name)


def _value(match: re.Match[str], name: str) -> str:
    groups = match.groupdict()
    return next((g for g in (groups.get(name + "1"), groups.get(name + "2"), groups.get(name + "3"))
                 if g is not None), "")


def split_statements(script: str) -> list[str]:
    parts, current, quote = [], "", ""
    for char in script:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in ";\n":
            parts.append(current)
            current = ""
            continue
        current += char
    return [p.strip() for p in parts + [current] if p.strip()]


def convert_to_json(rows: list[dict[str, str]]) -> str:
    """Windows PowerShell 5.1's ConvertTo-Json layout: 4-space indents, `"Key":  value`."""
    def obj(row: dict[str, str], pad: str) -> str:
        body = ",\n".join(f'{pad}    "{k}":  "{v}"' for k, v in row.items())
        return f"{pad}{{\n{body}\n{pad}}}"
    if len(rows) == 1:
        return obj(rows[0], "") + "\n"
    return "[\n" + ",\n".join(obj(row, "    ") for row in rows) + "\n]\n"


def _appx(state: State, statement: str) -> Result:
    rows = [{"Name": name, "PackageFullName": full} for name, full in APPX_PACKAGES]
    if "convertto-json" in statement.lower():
        return convert_to_json(rows), "", 0
    width = max(len(n) for n, _ in APPX_PACKAGES)
    lines = [f"{'Name'.ljust(width)} PackageFullName", f"{'----'.ljust(width)} ---------------"]
    lines += [f"{n.ljust(width)} {f}" for n, f in APPX_PACKAGES]
    return "\n" + "\n".join(lines) + "\n\n\n", "", 0


def _get_property(state: State, match: re.Match[str]) -> Result:
    path, name = _value(match, "path"), _value(match, "name")
    value = state.desktop.registry_get(path, name)
    if value is None:
        return "", (f"Get-ItemPropertyValue : Property {name} does not exist at path {path}.\n"
                    "    + CategoryInfo          : InvalidArgument: (:) [Get-ItemPropertyValue], PSArgumentException\n"
                    "    + FullyQualifiedErrorId : System.Management.Automation.PSArgumentException,Microsoft.PowerShe"
                    "ll.Commands.GetItemPropertyValueCommand\n \n"), 1
    return value + "\n", "", 0


def _set_property(state: State, match: re.Match[str]) -> Result:
    state.desktop.registry_set(_value(match, "path"), _value(match, "name"), _value(match, "value"))
    return "", "", 0


def _get_content(state: State, match: re.Match[str]) -> Result:
    path = _value(match, "path")
    try:
        content = state.files.read(path).decode("utf-8", "replace").replace("\r\n", "\n")
    except OSError:
        return "", (f"Get-Content : Cannot find path '{normalize(path)}' because it does not exist.\n"), 1
    return (content if content.endswith("\n") or not content else content + "\n"), "", 0


def _child_items(state: State, match: re.Match[str]) -> Result:
    path = _value(match, "path") or HOME
    try:
        return "".join(name + "\n" for name in state.files.listdir(path)), "", 0
    except OSError:
        return "", f"Get-ChildItem : Cannot find path '{normalize(path)}' because it does not exist.\n", 1


def _remove_item(state: State, match: re.Match[str]) -> Result:
    try:
        state.files.remove(_value(match, "path"))
        return "", "", 0
    except OSError:
        return "", f"Remove-Item : Cannot find path '{normalize(_value(match, 'path'))}' because it does not exist.\n", 1


def _echo(state: State, match: re.Match[str]) -> Result:
    text = match.group("rest").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text + "\n", "", 0


def _exit(state: State, match: re.Match[str]) -> Result:
    return "", "", int(match.group("code"))


Handler = Callable[[State, "re.Match[str]"], Result]
PATTERNS: tuple[tuple[re.Pattern[str], Handler], ...] = tuple((re.compile(p, re.I | re.S), h) for p, h in (
    (r"^Get-AppxPackage\b", lambda s, m: _appx(s, m.string)),
    (rf"^Get-ItemPropertyValue\s+(?:-Path\s+)?{_arg('path')}\s+-Name\s+{_arg('name')}", _get_property),
    (rf"^\(Get-ItemProperty\s+(?:-Path\s+)?{_arg('path')}\)\.(?P<name3>\w+)", _get_property),
    (rf"^Set-ItemProperty\s+(?:-Path\s+)?{_arg('path')}\s+-Name\s+{_arg('name')}\s+-Value\s+{_arg('value')}",
     _set_property),
    (rf"^(?:Get-Content|gc|cat|type)\s+(?:-Path\s+|-LiteralPath\s+)?{_arg('path')}", _get_content),
    (rf"^Test-Path\s+(?:-Path\s+|-LiteralPath\s+)?{_arg('path')}",
     lambda s, m: ("True\n" if s.files.exists(_value(m, "path")) else "False\n", "", 0)),
    (rf"^(?:Get-ChildItem|dir|ls|gci)\s+(?:-Path\s+)?{_arg('path')}(?=.*-Name)", _child_items),
    (rf"^Remove-Item\s+(?:-Path\s+|-LiteralPath\s+)?{_arg('path')}", _remove_item),
    (r"^\(?(?:Get-CimInstance|Get-WmiObject|gwmi)\s+(?:-ClassName\s+|-Class\s+)?Win32_OperatingSystem\)?\.Caption",
     lambda s, m: (OS_CAPTION + "\n", "", 0)),
    (r"MainWindowTitle", lambda s, m: ("".join(w.title + "\n" for w in WINDOWS if w.process == "explorer"
                                               and w.title not in ("Taskbar", "Program Manager")), "", 0)),
    (r"PrimaryScreen\.Bounds\.Width", lambda s, m: (f"{SCREEN_W}\n", "", 0)),
    (r"PrimaryScreen\.Bounds\.Height", lambda s, m: (f"{SCREEN_H}\n", "", 0)),
    (r"^\$env:(?P<var>\w+)$", lambda s, m: (ENV.get(m.group("var").lower(), "") + "\n"
                                            if m.group("var").lower() in ENV else "", "", 0)),
    (r"^\[Environment\]::UserName$", lambda s, m: (USER + "\n", "", 0)),
    (r"^(?:hostname|\$env:COMPUTERNAME|\[Environment\]::MachineName)$", lambda s, m: (HOSTNAME + "\n", "", 0)),
    (r"^(?:Get-Location|pwd|gl)$", lambda s, m: (f"\nPath\n----\n{HOME}\n\n\n", "", 0)),
    (r"^(?:Write-Output|Write-Host|echo)\s+(?P<rest>.*)$", _echo),
    (r"^exit\s+(?P<code>-?\d+)$", _exit),
))


def run_script(state: State, script: str) -> Result:
    out, err, code = "", "", 0
    for statement in split_statements(script):
        for pattern, handler in PATTERNS:
            match = pattern.search(statement)
            if match:
                o, e, code = handler(state, match)
                out, err = out + o, err + e
                if pattern.pattern.startswith("^exit"):
                    return out, err, code
                break
    return out, err, 1 if err and not code else code


def run_powershell(state: State, args: list[str]) -> Result:
    """powershell [-NoProfile] [-ExecutionPolicy X] (-Command SCRIPT... | -File PATH | SCRIPT...)"""
    index = 0
    while index < len(args) and args[index].lower() in ("-noprofile", "-nologo", "-noninteractive", "-executionpolicy",
                                                        "-windowstyle", "-inputformat", "-outputformat"):
        index += 2 if args[index].lower() in ("-executionpolicy", "-windowstyle", "-inputformat",
                                              "-outputformat") else 1
    rest = args[index:]
    if rest and rest[0].lower() in ("-file", "-f") and len(rest) > 1:
        try:
            return run_script(state, state.files.read(rest[1]).decode("utf-8", "replace"))
        except OSError:
            return "", f"The argument '{rest[1]}' to the -File parameter does not exist.\n", 4294770688
    if rest and rest[0].lower() in ("-command", "-c"):
        rest = rest[1:]
    return run_script(state, " ".join(rest))
