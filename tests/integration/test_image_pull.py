"""winarena_image (role and waa_image module) through real ansible against the host's real engine,
pulling from a real local registry (Debian's docker-registry in a container, tests/support/registry.py):
pulls with progress, no pull when present, digest pins, a registry that is down at first, a
stalling registry, a fallback registry, and credentials that work and never show."""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support.emulator import docker, poll_until
from tests.support.registry import StallingProxy, free_port, start_registry

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
REPOSITORY = "waa-emu-pull"
PLAY = "- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: openadapt.waa.winarena_image\n"


@pytest.fixture(scope="module")
def registries(docker_engine):
    """Two registries holding the same image as waa-emu-pull:base: an open one, and one that
    requires basic auth (like an Azure Container Registry with a token). The image is the
    emulator plus one layer of random bytes that no local image keeps (the local copy is removed
    after the pushes), so every pull really transfers it and its digest is new on every run."""
    from waa_runner import images

    images.ensure_emulator(lambda m: None)
    source = f"waa-registry-src-{uuid.uuid4().hex[:8]}:latest"
    context = Path(f"/tmp/waa-pull-context-{uuid.uuid4().hex[:6]}")
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM waa-emulator:latest\nRUN head -c 8000000 /dev/urandom > /blob && echo {uuid.uuid4().hex} > /blob.id\n")
    started = []
    try:
        docker("build", "-q", "--no-cache", "-t", source, str(context), timeout=300)
        open_registry = start_registry()
        started.append(open_registry)
        private = start_registry(credentials=("researcher", "pw-" + uuid.uuid4().hex))
        started.append(private)
        open_registry.digest = open_registry.push(source, REPOSITORY, "base")
        private.push(source, REPOSITORY, "base")
        docker("rmi", source)
        yield {"open": open_registry, "private": private}
    finally:
        docker("rmi", "-f", source, check=False)
        forget_pulled()
        (context / "Dockerfile").unlink()
        context.rmdir()
        for reg in started:
            reg.remove()


@pytest.fixture
def registry(registries):
    return registries["open"]


@pytest.fixture
def private_registry(registries):
    return registries["private"]


def forget(*references: str) -> None:
    for reference in references:
        docker("rmi", "-f", reference, check=False)


def forget_pulled() -> None:
    """Every image this module pulled (127.0.0.1:<any port>/waa-emu-pull), also after a failed test."""
    listing = docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    forget(*(ref for ref in listing if re.match(rf"^127\.0\.0\.1:\d+/{REPOSITORY}:", ref)))


def progress_file(image: str, digest: str = "") -> Path:
    """Where the role writes pull progress (roles/winarena_image/vars/main.yml)."""
    return Path(f"/tmp/waa-pull-{hashlib.sha1((image + digest).encode()).hexdigest()[:12]}.json")


class Run:
    def __init__(self, rc: int, stdout: str, events: list[dict], private: Path) -> None:
        self.rc, self.stdout, self.events, self.private = rc, stdout, events, private

    def results(self, task_fragment: str) -> list[dict]:
        return [e["event_data"]["res"] for e in self.events
                if e.get("event") in ("runner_on_ok", "runner_on_failed", "runner_retry")
                and task_fragment in e["event_data"].get("task", "")]

    def final(self) -> dict:
        """The pull's result: the last report of the progress task (the detached worker's result)."""
        return [r for r in self.results("Pull progress") if r.get("done")][-1]

    def changed(self) -> int:
        return sum(1 for e in self.events if e.get("event") == "runner_on_ok" and e["event_data"]["res"].get("changed"))

    def artifact_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in (self.private / "artifacts").rglob("*") if p.is_file())


def run_role(tmp_path: Path, secrets: dict | None = None, verbosity: int = 0, **variables) -> Run:
    """The role through ansible-runner, as waa_runner runs playbooks: secrets only through a 0600
    `-e @file` outside the private data dir (runner copies extravars into its artifacts)."""
    import ansible_runner

    playbook = tmp_path / "pull.yml"
    playbook.write_text(PLAY)
    events: list[dict] = []
    private = tmp_path / f"run-{uuid.uuid4().hex[:6]}"
    private.mkdir()
    cmdline = None
    secret_file = tmp_path / f"secrets-{uuid.uuid4().hex[:6]}.json"
    if secrets:
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as handle:
            json.dump(secrets, handle)
        cmdline = f"-e @{secret_file}"
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private), playbook=str(playbook),
            inventory=f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}",
            extravars={"waa_image_progress_interval": 1, "waa_image_pull_backoff": 1, **variables},
            envvars={"ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"), "ANSIBLE_NOCOLOR": "1",
                     "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
            cmdline=cmdline, verbosity=verbosity or None, quiet=True, suppress_env_files=True,
            event_handler=lambda e: (events.append(e), True)[1], cancel_callback=lambda: False)
    finally:
        secret_file.unlink(missing_ok=True)
    return Run(runner.rc, runner.stdout.read(), events, private)


