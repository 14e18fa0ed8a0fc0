"""The transport under every probe exchange (plugins/module_utils/_waa_transport.py): a TOTAL
deadline per request however the peer trickles, a byte cap on everything read, the three HTTP body
framings, QMP that greets and stalls; and the engine client on top of it, over a Unix socket."""
from __future__ import annotations

import json
import os
import tempfile
import time

import pytest

from ansible_collections.openadapt.waa.plugins.module_utils import _waa_transport as transport
from ansible_collections.openadapt.waa.plugins.module_utils.waa_docker_api import DockerClient, DockerUnavailable
from tests.support import hostile


@pytest.fixture
def peers():
    started: list[hostile.Peer] = []

    def start(routes=None, unix=False, qmp=None) -> hostile.Peer:
        if qmp:
            peer = hostile.qmp_peer(qmp)
        else:
            path = os.path.join(tempfile.mkdtemp(prefix="waa-t-"), "s.sock") if unix else None
            peer = hostile.http_peer(routes or {}, unix_path=path)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.close()


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except Exception as err:  # noqa: BLE001 - the test inspects it
        return err, time.monotonic() - started


@pytest.mark.parametrize("route", ["slow_headers", "slow_body", "silence"])
def test_a_trickling_or_silent_peer_cannot_stretch_the_request(peers, route):
    peer = peers({"/probe": getattr(hostile, route)()})
    err, took = timed(lambda: transport.http_get("127.0.0.1", peer.port, "/probe", 1.2, 1 << 20))
    assert isinstance(err, transport.Timeout), err
    assert 1.1 <= took < 1.6, f"a 1.2 s request took {took:.2f} s: the deadline is per request, not per read"


def test_every_byte_counts_against_the_cap(peers):
    peer = peers({"/big": hostile.huge_stream(50 << 20, "image/png", chunked=False),
                  "/chunked": hostile.huge_stream(50 << 20, "image/png", chunked=True)})
    for path in ("/big", "/chunked"):
        err, took = timed(lambda: transport.http_get("127.0.0.1", peer.port, path, 5, 1 << 20))
        assert isinstance(err, transport.TooLarge) and "larger than 1 MB (refused)" in str(err), err
        assert took < 2


def test_the_three_body_framings_and_broken_answers(peers):
    body = b'{"status": "Probe successful"}'

    def close_delimited(conn):
        conn.send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)

    def short(conn):
        conn.send(hostile.head(200, length=100) + body)

    peer = peers({"/length": hostile.answer(200, body), "/close": close_delimited, "/short": short,
                  "/chunked": hostile.sized(lambda: iter([body[:5], body[5:]]), len(body), chunked=True),
                  "/garbage": hostile.garbage()})
    get = lambda path: transport.http_get("127.0.0.1", peer.port, path, 2, 1 << 20)  # noqa: E731
    assert get("/length") == get("/close") == get("/chunked") == (200, body)
    with pytest.raises(transport.TransportError, match="closed inside the body"):
        get("/short")
    with pytest.raises(transport.TransportError, match="not an HTTP answer"):
        get("/garbage")
    assert get("/nothing")[0] == 404


def test_refused_is_said_plainly():
    with pytest.raises(transport.TransportError, match="connection refused"):
        transport.http_get("127.0.0.1", _free_port(), "/", 1, 10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("mode,error", [("greet_then_stall", transport.Timeout), ("silent", transport.Timeout),
                                        ("garbage", transport.TransportError)])
def test_qmp_that_stalls_or_babbles_is_bounded(peers, mode, error):
    peer = peers(qmp=mode)
    err, took = timed(lambda: transport.qmp_session("127.0.0.1", peer.port, [{"execute": "query-status"}], 1.0))
    assert isinstance(err, error), err
    assert took < 1.4


def test_qmp_session_answers(peers):
    peer = peers(qmp="ok")
    replies = transport.qmp_session("127.0.0.1", peer.port, [{"execute": "query-status"}], 2)
    assert replies == [{"return": {"status": "running", "running": True}}]


def test_engine_requests_have_a_total_deadline_and_caps(peers):
    peer = peers({"/_ping": hostile.slow_headers(b"OK"), "/containers/w/json": hostile.huge_inspect(),
                  "/version": hostile.answer(200, {"Version": "x"})}, unix=True)
    client = DockerClient("unix://" + peer.path)
    err, took = timed(lambda: client.ping(timeout=1.0))
    assert isinstance(err, DockerUnavailable) and "within the deadline" in str(err) and 0.9 < took < 1.5, (err, took)
    err, took = timed(lambda: client.inspect_container("w", timeout=5))
    assert isinstance(err, DockerUnavailable) and "larger than 4 MB (refused)" in str(err) and took < 2, err
    assert client.version()["Version"] == "x"


def test_a_stream_has_an_idle_timeout_and_an_optional_total_deadline(peers):
    lines = [json.dumps({"n": n}).encode() + b"\n" for n in range(100)]

    def slow_stream(conn):
        conn.send(hostile.head(200, chunked=True))
        for line in lines:
            if not conn.send(b"%x\r\n%s\r\n" % (len(line), line)) or conn.stop.wait(0.2):
                return

    peer = peers({"/images/create": slow_stream}, unix=True)
    client = DockerClient(peer.path)
    seen = []
    err, took = timed(lambda: [seen.append(d) for d in client.stream_json(
        "POST", "/images/create", timeout=2, idle_timeout=1, deadline=1.0)])
    assert isinstance(err, DockerUnavailable) and "deadline" in str(err), err
    assert 0.9 < took < 1.6 and 2 <= len(seen) <= 7
