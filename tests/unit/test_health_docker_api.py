"""The stdlib Docker Engine API client against a fake engine on a Unix socket: calls, errors,
log demuxing, the archive endpoint, and streamed JSON (chunked, split, idle)."""
from __future__ import annotations

import json
import struct
import time

import pytest

from ansible_collections.openadapt.waa.plugins.module_utils.waa_docker_api import (
    DockerAPIError, DockerClient, DockerUnavailable, StreamIdle, demux, socket_path_of,
)
from tests.unit.fakes import FakeDocker, make_png


@pytest.fixture
def engine(tmp_path):
    fake = FakeDocker(str(tmp_path / "docker.sock"))
    fake.add_container("winarena")
    yield fake
    fake.close()


def test_calls_and_errors(engine, tmp_path):
    client = DockerClient(engine.path)
    assert client.ping() == "OK"
    assert client.version()["ApiVersion"] == "1.41"
    assert client.inspect_container("winarena")["State"]["Running"] is True
    assert client.inspect_container("nope") is None
    status, headers, body = client.request("GET", "/containers/nope/json")
    assert status == 404 and b"No such container" in body and headers["Content-Type"] == "application/json"
    with pytest.raises(DockerAPIError) as err:
        client.get_json("/nothing/here")
    assert err.value.status == 404 and err.value.message == "page not found"
    with pytest.raises(DockerUnavailable, match="nothing.sock"):
        DockerClient(str(tmp_path / "nothing.sock")).ping()
    assert engine.queries[0][0] == "/_ping", "paths are sent under the API version prefix"


def test_a_hung_engine_costs_one_timeout(engine):
    engine.hang_all = True
    started = time.monotonic()
    with pytest.raises(DockerUnavailable):
        DockerClient(engine.path).ping(timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_logs_are_demuxed_and_limited_to_the_current_run(engine):
    engine.logs["winarena"] = "one\ntwo\n"
    client = DockerClient(engine.path)
    assert client.container_logs("winarena", tail=20, since=1795478400.7) == "one\ntwo\n"
    assert engine.queries[-1][1] == {"stdout": "1", "stderr": "1", "tail": "20", "since": "1795478400"}
    frames = struct.pack(">BxxxI", 1, 4) + b"out\n" + struct.pack(">BxxxI", 2, 4) + b"err\n"
    assert demux(frames) == "out\nerr\n"
    assert demux(frames + b"tail without a header") == "out\nerr\ntail without a header"


def test_get_archive_returns_the_file_bytes(engine):
    client = DockerClient(engine.path)
    with pytest.raises(DockerAPIError) as err:
        client.get_archive("winarena", "/tmp/screen.png")
    assert err.value.status == 404
    engine.screen = make_png(black=True)
    assert client.get_archive("winarena", "/tmp/screen.png") == engine.screen
    assert engine.queries[-1][1] == {"path": "/tmp/screen.png"}


def test_socket_paths():
    assert socket_path_of(None) == "/var/run/docker.sock"
    assert socket_path_of("unix:///run/user/docker.sock") == "/run/user/docker.sock"
    assert socket_path_of("/x.sock") == "/x.sock"


DOCS = [{"status": "Pulling from library/x", "id": "latest"},
        {"status": "Downloading", "progressDetail": {"current": 1, "total": 2}, "id": "abc", "text": "né"},
        {"status": "Digest: sha256:00"}]


@pytest.mark.parametrize("pieces,length", [
    ([json.dumps(d).encode() + b"\r\n" for d in DOCS], False),       # one document per chunk
    ([b"".join(json.dumps(d).encode() for d in DOCS)], False),       # concatenated, no newlines
    ([(json.dumps(DOCS[0]) + "\n" + json.dumps(DOCS[1]) + "\n" + json.dumps(DOCS[2])).encode()[i:i + 7]
      for i in range(0, 400, 7)], False),                            # split anywhere, even inside 'é'
    ([json.dumps(d).encode() + b"\n" for d in DOCS], True),           # Content-Length, not chunked
])
def test_stream_json_yields_each_document(engine, pieces, length):
    engine.streams["/images/create"] = [(0, p) for p in pieces if p]
    engine.stream_length = length
    got = list(DockerClient(engine.path).stream_json("POST", "/images/create", query={"fromImage": "x"},
                                                     timeout=2, idle_timeout=2))
    assert got == DOCS
    assert engine.queries[-1] == ("/images/create", {"fromImage": "x"})


def test_stream_json_raises_stream_idle_when_nothing_arrives(engine):
    engine.streams["/images/create"] = [(0, b'{"status": "a"}\n'), (5, b'{"status": "b"}\n')]
    seen = []
    started = time.monotonic()
    with pytest.raises(StreamIdle) as err:
        for document in DockerClient(engine.path).stream_json("POST", "/images/create", idle_timeout=0.3):
            seen.append(document)
    assert seen == [{"status": "a"}] and err.value.documents == 1 and err.value.idle_timeout == 0.3
    assert time.monotonic() - started < 1.5


def test_stream_json_slow_but_never_idle_is_fine(engine):
    engine.streams["/images/create"] = [(0.1, b'{"n": %d}\n' % n) for n in range(5)]
    got = list(DockerClient(engine.path).stream_json("POST", "/images/create", idle_timeout=0.4))
    assert [d["n"] for d in got] == [0, 1, 2, 3, 4]


def test_stream_json_errors(engine):
    engine.streams["/images/create"] = [(0, b'{"message": "pull access denied"}')]
    engine.stream_status = 404
    with pytest.raises(DockerAPIError) as err:
        list(DockerClient(engine.path).stream_json("POST", "/images/create"))
    assert err.value.status == 404 and "pull access denied" in str(err.value)
    engine.stream_status = 200
    engine.streams["/images/create"] = [(0, b'{"status": "a"}\n{"status": "cut of')]
    with pytest.raises(DockerUnavailable, match="ended inside a JSON document"):
        list(DockerClient(engine.path).stream_json("POST", "/images/create"))
