"""A run of waa-run that is killed (SIGKILL, an OOM kill, a crashed harness) must not leave
ansible-playbook and its workers acting on hosts with nobody watching.

ansible-runner starts `ansible-playbook` itself (through pexpect, no hook of its own), so waa_runner
puts a shim of that name first on the run's PATH (`install_shim`). The shim runs this guard: it asks
the kernel for SIGTERM when its parent thread - waa-run's runner thread - dies (PR_SET_PDEATHSIG),
starts the real ansible-playbook as its child, and on that signal kills ansible-playbook's whole
process tree (waa_runner.processes: frozen first, so no worker forks away) before it exits. A
normal end, a timeout and a cancel are unchanged: the guard passes the exit status through.
Linux only; elsewhere the shim just runs ansible-playbook.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
SHIM = """#!{python}
import sys
sys.path[:0] = {paths!r}
from waa_runner.orphan_guard import main
sys.exit(main({real!r}, sys.argv[1:]))
"""


def install_shim(directory: Path, real: str) -> Path:
    """Write an `ansible-playbook` into `directory` (put it first on the run's PATH) that runs `real`
    under the guard."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    package_root = str(Path(__file__).resolve().parent.parent)
    shim = directory / "ansible-playbook"
    shim.write_text(SHIM.format(python=sys.executable, paths=[package_root], real=real))
    shim.chmod(0o700)
    return shim


def _die_with_parent() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def main(real: str, argv: list[str]) -> int:
    parent = os.getppid()
    if not _die_with_parent():
        os.execv(real, [real, *argv])
    child = subprocess.Popen([real, *argv])

    def stop(signum: int, _frame: object) -> None:
        from waa_runner import processes

        artifact_dir = os.environ.get("AWX_ISOLATED_DATA_DIR", "")
        if artifact_dir:
            processes.kill_run_tree(artifact_dir, parent=os.getpid())
        if child.poll() is None:
            child.kill()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    if os.getppid() != parent:  # waa-run died before the signal was armed
        stop(signal.SIGTERM, None)
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover - PEP 475 retries wait() itself
            continue
