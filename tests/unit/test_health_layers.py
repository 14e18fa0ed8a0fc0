"""Each health layer against local fake servers: healthy, refused, 500, wrong JSON, hang,
slow-then-ok, black screen, empty tree, fatal log lines; and the report's exit codes and hints."""
from __future__ import annotations

import json
import time

import pytest

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import (
    LAYERS, Deadline, Prober, png_is_black, summarize,
)
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_wait import Backoff, probe
from tests.unit.fakes import FakeDocker, FakeHTTP, FakeQMP, free_port, make_png

TREE = '<desktop><shell_traywnd name="Taskbar"/></desktop>'


@pytest.fixture
def host(tmp_path):
    """A healthy fake WAA host: engine, container, noVNC, QMP, server."""
    docker = FakeDocker(str(tmp_path / "docker.sock"))
    docker.add_container("winarena")
    docker.screen = make_png(black=False)
    web, server, qmp = FakeHTTP(), FakeHTTP(), FakeQMP()
    web.answer("/msg.html", 404, "not found")
    web.answer("/", 200, "<html><title>noVNC</title></html>")
    server.answer("/probe", 200, {"status": "Probe successful", "message": "Service is operational"})
    server.answer("/accessibility", 200, {"AT": TREE})
    server.answer("/screenshot", 200, make_png(black=False), "image/png")

    class Host:
        pass

    h = Host()
    h.docker, h.web, h.server, h.qmp = docker, web, server, qmp
    h.prober = lambda **kw: Prober(
        host="127.0.0.1", ports={"novnc": web.port, "server": server.port, "qmp": qmp.port},
        docker_host=docker.path, request_timeout=kw.pop("request_timeout", 1.0), **kw)
    yield h
    for fake in (docker, web, server, qmp):
        fake.close()


def run(prober, layers=LAYERS, seconds=5.0):
    started = time.monotonic()
    results = prober.evaluate(list(layers), Deadline(seconds))
    return summarize(results, list(layers), started)


def test_healthy_host_passes_all_five_layers(host):
    report = run(host.prober())
    assert report["ready"] and report["exit_code"] == 0
    assert [r["layer"] for r in report["layers"]] == list(LAYERS)
    assert all(r["healthy"] and r["failure_class"] is None and r["hint"] == "" for r in report["layers"])
    assert set(report["layers"][0]) == {"layer", "healthy", "message", "duration_s", "attempts", "failure_class",
                                        "hint", "details"}
    assert host.qmp.commands[:3] == ["qmp_capabilities", "query-status", "screendump"]


def test_engine_missing_is_permanent_exit_2(host, tmp_path):
    prober = Prober(docker_host=str(tmp_path / "nothing.sock"))
    report = run(prober)
    assert report["failed_layer"] == "docker_daemon" and report["exit_code"] == codes.DOCKER_DAEMON
    assert report["failure_class"] == codes.PERMANENT and "docker_daemon" in report["hint"]
    assert len(report["layers"]) == 1, "layers stop at the first unhealthy one"


def test_missing_container_is_permanent_and_stopped_one_recoverable_with_logs(host):
    report = run(host.prober(container_name="nope"))
    assert (report["failed_layer"], report["exit_code"], report["failure_class"]) == ("container", 4, "permanent")
    assert "vm_setup" in report["hint"]
    host.docker.add_container("winarena", running=False, exit_code=137)
    host.docker.logs["winarena"] = "line one\nline two\n"
    report = run(host.prober())
    assert report["failure_class"] == codes.RECOVERABLE and "exit code 137" in report["message"]
    assert report["layers"][-1]["details"]["last_logs"] == ["line one", "line two"]
    host.docker.add_container("winarena", running=False, oom=True)
    assert "OOM" in run(host.prober())["message"]


def test_boot_status_page_means_still_booting(host):
    host.web.answer("/msg.html", 200, "<p>Installing Windows...</p>")
    report = run(host.prober())
    assert report["failed_layer"] == "vm_boot" and report["exit_code"] == codes.VM_BOOT
    assert "Installing Windows" in report["message"] and report["failure_class"] == codes.RECOVERABLE


def test_refused_novnc_and_qmp(host):
    prober = host.prober()
    prober.ports["novnc"] = free_port()
    assert "connection refused" in run(prober)["message"]
    prober = host.prober()
    prober.ports["qmp"] = free_port()
    report = run(prober)
    assert report["failed_layer"] == "vm_boot" and "QMP" in report["message"]