def test_pulls_when_missing_with_progress_and_not_again(registry, tmp_path):
    # through a proxy that answers nothing for its first 4 s: a registry slow to respond
    with StallingProxy(registry.port, stalls=0, slow_start_s=4) as proxy:
        image = f"{proxy.address}/{REPOSITORY}:base"
        forget(image)
        # A finished pull of an earlier run left its progress file behind: it must not end the wait early.
        progress_file(image).write_text(json.dumps({"image": image, "source": "stale-run", "done": True,
                                                    "failed": None, "status": "present", "attempt": 9}))
        run = run_role(tmp_path, waa_image=image)
    assert run.rc == 0, run.stdout[-3000:]
    assert docker("image", "inspect", image, check=False).returncode == 0
    progress = [r["pull_progress"] for r in run.results("Pull progress") if r.get("pull_progress")]
    assert progress, "no progress was reported"
    assert len(run.results("Pull progress")) >= 3, "one report a second while the registry was slow"
    assert all(p.get("source") != "stale-run" for p in progress), "the progress of an earlier pull was reported"
    last = progress[-1]
    assert last["done"] and last["failed"] is None and last["source"] == image
    assert last["layers_total"] >= 1 and last["bytes_total"] > 8_000_000 and last["bytes_done"] == last["bytes_total"]
    assert run.final()["changed"] and run.final()["pull_attempts"] == 1 and run.final()["present"]

    again = run_role(tmp_path, waa_image=image)
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
    assert not again.results("Start the pull"), "a present image is pulled again"
    forget(image)


def test_two_runs_pulling_one_image_share_one_pull(registry, tmp_path):
    """Two runs (e.g. for two containers of one host) need the same missing image at once: the
    second joins the first one's pull worker instead of pulling it twice; both succeed."""
    # the registry answers nothing for 20 s: the second run starts while the first one's pull waits
    with StallingProxy(registry.port, stalls=0, slow_start_s=20) as proxy:
        image = f"{proxy.address}/{REPOSITORY}:base"
        forget(image)
        runs: dict = {}
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = threading.Thread(target=lambda: runs.update(first=run_role(tmp_path / "a", waa_image=image)))
        first.start()
        try:
            poll_until(lambda: progress_file(image).exists() and not json.loads(progress_file(image).read_text())
                       .get("done"), deadline_s=60, what="the first pull to start")
            runs["second"] = run_role(tmp_path / "b", waa_image=image)
        finally:
            first.join(timeout=300)
            forget(image)
    one, two = runs["first"], runs["second"]
    assert one.rc == 0 and two.rc == 0, (one.stdout[-2000:], two.stdout[-2000:])
    started = [r for run in (one, two) for r in run.results("Start the pull")]
    assert [r.get("joined") for r in started] == [False, True], started
    assert started[0]["worker_pid"] == started[1]["worker_pid"]
    assert one.final()["present"] and two.final()["present"] and one.final()["image_id"] == two.final()["image_id"]


def test_digest_pin(registry, tmp_path):
    name = f"{registry.address}/{REPOSITORY}"
    forget(f"{name}:base", f"{name}@{registry.digest}")
    run = run_role(tmp_path, waa_image=f"{name}:base", waa_image_digest=registry.digest)
    assert run.rc == 0, run.stdout[-3000:]
    info = json.loads(docker("image", "inspect", f"{name}@{registry.digest}").stdout)[0]
    assert f"{name}@{registry.digest}" in info["RepoDigests"]
    # pinned to a digest the registry does not have: refused, nothing pulled
    wrong = "sha256:" + "0" * 64
    run = run_role(tmp_path, waa_image=f"{name}:base", waa_image_digest=wrong, waa_image_pull_retries=1)
    assert run.rc != 0 and wrong in run.stdout
    forget(f"{name}@{registry.digest}")


