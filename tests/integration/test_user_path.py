"""The user's path, exactly: a fresh clone, README's first command (`make up`), then README's own
examples against this machine, from the clone's own fresh virtual environment (no test extras).

What a new user does first must work, so CI does it on every submission. The clone's .venv is
made by `make up` itself (scripts/bootstrap.sh without --test); images are found up to date by
content, so the run costs the package install plus one `up`.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.emulator import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def readme_commands() -> list[str]:
    """The first code block's commands (the two set-up commands)."""
    block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert block, "README.md starts with a sh block of commands"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def readme_local_examples() -> list[tuple[str, int]]:
    """README's `$ waa-run ... --local ...` examples with the exit code the README shows for each."""
    examples = []
    for match in re.finditer(r"```\n\$ (waa-run [^\n]*--local[^\n]*)\n(.*?)```", README, re.S):
        shown = re.search(r"^exit (\d+) ", match.group(2), re.M)
        examples.append((match.group(1), int(shown.group(1)) if shown else 0))
    return examples


@pytest.fixture(scope="module")
def clone(tmp_path_factory, docker_engine):
    path = tmp_path_factory.mktemp("fresh") / "openadapt.waa"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(path)], check=True, timeout=120)
    yield path
    subprocess.run([str(path / ".venv" / "bin" / "waa-run"), "down", "--local", "--remove"], cwd=path,
                   capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
    docker("rm", "-f", "-v", "winarena", check=False)


def user_env(clone: Path) -> dict[str, str]:
    """A user's shell: the clone's venv first on PATH, nothing of the test run's Python."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "VIRTUAL_ENV", "WAA_"))}
    env["PATH"] = f"{clone / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def test_make_up_on_a_fresh_clone_ends_ready(clone):
    assert readme_commands()[0] == "make up"
    proc = subprocess.run(["make", "up"], cwd=clone, capture_output=True, text=True, timeout=1800,
                          stdin=subprocess.DEVNULL, env=user_env(clone))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "up: 1/1 hosts ready" in output and re.search(r"^localhost\s+ready\s+0\s", proc.stdout, re.M), output[-3000:]
    # no test extras: the user's venv has what `waa-run up` needs, and nothing of the tests
    pip = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                         capture_output=True, text=True, timeout=120)
    installed = {line.split("==")[0].lower() for line in pip.stdout.splitlines()}
    assert "requests" in installed and "pytest" not in installed and "molecule" not in installed


def test_the_readme_examples_run_as_shown(clone):
    version = subprocess.run(["waa-run", "--version"], cwd=clone, capture_output=True, text=True, timeout=60,
                             env=user_env(clone))
    assert version.returncode == 0 and version.stdout.startswith("waa-run "), version.stderr
    examples = readme_local_examples()
    assert examples, "README shows `waa-run ... --local` examples with their output"
    for command, shown_code in examples:
        faulted = shown_code != 0
        if faulted:  # the README's failure example is the emulator's server_down fault
            docker("exec", "winarena", "waa-emu-fault", "server_down")
        try:
            proc = subprocess.run(shlex.split(command), cwd=clone, capture_output=True, text=True, timeout=900,
                                  stdin=subprocess.DEVNULL, env=user_env(clone))
        finally:
            if faulted:
                docker("exec", "winarena", "waa-emu-fault", "clear")
        assert proc.returncode == shown_code, f"{command}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
