"""POST /execute's command emulation on its own: the answers a Windows guest's
subprocess.run(command, shell=shell, text=True) gives, and proof that nothing is ever run."""
from __future__ import annotations

import io
import os

import pytest

from waa_runner.emulator.waa_emu.config import Settings
from waa_runner.emulator.waa_emu.execute import execute, split_windows
from waa_runner.emulator.waa_emu.guest_api import GuestError
from waa_runner.emulator.waa_emu.logs import Log
from waa_runner.emulator.waa_emu.state import State


@pytest.fixture
def state(tmp_path):
    return State.create(Settings(fault_file=str(tmp_path / "faults")), Log(io.StringIO()))


def run(state, command, shell=None):
    data = {"command": command} if shell is None else {"command": command, "shell": shell}
    reply = execute(state, data)
    return reply["output"], reply["error"], reply["returncode"]


@pytest.mark.parametrize("code, output", [
    ("import platform; print(platform.system())", "Windows\n"),
    ("import platform; print(platform.release(), platform.machine())", "10 AMD64\n"),
    ("import pyautogui; print(pyautogui.size())", "Size(width=1440, height=900)\n"),
    ("import pyautogui; w, h = pyautogui.size(); print(f'{w}x{h}')", "1440x900\n"),
    ("import ctypes; print(ctypes.windll.user32.GetSystemMetrics(0))", "1440\n"),
    ("import pyautogui; print(pyautogui.getActiveWindowTitle())", "File Explorer\n"),
    ("import pygetwindow as gw; print([w.title for w in gw.getAllWindows()][1:2])", ""),  # comprehensions: unknown
    ("import pygetwindow as gw; print(gw.getWindowsWithTitle('explorer'))",
     '[<Win32Window left="320", top="140", width="800", height="500", title="File Explorer">]\n'),
    ("import os; print(os.path.expanduser('~'), os.name)", "C:\\Users\\Docker nt\n"),
    ("import os; print(os.environ['USERNAME'])", "Docker\n"),
    ("import os; print(sorted(os.listdir(r'C:\\Users\\Docker'))[:2])", "['AppData', 'Desktop']\n"),
    ("print(some_unknown_call())", ""),
])
def test_python_snippets(state, code, output):
    assert run(state, ["python", "-c", code], False) == (output, "", 0)


def test_file_write_then_read(state):
    path = r"C:\Users\Docker\Desktop\a.txt"
    assert run(state, ["python", "-c", f"open(r'{path}', 'w').write('one\\ntwo')"], False)[2] == 0
    assert run(state, ["python", "-c", f"print(open(r'{path}').read())"], False)[0] == "one\ntwo\n"
    assert state.files.read(path) == b"one\r\ntwo"  # Windows text mode
    assert run(state, ["python", "-c", f"with open(r'{path}') as f: print(len(f.readlines()))"], False)[0] == "2\n"
    assert run(state, f'cmd /c type "{path}"', True)[0] == "one\ntwo"
    assert run(state, f"powershell -Command \"Test-Path '{path}'; Get-Content -Path '{path}'\"")[0] == "True\none\ntwo\n"


def test_errors_as_on_windows(state):
    out, err, code = run(state, ["python", "-c", "import os; os.remove(r'C:\\nope')"], False)
    assert code == 1 and err.endswith("FileNotFoundError: [WinError 2] The system cannot find the file specified: "
                                      "'C:\\\\nope'\n")
    out, err, code = run(state, ["python", "-c", "print('unclosed"], False)
    assert code == 1 and "SyntaxError" in err
    assert run(state, ["python", "-c", "import sys; sys.exit(4)"], False)[2] == 4
    assert run(state, ["python", r"C:\missing.py"], False) == (
        "", "python: can't open file 'C:\\missing.py': [Errno 2] No such file or directory\n", 2)
    assert run(state, "nosuchtool --x", True) == (
        "", "'nosuchtool' is not recognized as an internal or external command,\noperable program or batch file.\n", 1)
    with pytest.raises(GuestError, match=r"\[WinError 2\]"):  # CreateProcess fails: the route answers 500
        run(state, ["nosuchtool"], False)
    with pytest.raises(GuestError, match=r"\[WinError 87\]"):
        run(state, [], False)
    with pytest.raises(ValueError, match="No closing quotation"):  # shlex.split of a string without shell
        run(state, 'python -c "print(1)')
    with pytest.raises(GuestError, match="'int' object has no attribute 'startswith'"):
        run(state, ["python", 3], False)


def test_cmd_builtins(state):
    assert run(state, ["cmd", "/c", "echo", "hi there"], False) == ('"hi there"\n', "", 0)
    assert run(state, "echo hi & echo there", True) == ("hi \nthere\n", "", 0)  # the space before & stays
    assert run(state, "cmd /c exit 3", True)[2] == 3
    assert run(state, "ver", True)[0] == "\nMicrosoft Windows [Version 10.0.22631.2861]\n"
    assert run(state, ["whoami"], False)[0] == "win-waaemu01\\docker\n"
    assert run(state, ["hostname"], False)[0] == "WIN-WAAEMU01\n"
    assert run(state, ["python", "--version"], False)[0] == "Python 3.9.13\n"


def test_nothing_is_ever_run(state, tmp_path):
    marker = tmp_path / "ran"
    for command in (["python", "-c", f"__import__('os').system('touch {marker}')"],
                    ["python", "-c", f"import os; os.system('touch {marker}')"],
                    ["python", "-c", f"exec(\"open('{marker}', 'w')\")"],
                    ["python", "-c", f"import subprocess; subprocess.run(['touch', '{marker}'])"],
                    ["powershell", "-Command", f"New-Item -Path {marker}"],
                    ["cmd", "/c", f"type nul > {marker}"]):
        try:
            run(state, command, False)
        except GuestError:
            pass
    assert not marker.exists() and not os.path.exists(str(marker))


def test_windows_command_line_splitting():
    assert split_windows(r'python -c "print(\"a b\")" C:\x\\') == ["python", "-c", 'print("a b")', "C:\\x\\\\"]
    assert split_windows('a "" b') == ["a", "", "b"]


def test_cmd_redirections_and_folders(state):
    """SetupController's LibreOffice reset line, and redirections into the guest's files."""
    line = (r'taskkill /IM soffice.bin /F 2>NUL & taskkill /IM scalc.exe /F 2>NUL & '
            r'rmdir /S /Q "C:\Temp\winarena-libreoffice-profile" 2>NUL & mkdir "C:\Temp\winarena-libreoffice-profile"')
    assert run(state, line, True) == ("", "", 0)
    assert state.files.is_dir(r"C:\Temp\winarena-libreoffice-profile")
    assert run(state, r"echo one > C:\Temp\out.txt & echo two >> C:\Temp\out.txt", True) == ("", "", 0)
    assert state.files.read(r"C:\Temp\out.txt") == b"one  \r\ntwo \r\n"  # cmd keeps the spaces around the redirection
    assert run(state, "nosuch 2>&1", True)[0].startswith("'nosuch' is not recognized")


@pytest.mark.parametrize("code", [
    "x = 'a' * 1000\nfor i in [0] * 64:\n    x = x + x\nprint(len(x))",
    "s = 'a' * 100000\nprint(len(s.replace('a', s)))",
    "s = 'b' * 100000\nprint(len(s.join([s] * 100)))",
    "for i in [0] * 1000:\n    print('x' * 100000)",
])
def test_snippets_stay_bounded(state, code):
    out, err, code_rc = run(state, ["python", "-c", code], False)
    assert len(out) <= (1 << 20) + 100000 and code_rc == 0
