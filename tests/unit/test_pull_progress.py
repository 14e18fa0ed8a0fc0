"""Pull bookkeeping: progress folding, stall detection, registry rewriting, atomic progress files."""
from __future__ import annotations

import base64
import json

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