def test_black_screen_read_back_through_the_engine(host):
    host.docker.screen = make_png(black=True)
    report = run(host.prober())
    assert report["failed_layer"] == "vm_boot" and "black" in report["message"]
    report = run(host.prober(check_screen=False))
    assert report["ready"]


def test_black_screen_falls_back_to_the_screenshot_endpoint(host):
    host.docker.screen = None  # the archive endpoint cannot give the screendump
    host.server.answer("/screenshot", 200, make_png(black=True), "image/png")
    report = run(host.prober())
    assert "GET /screenshot" in report["message"]


@pytest.mark.parametrize("status,body,expected", [
    (500, {"status": "error", "message": "boom"}, "answered 500"),
    (200, {"status": "something else"}, "answered 200"),
    (200, "not json", "answered 200"),
])
def test_waa_server_wrong_answers(host, status, body, expected):
    host.server.answer("/probe", status, body)
    report = run(host.prober())
    assert report["failed_layer"] == "waa_server" and report["exit_code"] == codes.WAA_SERVER
    assert expected in report["message"]


def test_a_hung_server_costs_one_request_timeout(host):
    host.server.hang("/probe")
    started = time.monotonic()
    report = run(host.prober(request_timeout=0.5))
    assert time.monotonic() - started < 2.0
    assert report["failed_layer"] == "waa_server" and "within 0.5s" in report["message"]


def test_a_hung_server_never_outlives_the_deadline(host):
    host.server.hang("/probe")
    started = time.monotonic()
    report = run(host.prober(request_timeout=30), seconds=0.8)
    assert time.monotonic() - started < 2.0 and not report["ready"]


@pytest.mark.parametrize("tree,expected", [("", "empty tree"), ("<desktop/>", "no windows"), ("<desk", "not XML")])
def test_empty_or_broken_accessibility_tree(host, tree, expected):
    host.server.answer("/accessibility", 200, {"AT": tree})
    report = run(host.prober())
    assert report["failed_layer"] == "accessibility" and report["exit_code"] == codes.ACCESSIBILITY
    assert report["failure_class"] == codes.TRANSIENT and expected in report["message"]


def test_accessibility_backend_is_passed(host):
    run(host.prober(a11y_backend="uia"))
    assert "/accessibility?backend=uia" in host.server.hits


@pytest.mark.parametrize("line,layer,code", [
    ("ERROR: KVM acceleration not available (device file missing), this will ...", "vm_boot", codes.PREFLIGHT),
    ("ERROR: Your configured RAM_SIZE of 64 GB is too high for the 31 GB of memory", "vm_boot", codes.PREFLIGHT),
])
def test_fatal_log_lines_fail_at_once_with_their_code(host, line, layer, code):
    host.web.answer("/msg.html", 200, "booting")
    host.docker.logs["winarena"] = "Starting VM...\n" + line + "\n"
    report = run(host.prober())
    assert (report["failed_layer"], report["exit_code"], report["failure_class"]) == (layer, code, codes.PERMANENT)
    assert line.split(",")[0].replace("ERROR: ", "") in report["message"]


def test_usermode_networking_is_named_when_the_server_fails(host):
    host.docker.logs["winarena"] = "WARNING: falling back to usermode networking! Performance will be bad\n"
    report = run(host.prober())
    assert report["ready"], "a healthy server wins over an old warning"
    host.server.answer("/probe", 500, "x")
    report = run(host.prober())
    assert report["failed_layer"] == "waa_server" and "NET_ADMIN" in report["hint"]
    assert report["failure_class"] == codes.PERMANENT


def test_slow_then_ok_is_noticed_by_the_wait(host):
    calls = {"n": 0}

    def slowly(handler):
        calls["n"] += 1
        if calls["n"] < 3:
            return 500, "application/json", b"{}"
        return 200, "application/json", json.dumps({"status": "Probe successful", "message": "ok"}).encode()

    host.server.routes["/probe"] = slowly
    report = probe(host.prober(), list(LAYERS), wait=True, timeout=10, backoff=Backoff(0.01, 2, 0.05, 0))
    assert report["ready"] and report["attempts"] == 3


def test_png_black_detection():
    assert png_is_black(make_png(black=True))[0] is True
    assert png_is_black(make_png(black=False)) == (False, (64, 40))
