"""Pull bookkeeping: progress folding, stall detection, registry rewriting, atomic progress files;
credentials per registry; the detached pull worker (handshake, lease, hard cap, stop)."""
from __future__ import annotations

import base64
import json
import os

import pytest

from ansible_collections.openadapt.waa.plugins.module_utils import waa_image_pull as pull


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_split_and_rewrite_references():
    assert pull.split_reference("windowsarena/winarena:latest") == ("windowsarena/winarena", "latest", None)
    assert pull.split_reference("reg:5000/a/b@sha256:ab") == ("reg:5000/a/b", None, "sha256:ab")
    assert pull.with_registry("windowsarena/winarena:latest", "myacr.azurecr.io") == "myacr.azurecr.io/windowsarena/winarena:latest"
    assert pull.with_registry("docker.io/windowsarena/winarena:latest", "127.0.0.1:5001") == "127.0.0.1:5001/windowsarena/winarena:latest"
    assert pull.registry_of("localhost:5000/x") == "localhost:5000" and pull.registry_of("windowsarena/winarena") is None


def test_auth_header_carries_credentials_only_when_a_user_is_set():
    assert pull.registry_auth_header("", "secret", None) is None
    decoded = json.loads(base64.urlsafe_b64decode(pull.registry_auth_header("u", "p", "r:1")))
    assert decoded == {"username": "u", "password": "p", "serveraddress": "r:1"}


def messages_for_two_layers():
    return [
        {"status": "Pulling from windowsarena/winarena", "id": "latest"},
        {"status": "Pulling fs layer", "id": "a"},
        {"status": "Pulling fs layer", "id": "b"},
        {"status": "Downloading", "id": "a", "progressDetail": {"current": 50, "total": 100}},
        {"status": "Downloading", "id": "b", "progressDetail": {"current": 10, "total": 300}},
        {"status": "Download complete", "id": "a"},
        {"status": "Pull complete", "id": "a"},
        {"status": "Already exists", "id": "b"},
        {"status": "Digest: sha256:xyz"},
    ]


def test_progress_folds_bytes_and_layers():
    clock = FakeClock()
    progress = pull.PullProgress("img", "img", 1, clock=clock)
    seen = []
    pull.pull_once(iter(messages_for_two_layers()), progress, stall_timeout=10, on_progress=seen.append, report_every=0)
    final = seen[-1]
    assert final["layers_total"] == 2 and final["layers_done"] == 2
    assert final["bytes_total"] == 400 and final["bytes_done"] == 400
    midway = seen[4]
    assert midway["bytes_done"] == 60 and midway["layers_done"] == 0


def test_stall_is_noticed_when_bytes_stop_growing():
    clock = FakeClock()
    progress = pull.PullProgress("img", "img", 1, clock=clock)

    def stuck():
        yield {"status": "Downloading", "id": "a", "progressDetail": {"current": 5, "total": 100}}
        for _ in range(20):
            clock.now += 1
            yield {"status": "Downloading", "id": "a", "progressDetail": {"current": 5, "total": 100}}

    with pytest.raises(pull.PullError) as err:
        pull.pull_once(stuck(), progress, stall_timeout=10, on_progress=lambda s: None)
    assert err.value.stalled and "no progress for 10s" in str(err.value)


def test_engine_error_message_fails_the_attempt_without_calling_it_a_stall():
    progress = pull.PullProgress("img", "img", 1, clock=FakeClock())
    with pytest.raises(pull.PullError) as err:
        pull.pull_once(iter([{"error": "manifest unknown"}]), progress, 10, lambda s: None)
    assert not err.value.stalled and "manifest unknown" in str(err.value)


def test_progress_file_is_replaced_atomically(tmp_path):
    target = tmp_path / "p.json"
    pull.write_progress(str(target), {"done": False, "bytes_done": 1})
    pull.write_progress(str(target), {"done": True, "bytes_done": 2})
    assert pull.read_progress(str(target)) == {"done": True, "bytes_done": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]
    assert pull.read_progress(str(tmp_path / "missing.json")) is None


def test_backoff_grows_and_is_capped():
    delays = pull.backoff_delays(1, 2, 5, rng=lambda: 1.0)
    assert [next(delays) for _ in range(5)] == [1, 2, 4, 5, 5]


