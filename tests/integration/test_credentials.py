"""Registry credentials through `waa-run` against the host's real engine and two real local
registries (Debian's docker-registry with basic auth), each behind a loopback proxy that logs the
Authorization headers it forwards:

- each registry's password reaches that registry only (the primary's never the fallback, the
  fallback's never the primary);
- no password rests in any file written during the run, controller or host: the state dir and
  run artifacts, ~/.ansible/tmp, ~/.ansible_async, /tmp, /dev/shm, the progress file and its lease,
  scanned after the run for the marker passwords (plain and base64 forms); ~/.ansible/tmp and
  Ansible's payload directories are also watched while the run goes on;
- a run cancelled (SIGTERM to waa-run) during a pull that hangs leaves no process on the host
  within the pull's lease, and no password anywhere.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import docker, free_loopback_address, poll_until
from tests.support.registry import StallingProxy, start_registry

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
REPOSITORY = "waa-emu-cred"
WORKER = "openadapt-waa-pull-worker"
HOME = Path.home()


def progress_file(image: str) -> Path:
    """Where the role writes pull progress (roles/winarena_image/vars/main.yml)."""
    import hashlib

    return Path(f"/tmp/waa-pull-{hashlib.sha1(image.encode()).hexdigest()[:12]}.json")


NEW_VARIABLES = ("waa_image_fallback_registry_username", "waa_image_fallback_registry_password",
                 "waa_image_pull_lease", "waa_image_pull_first_poll_grace")


@pytest.fixture(scope="module", autouse=True)
def role_specifies_its_inputs():
    """waa-run refuses variables the role's argument spec does not name (exit 64)."""
    spec = (REPO / "roles" / "winarena_image" / "meta" / "argument_specs.yml").read_text()
    missing = [name for name in NEW_VARIABLES if name not in spec]
    assert not missing, f"roles/winarena_image/meta/argument_specs.yml does not specify {missing} (see defaults/main.yml)"


@pytest.fixture(scope="module")
def registries(docker_engine):
    """Two registries that require basic auth, each with its own user and marker password:
    `primary` has no image (a pull from it fails after authenticating), `fallback` has
    waa-emu-cred:base (the emulator plus a layer of random bytes, new on every run)."""
    from waa_runner import images

    images.ensure_emulator(lambda m: None)
    source = f"waa-registry-src-{uuid.uuid4().hex[:8]}:latest"
    context = Path(f"/tmp/waa-cred-context-{uuid.uuid4().hex[:6]}")
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM waa-emulator:latest\nRUN head -c 4000000 /dev/urandom > /blob && echo {uuid.uuid4().hex} > /blob.id\n")
    started = []
    try:
        docker("build", "-q", "--no-cache", "-t", source, str(context), timeout=300)
        primary = start_registry(credentials=("alice", "MARKER-A-" + uuid.uuid4().hex))
        started.append(primary)
        fallback = start_registry(credentials=("bob", "MARKER-B-" + uuid.uuid4().hex))
        started.append(fallback)
        fallback.push(source, REPOSITORY, "base")
        docker("rmi", source)
        yield {"primary": primary, "fallback": fallback}
    finally:
        docker("rmi", "-f", source, check=False)
        (context / "Dockerfile").unlink()
        context.rmdir()
        for reg in started:
            reg.remove()


def encodings(marker: str) -> list[bytes]:
    """The marker as it could sit in a file: plain, or inside base64 (basic auth, X-Registry-Auth,
    a docker config) in any of the three alignments, standard or URL-safe alphabet."""
    raw = marker.encode()
    forms = [raw]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        middle = encoded[4:-4]  # the part that depends on the marker alone
        forms += [middle, middle.replace(b"+", b"-").replace(b"/", b"_")]
    return forms


SCAN_CAP = 64 << 20


def files_holding(markers: list[str], roots: list[Path], since: float | None) -> list[str]:
    """Regular files under `roots` (written since `since`, when given) that hold any form of a marker."""
    forms = [form for marker in markers for form in encodings(marker)]
    found = []
    for root in roots:
        if not root.exists():
            continue
        for directory, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                try:
                    info = os.lstat(path)
                    if not stat.S_ISREG(info.st_mode) or info.st_size > SCAN_CAP:
                        continue
                    if since is not None and max(info.st_mtime, info.st_ctime) < since:
                        continue
                    with open(path, "rb") as handle:
                        data = handle.read(SCAN_CAP)
                except OSError:
                    continue
                if any(form in data for form in forms):
                    found.append(path)
    return found


