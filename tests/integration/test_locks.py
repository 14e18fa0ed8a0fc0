"""Locks keyed by what they protect, through `waa-run` and through the `waa_lock` module:

- two `waa-run` on the same host container, spelled differently (another inventory name for the
  same address, another --limit) and with different --state-dir: the second exits 12 (busy) at
  once naming the first, or waits with --wait-lock and then exits 12; a SIGKILLed run's lock does
  not block the next run;
- the host-side lock (`openadapt.waa.waa_lock`, what keeps two controllers apart): busy with exit
  code 12 and a verdict naming the holder, --wait-lock semantics, release, and stale leases (dead
  holder on this machine, expired, same controller's killed run) that never block.

The waa-run cases hold the first run in its SSH connection to a listener that never speaks, so
nothing on this machine (its engine, the `winarena` container, /run/lock) is touched.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import poll_until

REPO = Path(__file__).resolve().parents[2]
WAA_RUN = str(Path(sys.executable).parent / "waa-run")
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


@pytest.fixture
def silent_host():
    """127.0.0.1:<port> that completes the TCP handshake and then says nothing (an SSH server that
    hangs): a run connecting to it stays busy until it is stopped."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    """A private controller lock directory for this test (inherited by the waa-run it starts)."""
    path = tmp_path / "locks"
    monkeypatch.setenv("WAA_LOCK_DIR", str(path))
    return path


def inventory(path: Path, name: str, port: int) -> Path:
    path.write_text(json.dumps({"waa": {"hosts": {name: {
        "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "nobody",
        "ansible_ssh_timeout": 300, "waa_container_name": "waa-lock-test"}}}}))
    return path


def waa_run(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([WAA_RUN, "probe", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(REPO), **kwargs)


def run_tree(pid: int) -> list[int]:
    """`pid` and its descendants (from /proc): what a killed waa-run leaves of its ansible-playbook."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def test_runs_on_one_host_collide_whatever_the_spelling_or_state_dir(tmp_path, silent_host, lock_dir):
    first_inventory = inventory(tmp_path / "a.yml", "vm1", silent_host)
    other_spelling = inventory(tmp_path / "b.yml", "the-same-vm", silent_host)
    first = waa_run("-i", str(first_inventory), "--state-dir", str(tmp_path / "state-a"))
    survivors: list[int] = []
    try:
        # the first run holds the lock once its run directory exists (made under the lock)
        poll_until(lambda: (tmp_path / "state-a" / "runs").is_dir() or first.poll() is not None, deadline_s=60,
                   what="the first run to start")
        assert first.poll() is None, first.communicate()

        started = time.monotonic()
        second = subprocess.run([WAA_RUN, "probe", "-i", str(other_spelling), "--limit", "the-same-vm",
                                 "--state-dir", str(tmp_path / "state-b")],
                                capture_output=True, text=True, cwd=str(REPO), timeout=120)
        refused_s = time.monotonic() - started
        assert second.returncode == 12, (second.stdout, second.stderr)
        assert f"busy: pid {first.pid} (waa-run probe, started 20" in second.stderr + second.stdout
        assert "--wait-lock SECONDS" in second.stderr + second.stdout
        assert not (tmp_path / "state-b" / "runs").exists() or not any((tmp_path / "state-b" / "runs").iterdir())

        started = time.monotonic()
        waited = subprocess.run([WAA_RUN, "probe", "-i", str(other_spelling), "--wait-lock", "2", "--json"],
                                capture_output=True, text=True, cwd=str(REPO), timeout=120)
        waited_s = time.monotonic() - started
        report = json.loads(waited.stdout)
        assert waited.returncode == 12 and report["exit_code"] == 12 and "waited 2s" in report["summary"], report
        print(f"\nbusy refused in {refused_s:.1f}s; --wait-lock 2 gave up after {waited_s:.1f}s")

        # a run killed outright: its lock dies with it, the next run is not blocked
        survivors = [pid for pid in run_tree(first.pid) if pid != first.pid]
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        after = subprocess.run([WAA_RUN, "probe", "-i", str(other_spelling), "--timeout", "3", "--json"],
                               capture_output=True, text=True, cwd=str(REPO), timeout=120)
        assert after.returncode != 12, (after.stdout, after.stderr)
        assert json.loads(after.stdout)["runner_status"] != "not_started", after.stdout
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
        for pid in survivors:  # the killed run's own ansible-playbook and ssh (started by this test)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --------------------------------------------------------------------------- waa_lock module
PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: The lock
      openadapt.waa.waa_lock:
        name: "{{ lock_name }}"
        state: "{{ lock_state | default('acquired') }}"
        lock_dir: "{{ lock_dir }}"
        owner: "{{ lock_owner }}"
        wait: "{{ lock_wait | default(0) }}"
        ttl: "{{ lock_ttl | default(7200) }}"
        takeover_own: "{{ lock_takeover_own | default(false) }}"
      register: lock
    - name: Result
      ansible.builtin.debug:
        var: lock
"""


class Lock:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "host-locks"
        self.name = f"waa-lock-{uuid.uuid4().hex[:6]}"
        self.playbook = tmp_path / "lock.yml"
        self.playbook.write_text(PLAY)

    def run(self, owner: dict, **variables) -> tuple[int, dict]:
        """One ansible-playbook run of the module on this machine; (rc, the task's result)."""
        extra = {"lock_name": self.name, "lock_dir": str(self.dir), "lock_owner": owner,
                 "ansible_python_interpreter": sys.executable, **variables}
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", json.dumps(extra),
                               str(self.playbook)],
                              capture_output=True, text=True, cwd=str(REPO), timeout=120,
                              env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_NOCOLOR": "1"})
        try:
            # the json callback's document (the collection's verdict callback may print after it)
            plays = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])[0]["plays"]
        except ValueError:
            raise AssertionError(proc.stdout[-2000:] + proc.stderr[-2000:])
        result = plays[0]["tasks"][0]["hosts"]["localhost"]
        return proc.returncode, result

    def record(self) -> dict | None:
        path = self.dir / f"{self.name}.lock"
        return json.loads(path.read_text()) if path.exists() else None


def test_the_host_lock_keeps_a_second_controller_out_until_released(tmp_path):
    lock = Lock(tmp_path)
    one = {"run_id": "run-one", "what": "waa-run up", "controller": "controller-1", "pid": 424242}
    two = {"run_id": "run-two", "what": "waa-run up", "controller": "controller-2"}
    rc, result = lock.run(one)
    assert rc == 0 and result["changed"] and lock.record()["run_id"] == "run-one", result
    rc, again = lock.run(one)
    assert rc == 0 and not again["changed"], "the holder re-taking its own lock is a no-op"

    rc, busy = lock.run(two)
    assert rc != 0 and busy["exit_code"] == 12
    verdict = busy["waa_verdict"]
    assert verdict["exit_code"] == 12 and verdict["exit_name"] == "busy" and verdict["step"] == "lock"
    assert "busy: run run-one (waa-run up, pid 424242 on controller-1" in verdict["message"]
    assert "--wait-lock SECONDS" in verdict["message"]

    started = time.monotonic()
    rc, waited = lock.run(two, lock_wait=2)
    assert rc != 0 and "(waited 2s)" in waited["msg"] and time.monotonic() - started >= 2

    rc, renewed = lock.run(one, lock_state="renewed", lock_ttl=60)
    assert rc == 0 and renewed["holder"]["expires_at"] - time.time() < 61
    rc, released = lock.run(one, lock_state="released")
    assert rc == 0 and released["changed"] and lock.record() is None
    rc, taken = lock.run(two)
    assert rc == 0 and taken["changed"] and "took_over" not in taken


def test_stale_host_locks_never_block(tmp_path):
    from waa_runner import state

    lock = Lock(tmp_path)
    # a holder on this machine (same boot, same pid namespace) whose process is gone: taken over at once
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rc, result = lock.run(dict(state.lock_owner("waa-run up", run_id="doomed"), pid=holder.pid))
        assert rc == 0 and lock.record()["pid_start"], result
        rc, busy = lock.run({"run_id": "next", "controller": "elsewhere"})
        assert rc != 0 and busy["exit_code"] == 12, "a live holder on this machine holds"
    finally:
        holder.kill()
        holder.wait()
    rc, result = lock.run({"run_id": "next", "controller": "elsewhere"})
    assert rc == 0 and result["took_over"]["stale"] == f"its process {holder.pid} is gone", result

    # an expired lease (of a controller elsewhere: its pid cannot be checked from here)
    remote = {"pid": 4321, "boot_id": "another-machine", "pidns": "pid:[1]"}
    rc, _ = lock.run(dict(remote, run_id="short", controller="c9"), lock_ttl=1)
    assert rc == 0
    poll_until(lambda: lock.record()["expires_at"] < time.time(), deadline_s=5, what="the lease to expire")
    rc, result = lock.run(dict(remote, run_id="after-expiry", controller="c8"))
    assert rc == 0 and result["took_over"]["stale"] == "expired"

    # a lease of another run of the same controller, when that controller vouches it holds no other
    rc, busy = lock.run(dict(remote, run_id="same-controller", controller="c8"))
    assert rc != 0, "without takeover_own the same controller's other run still holds"
    rc, result = lock.run(dict(remote, run_id="same-controller", controller="c8"), lock_takeover_own=True)
    assert rc == 0 and result["took_over"]["run_id"] == "after-expiry"