# ------------------------------------------------------------------ credentials per registry
def test_each_registry_gets_only_its_own_credentials():
    sources = pull.pull_sources("windowsarena/winarena:latest", "hub-user", "hub-pw", "myacr.azurecr.io",
                                "acr-user", "acr-pw")
    assert [(s["reference"], s["username"], s["password"]) for s in sources] == [
        ("windowsarena/winarena:latest", "hub-user", "hub-pw"),
        ("myacr.azurecr.io/windowsarena/winarena:latest", "acr-user", "acr-pw")]
    # one set only: it belongs to the registry the image names; the fallback is tried anonymously
    only_primary = pull.pull_sources("127.0.0.1:5000/a/b:t", "u", "p", "127.0.0.1:6000")
    assert only_primary[1]["username"] == "" and only_primary[1]["password"] == ""
    assert only_primary[0]["registry"] == "127.0.0.1:5000"
    assert pull.pull_sources("a/b:t")[0]["registry"] == "docker.io"


# ------------------------------------------------------------------ the detached worker
class SilentEngine:
    """A Unix socket that accepts and never answers: an engine whose pull hangs."""

    def __init__(self, path):
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.path = str(path)

    def close(self):
        self.sock.close()


def job_for(tmp_path, docker_host, **more):
    progress = str(tmp_path / "progress.json")
    job = {"image": "127.0.0.1:1/x:y", "name": "127.0.0.1:1/x:y", "stall_timeout": 300, "retries": 1,
           "backoff_initial": 0.1, "docker_host": docker_host, "timeout": 120, "progress_file": progress,
           "lease_file": pull.lease_path(progress),
           "sources": pull.pull_sources("127.0.0.1:1/x:y", "user", "MARKER-" + "q" * 20)}
    job.update(more)
    return job


def worker_gone(snapshot, deadline_s):
    import time

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not pull.worker_alive(snapshot):
            return True
        time.sleep(0.05)
    return False


def test_the_worker_starts_detached_with_the_credentials_only_in_memory(tmp_path):
    job = job_for(tmp_path, str(tmp_path / "no-engine.sock"))
    pull.write_lease(job["lease_file"], 60)
    first = pull.spawn_worker(dict(job))
    pid = first["worker_pid"]
    assert pid != os.getpid() and first["lease_file"] == job["lease_file"]
    cmdline = open("/proc/%d/cmdline" % pid, "rb").read() if pull.worker_alive(first) else b""
    assert b"MARKER" not in cmdline
    assert worker_gone(first, 20), "a worker whose engine is missing ends by itself"
    final = pull.read_progress(job["progress_file"])
    assert final["done"] and not final["present"] and "pull failed after 1 attempts" in final["failed"]
    assert "MARKER" not in json.dumps(final)
    assert not os.path.exists(job["lease_file"]), "the worker removes its lease when it ends"


def test_a_worker_nobody_polls_stops_the_hung_pull_and_exits(tmp_path):
    import time

    engine = SilentEngine(tmp_path / "engine.sock")
    try:
        job = job_for(tmp_path, engine.path)
        pull.write_lease(job["lease_file"], 2)
        first = pull.spawn_worker(dict(job))
        # the worker runs, the pull hangs; renewing the lease keeps it going
        started = time.monotonic()
        while time.monotonic() - started < 3:
            pull.write_lease(job["lease_file"], 2)
            time.sleep(0.5)
        assert pull.worker_alive(first)
        assert worker_gone(first, 5), "no renewal for the lease's 2 s: the worker must end"
        final = pull.read_progress(job["progress_file"])
        assert final["done"] and "abandoned" in final["failed"] and final["status"] == "aborted"
    finally:
        engine.close()


def test_the_hard_cap_ends_a_worker_even_while_its_lease_is_renewed(tmp_path):
    engine = SilentEngine(tmp_path / "engine.sock")
    try:
        job = job_for(tmp_path, engine.path, timeout=2)
        pull.write_lease(job["lease_file"], 600)
        first = pull.spawn_worker(dict(job))
        assert worker_gone(first, 10)
        assert "hard cap" in pull.read_progress(job["progress_file"])["failed"]
    finally:
        engine.close()


def test_stop_worker_ends_a_worker_of_an_abandoned_run(tmp_path):
    engine = SilentEngine(tmp_path / "engine.sock")
    try:
        job = job_for(tmp_path, engine.path)
        pull.write_lease(job["lease_file"], 600)
        first = pull.spawn_worker(dict(job))
        assert pull.worker_alive(first)
        assert pull.stop_worker(first, wait_s=5) and not pull.worker_alive(first)
    finally:
        engine.close()


def test_leases_expire_and_unreadable_ones_count_as_expired(tmp_path):
    lease = str(tmp_path / "l.lease")
    assert pull.lease_left(lease) < 0
    pull.write_lease(lease, 10, now=1000.0)
    assert pull.lease_left(lease, now=1005.0) == 5.0 and pull.lease_left(lease, now=1011.0) < 0
    (tmp_path / "l.lease").write_text("{not json")
    assert pull.lease_left(lease) < 0
