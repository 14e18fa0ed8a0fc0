"""winarena_image against a real local registry (Debian's docker-registry in a container) and the
host's real engine: pulls with progress, no pull when present, digest pins, a registry that is
down at first, a stalling registry, a fallback registry, and credentials that never show."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import docker, poll_until

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
REPOSITORY = "waa-emu-pull"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def registry_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.0 200") or b"200" in sock.recv(64)
    except OSError:
        return False


@pytest.fixture(scope="module")
def registry(docker_engine):
    """A registry on 127.0.0.1:<port> holding the emulator image as waa-emu-pull:<tag>."""
    from waa_runner import images

    images.ensure_emulator(lambda m: None)
    images.ensure_registry(lambda m: None)
    port = free_port()
    name = f"waa-test-registry-{uuid.uuid4().hex[:6]}"
    docker("run", "-d", "--name", name, "--label", "io.openadapt.waa.test=registry", "-p", f"127.0.0.1:{port}:5000",
           "waa-registry:latest")
    poll_until(lambda: registry_answers(port), deadline_s=30, what="registry up")
    source = f"127.0.0.1:{port}/{REPOSITORY}:base"
    # One layer of random bytes that no local image shares, so every pull really transfers it.
    context = Path(f"/tmp/waa-pull-context-{uuid.uuid4().hex[:6]}")
    context.mkdir()
    (context / "Dockerfile").write_text("FROM waa-emulator:latest\nRUN head -c 8000000 /dev/urandom > /blob\n")
    docker("build", "-q", "-t", source, str(context), timeout=300)
    docker("push", source, timeout=300)
    digest = json.loads(docker("image", "inspect", source).stdout)[0]["RepoDigests"][0].split("@", 1)[1]
    docker("rmi", source)
    yield {"port": port, "name": name, "digest": digest}
    docker("rm", "-f", "-v", name, check=False)


def forget(*references: str) -> None:
    for reference in references:
        docker("rmi", "-f", reference, check=False)


def run_role(tmp_path: Path, **variables) -> tuple[int, str, list[dict]]:
    """The role through ansible-runner; returns rc, stdout and the events."""
    import ansible_runner

    playbook = tmp_path / "pull.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: openadapt.waa.winarena_image\n")
    events: list[dict] = []
    private = tmp_path / f"run-{uuid.uuid4().hex[:6]}"
    private.mkdir()
    runner = ansible_runner.run(
        private_data_dir=str(private), playbook=str(playbook),
        inventory=f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}",
        extravars={"waa_image_progress_interval": 1, "waa_image_pull_backoff": 1, **variables},
        envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"), "ANSIBLE_NOCOLOR": "1",
                 "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
        quiet=True, event_handler=lambda e: (events.append(e), True)[1], cancel_callback=lambda: False)
    return runner.rc, runner.stdout.read(), events


def task_results(events: list[dict], task_fragment: str) -> list[dict]:
    return [e["event_data"]["res"] for e in events
            if e.get("event") in ("runner_on_ok", "runner_on_failed", "runner_retry")
            and task_fragment in e["event_data"].get("task", "")]


def changed_count(events: list[dict]) -> int:
    return sum(1 for e in events if e.get("event") == "runner_on_ok" and e["event_data"]["res"].get("changed"))


def test_pulls_when_missing_with_progress_and_not_again(registry, tmp_path):
    image = f"127.0.0.1:{registry['port']}/{REPOSITORY}:base"
    forget(image)
    rc, out, events = run_role(tmp_path, waa_image=image)
    assert rc == 0, out[-3000:]
    assert docker("image", "inspect", image, check=False).returncode == 0
    progress = [r["pull_progress"] for r in task_results(events, "Pull progress") if r.get("pull_progress")]
    assert progress and progress[-1]["done"] and progress[-1]["layers_total"] >= 1
    assert progress[-1]["bytes_total"] > 0 and progress[-1]["bytes_done"] == progress[-1]["bytes_total"]
    rc, out, events = run_role(tmp_path, waa_image=image)
    assert rc == 0 and changed_count(events) == 0
    assert not task_results(events, "Start the pull"), "a present image is not pulled again"
    forget(image)


def test_digest_pin(registry, tmp_path):
    name = f"127.0.0.1:{registry['port']}/{REPOSITORY}"
    forget(f"{name}:base", f"{name}@{registry['digest']}")
    rc, out, _events = run_role(tmp_path, waa_image=f"{name}:base", waa_image_digest=registry["digest"])
    assert rc == 0, out[-3000:]
    assert docker("image", "inspect", f"{name}@{registry['digest']}", check=False).returncode == 0
    forget(f"{name}@{registry['digest']}")


def test_registry_down_at_first_then_back(registry, tmp_path):
    image = f"127.0.0.1:{registry['port']}/{REPOSITORY}:base"
    forget(image)
    docker("stop", registry["name"])
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(zip(
        ("rc", "out", "events"), run_role(tmp_path, waa_image=image, waa_image_pull_retries=4,
                                          waa_image_pull_backoff=3))))
    progress = Path(f"/tmp/waa-pull-{hashlib.sha1(image.encode()).hexdigest()[:12]}.json")  # the role's name
    progress.unlink(missing_ok=True)
    worker.start()
    # the registry comes back while the module backs off after its first failed attempt
    poll_until(lambda: progress.exists() and '"failed": "' in progress.read_text(), deadline_s=60,
               what="a failed first attempt")
    docker("start", registry["name"])
    worker.join(timeout=300)
    assert result["rc"] == 0, result["out"][-3000:]
    final = [r for r in task_results(result["events"], "Collect the pull result") if r.get("finished")]
    assert final and final[-1]["pull_attempts"] >= 2
    poll_until(lambda: registry_answers(registry["port"]), deadline_s=30, what="registry up again")
    forget(image)


class StallingProxy:
    """Forwards to the registry, but the first blob download stops after `after` bytes."""

    def __init__(self, upstream_port: int, stalls: int = 1, after: int = 256 * 1024) -> None:
        self.upstream_port = upstream_port
        self.stalls = stalls
        self.after = after
        self.stalled = 0
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        first = client.recv(65536)
        candidate = b"/blobs/sha256:" in first and b"GET " in first
        upstream.sendall(first)
        threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
        self._pipe(upstream, client, self.after if candidate else None)

    def _take_stall(self) -> bool:
        with self.lock:
            if self.stalled < self.stalls:
                self.stalled += 1
                return True
            return False

    def _pipe(self, source: socket.socket, target: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) > limit and self._take_stall():
                    target.sendall(data[: max(0, limit - sent)])
                    deadline = time.monotonic() + 120
                    while self.open and time.monotonic() < deadline:  # hold the connection, send nothing
                        time.sleep(0.2)
                    break
                target.sendall(data)
                sent += len(data)
                if limit is not None and sent > limit:
                    limit = None  # this connection was not the one to stall
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.open = False
        self.listener.close()


def test_a_stalled_pull_is_noticed_and_retried(registry, tmp_path):
    proxy = StallingProxy(registry["port"])
    image = f"127.0.0.1:{proxy.port}/{REPOSITORY}:base"
    forget(image)
    try:
        started = time.monotonic()
        rc, out, events = run_role(tmp_path, waa_image=image, waa_image_stall_timeout=5, waa_image_pull_retries=3)
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert rc == 0, out[-3000:]
    assert proxy.stalled == 1
    final = [r for r in task_results(events, "Collect the pull result") if r.get("finished")][-1]
    assert final["pull_attempts"] >= 2
    assert elapsed < 120, f"the stall was not noticed in time ({elapsed:.0f}s)"
    forget(image)


def test_fallback_registry_is_used_and_tagged_with_the_primary_name(registry, tmp_path):
    dead = free_port()
    primary = f"127.0.0.1:{dead}/{REPOSITORY}:base"
    fallback = f"127.0.0.1:{registry['port']}/{REPOSITORY}:base"
    forget(primary, fallback)
    rc, out, events = run_role(tmp_path, waa_image=primary, waa_image_fallback_registry=f"127.0.0.1:{registry['port']}",
                               waa_image_pull_retries=1)
    assert rc == 0, out[-3000:]
    final = [r for r in task_results(events, "Collect the pull result") if r.get("finished")][-1]
    assert final["source"] == fallback
    assert docker("image", "inspect", primary, check=False).returncode == 0
    forget(primary, fallback)


def test_registry_credentials_never_show(registry, tmp_path):
    secret = "pw-" + uuid.uuid4().hex
    image = f"127.0.0.1:{free_port()}/{REPOSITORY}:missing"
    vars_file = tmp_path / "secret.json"
    vars_file.write_text(json.dumps({"waa_image": image, "waa_registry_username": "researcher",
                                     "waa_registry_password": secret, "waa_image_pull_retries": 1}))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{vars_file}", "-vvv",
                           str(_write_play(tmp_path))],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, "the pull of a missing image must fail"
    output = proc.stdout + proc.stderr
    assert secret not in output
    assert "image_pull" in output or "pull failed" in output or "failed" in output


def _write_play(tmp_path: Path) -> Path:
    playbook = tmp_path / "pull.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: openadapt.waa.winarena_image\n")
    return playbook