class Watcher:
    """Watches, while a run goes on, where a module file with its arguments would land: Ansible's
    remote tmp (~/.ansible/tmp), the async dir and the payload directories in /tmp."""

    def __init__(self, markers: list[str]) -> None:
        self.markers = markers
        self.found: set[str] = set()
        self.scans = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _roots(self) -> list[Path]:
        roots = [HOME / ".ansible" / "tmp", HOME / ".ansible_async"]
        try:
            roots += [p for p in Path("/tmp").iterdir() if p.name.startswith(("ansible", "ansible-"))]
        except OSError:
            pass
        return roots

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self.found.update(files_holding(self.markers, self._roots(), None))
            self.scans += 1

    def __enter__(self) -> "Watcher":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def inventory(tmp_path: Path, container: str) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(json.dumps({"waa": {
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                "waa_container_name": container}},
        "vars": {"waa_docker_install": False, "waa_docker_manage_config": False}}}))
    return path


def settings(fallback: str, **more) -> dict:
    return {"waa_ram_size": "2G", "waa_preflight_min_free_storage_gb": 1, "waa_preflight_min_free_docker_gb": 1,
            "waa_bind_address": free_loopback_address(), "waa_image_progress_interval": 1,
            "waa_image_pull_backoff": 1, "waa_image_pull_retries": 1, "waa_image_fallback_registry": fallback,
            **more}


def pull_workers(progress: Path) -> list[int]:
    """Pull workers of this test (`pgrep -f` on the worker's argv and its progress file)."""
    proc = subprocess.run(["pgrep", "-f", f"{WORKER} {progress}"], capture_output=True, text=True, timeout=10)
    return [int(pid) for pid in proc.stdout.split()]


def remove_container(name: str) -> None:
    docker("rm", "-f", "-v", name, check=False)


def test_each_password_reaches_only_its_registry_and_rests_in_no_file(registries, tmp_path):
    import waa_runner

    primary, fallback = registries["primary"], registries["fallback"]
    (user_a, marker_a), (user_b, marker_b) = primary.credentials, fallback.credentials
    container = f"waa-cred-{uuid.uuid4().hex[:6]}"
    with StallingProxy(primary.port, stalls=0, record=True) as proxy_a, \
            StallingProxy(fallback.port, stalls=0, record=True) as proxy_b:
        image = f"{proxy_a.address}/{REPOSITORY}:base"
        mirrored = f"{proxy_b.address}/{REPOSITORY}:base"
        docker("rmi", "-f", image, mirrored, check=False)
        pulled = threading.Event()
        phases: list[str] = []

        def on_event(event) -> None:
            # The pull is what this test is about: stop the run once the host moved past it.
            if event.kind == "phase":
                if "winarena_image" in phases and event.phase != "winarena_image":
                    pulled.set()
                phases.append(str(event.phase))

        started = time.time() - 1
        state_dir = tmp_path / "state"
        try:
            with Watcher([marker_a, marker_b]) as watcher:
                result = waa_runner.vm_setup(
                    inventory=inventory(tmp_path, container), image=image, state_dir=state_dir,
                    extra_vars=settings(proxy_b.address, waa_registry_username=user_a,
                                        waa_registry_password=marker_a, waa_image_fallback_registry_username=user_b,
                                        waa_image_fallback_registry_password=marker_b),
                    on_event=on_event, cancel=pulled.is_set, timeout=600)
        finally:
            remove_container(container)
        seen_a, seen_b = proxy_a.credentials_seen(), proxy_b.credentials_seen()

    host = result.hosts["localhost"]
    assert pulled.is_set(), (result.summary, host.exit_code, host.message, phases)
    assert docker("image", "inspect", image, check=False).returncode == 0, \
        ("the fallback's image, tagged as primary", phases, host.exit_code, host.message)
    # each registry's log: its own password, and never the other's
    assert seen_a and {password for _user, password in seen_a} == {marker_a}, seen_a
    assert seen_b and {password for _user, password in seen_b} == {marker_b}, seen_b
    assert watcher.scans > 10 and not watcher.found, f"a module file held a password during the run: {watcher.found}"
    written = files_holding([marker_a, marker_b], [state_dir], None) + files_holding(
        [marker_a, marker_b], [HOME / ".ansible", HOME / ".ansible_async", Path("/tmp"), Path("/dev/shm"),
                               Path("/var/tmp"), Path("/run/lock")], started)
    assert not written, f"a password rests in {written}"
    assert progress_file(image).exists() and marker_a not in progress_file(image).read_text()
    docker("rmi", "-f", image, mirrored, check=False)