def test_a_plain_ansible_playbook_run_on_this_machine_frees_its_lock_when_it_ends(tmp_path):
    """Without an owner pid (plain ansible-playbook, local connection) the module records the
    ansible-playbook above it: once that process is gone (ended, killed) the lease is stale."""
    lock = Lock(tmp_path)
    rc, result = lock.run({"run_id": "plain", "controller": "me"})
    holder = lock.record()
    assert rc == 0 and holder["pid"] and holder["pid_start"], holder
    rc, result = lock.run({"run_id": "plain-next", "controller": "someone"})
    assert rc == 0 and result["took_over"]["stale"] == f"its process {holder['pid']} is gone", result


# ------------------------------------------------------------ the host lock through the playbooks
def playbooks_take_the_host_lock() -> bool:
    return "openadapt.waa.waa_lock" in (REPO / "playbooks" / "vm_setup.yml").read_text()


@pytest.mark.skipif(not playbooks_take_the_host_lock(), reason="playbooks/vm_setup.yml does not take the host lock "
                    "(openadapt.waa.waa_lock) yet: docs/security.md")
def test_a_run_from_another_controller_holds_the_host_and_a_dead_one_does_not(tmp_path, lock_dir):
    from ansible_collections.openadapt.waa.plugins.module_utils import _waa_lock

    container = f"waa-lock-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "inventory.yml"
    path.write_text(json.dumps({"waa": {
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                "waa_container_name": container}},
        "vars": {"waa_docker_install": False, "waa_docker_manage_config": False}}}))
    host_lock = _waa_lock.HostLock(container)
    other = {"run_id": "elsewhere-1", "what": "waa-run up", "controller": "controller-2", "pid": 4321,
             "boot_id": "another-machine", "pidns": "pid:[1]"}
    host_lock.try_acquire(other, ttl=600)
    try:
        busy = subprocess.run([WAA_RUN, "vm-setup", "-i", str(path), "--image", "waa-lock-test/none:x", "--no-pull",
                               "--state-dir", str(tmp_path / "state"), "--json"],
                              capture_output=True, text=True, cwd=str(REPO), timeout=300)
        report = json.loads(busy.stdout)
        assert busy.returncode == 12 and report["hosts"]["localhost"]["exit_code"] == 12, busy.stdout[-3000:]
        message = json.dumps(report["hosts"]["localhost"])
        assert "run elsewhere-1 (waa-run up, pid 4321 on controller-2" in message and container in message
        assert host_lock.read()["run_id"] == "elsewhere-1", "the other controller's lease is left alone"

        # the same controller's run that was SIGKILLed (its pid is gone) never blocks
        dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        from waa_runner import state

        host_lock.release(other)
        host_lock.try_acquire(dict(state.lock_owner("waa-run up", run_id="killed"), pid=dead.pid), ttl=600)
        dead.kill()
        dead.wait()
        after = subprocess.run([WAA_RUN, "vm-setup", "-i", str(path), "--image", "waa-lock-test/none:x", "--no-pull",
                                "--state-dir", str(tmp_path / "state"), "--json"],
                               capture_output=True, text=True, cwd=str(REPO), timeout=300)
        report = json.loads(after.stdout)
        assert report["hosts"]["localhost"]["exit_code"] == 3, after.stdout[-3000:]  # the image, not the lock
        assert host_lock.read() is None, "the run released the host lock at its end"
    finally:
        for holder in (host_lock.read(),):
            if holder:
                host_lock.release(holder)
        for leftover in (Path(host_lock.path), Path(host_lock.guard_path)):
            leftover.unlink(missing_ok=True)