def test_registry_down_at_first_then_back(registry, tmp_path):
    image = registry.reference(REPOSITORY, "base")
    forget(image)
    registry.stop()
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(run=run_role(
        tmp_path, waa_image=image, waa_image_pull_retries=4, waa_image_pull_backoff=3)))
    progress = progress_file(image)
    progress.unlink(missing_ok=True)
    try:
        worker.start()
        # the registry comes back while the module backs off after its first failed attempt
        poll_until(lambda: progress.exists() and '"failed": "' in progress.read_text(), deadline_s=60,
                   what="a failed first attempt")
    finally:
        registry.start()
    worker.join(timeout=300)
    run = result["run"]
    assert run.rc == 0, run.stdout[-3000:]
    assert run.final()["pull_attempts"] == 2, "attempt 2 (after the registry came back) should succeed"
    registry.wait_ready()
    forget(image)


def test_a_stalled_pull_is_noticed_within_the_stall_timeout_and_retried(registry, tmp_path):
    stall_timeout = 5
    with StallingProxy(registry.port, stalls=1) as proxy:
        image = f"{proxy.address}/{REPOSITORY}:base"
        forget(image)
        started = time.monotonic()
        run = run_role(tmp_path, waa_image=image, waa_image_stall_timeout=stall_timeout, waa_image_pull_retries=3)
        elapsed = time.monotonic() - started
    assert run.rc == 0, run.stdout[-3000:]
    assert proxy.stalled == 1
    final = run.final()
    assert final["pull_attempts"] == 2 and final["pull_progress"]["done"]
    # the blob was asked for again soon after the stall began: stall_timeout + backoff (<= 1 s) + slack
    retried = [t for t in proxy.blob_requests if t > proxy.stall_started[0]]
    assert retried, "the stalled blob was never requested again"
    assert retried[0] - proxy.stall_started[0] < stall_timeout + 1 + 10, retried[0] - proxy.stall_started[0]
    assert elapsed < 90, f"the stall was not noticed in time ({elapsed:.0f}s)"
    forget(image)


def test_fallback_registry_is_used_and_tagged_with_the_primary_name(registry, tmp_path):
    primary = f"127.0.0.1:{free_port()}/{REPOSITORY}:base"  # nothing listens there
    fallback = registry.reference(REPOSITORY, "base")
    forget(primary, fallback)
    run = run_role(tmp_path, waa_image=primary, waa_image_fallback_registry=registry.address,
                   waa_image_pull_retries=1)
    assert run.rc == 0, run.stdout[-3000:]
    final = run.final()
    assert final["source"] == fallback and final["pull_attempts"] == 2
    primary_id = json.loads(docker("image", "inspect", primary).stdout)[0]["Id"]
    assert primary_id == json.loads(docker("image", "inspect", fallback).stdout)[0]["Id"]
    # and a second run finds it under the primary name: no pull
    again = run_role(tmp_path, waa_image=primary, waa_image_fallback_registry=registry.address)
    assert again.rc == 0 and again.changed() == 0
    forget(primary, fallback)


def test_registry_credentials_work_and_never_show(private_registry, tmp_path):
    """Plain ansible (no ANSIBLE_PIPELINING in the environment): the role itself pipes the start
    task, so no module file holding the password is written under ~/.ansible/tmp, not even briefly."""
    from tests.integration.test_credentials import Watcher

    user, secret = private_registry.credentials
    image = private_registry.reference(REPOSITORY, "base")
    forget(image)
    with Watcher([secret]) as watcher:
        run = run_role(tmp_path, secrets={"waa_registry_password": secret}, verbosity=3,
                       waa_image=image, waa_registry_username=user)
    assert run.rc == 0, run.stdout[-3000:]  # the registry refuses pulls without the credentials
    assert docker("image", "inspect", image, check=False).returncode == 0
    assert secret not in run.stdout
    assert secret not in json.dumps(run.events)
    assert secret not in run.artifact_text()
    assert secret not in progress_file(image).read_text()
    assert watcher.scans > 5 and not watcher.found, watcher.found
    forget(image)


def test_a_wrong_password_fails_without_showing_it(private_registry, tmp_path):
    user, _secret = private_registry.credentials
    wrong = "wrong-" + uuid.uuid4().hex
    image = private_registry.reference(REPOSITORY, "base")
    forget(image)
    vars_file = tmp_path / "secret.json"
    vars_file.write_text(json.dumps({"waa_image": image, "waa_registry_username": user,
                                     "waa_registry_password": wrong, "waa_image_pull_retries": 1}))
    playbook = tmp_path / "pull.yml"
    playbook.write_text(PLAY)
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{vars_file}", "-vvv",
                           str(playbook)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, "a pull with a wrong password must fail"
    assert wrong not in output
    assert "pull failed after 1 attempts" in output and "unauthorized" in output.lower(), output[-3000:]
    assert docker("image", "inspect", image, check=False).returncode != 0