def test_a_cancelled_run_leaves_no_pull_process_and_no_password(registries, tmp_path):
    """SIGTERM to waa-run while the pull hangs (the registry stops sending mid-blob and holds the
    connection): waa-run exits promptly, and the pull worker on the host ends within its lease."""
    fallback = registries["fallback"]
    user, marker = fallback.credentials
    lease = 8
    container = f"waa-cred-{uuid.uuid4().hex[:6]}"
    with StallingProxy(fallback.port, stalls=50, after=64 * 1024, hold_s=600) as proxy:
        image = f"{proxy.address}/{REPOSITORY}:base"
        docker("rmi", "-f", image, check=False)
        progress = progress_file(image)
        extra = settings("", waa_image_stall_timeout=300, waa_image_pull_lease=lease)
        argv = [str(Path(sys.executable).parent / "waa-run"), "vm-setup", "-i", str(inventory(tmp_path, container)),
                "--image", image, "--state-dir", str(tmp_path / "state"), "--json",
                "-e", json.dumps(dict(extra, waa_registry_username=user))]
        # The password's way in: a 0600 file on tmpfs (waa-run's own secrets file lives there too),
        # removed as soon as the run is under way. (`-e @/dev/fd/N` is refused by waa-run: not a file.)
        fd, secret_path = tempfile.mkstemp(prefix="waa-cred-", suffix=".json", dir="/dev/shm")
        with os.fdopen(fd, "w") as handle:
            json.dump({"waa_registry_password": marker}, handle)
        argv += ["-e", f"@{secret_path}"]
        started = time.time() - 1
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(tmp_path), text=True)
        try:
            poll_until(lambda: proxy.stalled >= 1 or proc.poll() is not None, deadline_s=180,
                       what="the pull to hang mid-blob")
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"waa-run ended before the pull hung (rc {proc.returncode}): {out[-3000:]} {err[-2000:]}")
            workers = poll_until(lambda: pull_workers(progress), deadline_s=30, what="the pull worker")
            os.unlink(secret_path)
            for pid in workers:  # the worker holds the password in memory only
                for part in ("cmdline", "environ"):
                    assert marker.encode() not in Path(f"/proc/{pid}/{part}").read_bytes()
            cancelled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
            exited_s = time.monotonic() - cancelled
            poll_until(lambda: not pull_workers(progress), deadline_s=lease + 20,
                       what=f"no pull worker left (lease {lease}s)")
            gone_s = time.monotonic() - cancelled
        finally:
            if os.path.exists(secret_path):
                os.unlink(secret_path)
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            for pid in pull_workers(progress):
                os.kill(pid, signal.SIGKILL)
            remove_container(container)
    print(f"\nSIGTERM -> waa-run exited in {exited_s:.1f}s (rc {proc.returncode}); "
          f"no pull worker after {gone_s:.1f}s (lease {lease}s)")
    assert exited_s < 30, (exited_s, err[-2000:])
    assert gone_s < lease + 15
    leftovers = subprocess.run(["pgrep", "-f", "AnsiballZ_waa_image|async_wrapper.py"], capture_output=True,
                               text=True, timeout=10).stdout.split()
    assert not leftovers, f"module processes left behind: {leftovers}"
    snapshot = json.loads(progress.read_text())
    assert snapshot["done"] and "abandoned" in snapshot["failed"], snapshot
    written = files_holding([marker], [tmp_path], None) + files_holding(
        [marker], [HOME / ".ansible", HOME / ".ansible_async", Path("/tmp"), Path("/dev/shm"), Path("/var/tmp"),
                   Path("/run/lock")], started)
    assert not written, f"the password rests in {written}"
    assert marker not in out + err
