"""Each health layer against local fake servers: healthy, refused, 500, wrong JSON, hang,
slow-then-ok, black screen, empty tree, fatal log lines; and the report's exit codes and hints."""
from __future__ import annotations

import json
import time

import pytest

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health import (
    FATAL_LOG_PATTERNS, LAYERS, Deadline, Prober, layers_to_run, match_fatal_log, parse_docker_time, summarize,
)
from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_wait import Backoff, probe
from tests.unit.fakes import FakeDocker, FakeHTTP, FakeQMP, free_port, make_png

TREE = '<desktop><shell_traywnd name="Taskbar"/></desktop>'
RESULT_KEYS = {"layer", "healthy", "message", "duration_s", "attempts", "failure_class", "hint", "details"}


class Host:
    """A healthy fake WAA host: engine, container, noVNC, QMP, server."""

    def __init__(self, tmp_path) -> None:
        self.docker = FakeDocker(str(tmp_path / "docker.sock"))
        self.docker.add_container("winarena")
        self.docker.screen = make_png(black=False)
        self.web, self.server, self.qmp = FakeHTTP(), FakeHTTP(), FakeQMP()
        self.web.answer("/msg.html", 404, "not found")
        self.web.answer("/vnc.html", 200, "<html><title>noVNC</title></html>")
        self.server.answer("/probe", 200, {"status": "Probe successful", "message": "Service is operational"})
        self.server.answer("/accessibility", 200, {"AT": TREE})
        self.server.answer("/screenshot", 200, make_png(black=False), "image/png")

    def prober(self, **kw) -> Prober:
        return Prober(host="127.0.0.1", ports={"novnc": self.web.port, "server": self.server.port,
                                               "qmp": self.qmp.port},
                      docker_host=self.docker.path, request_timeout=kw.pop("request_timeout", 1.0), **kw)

    def close(self) -> None:
        for fake in (self.docker, self.web, self.server, self.qmp):
            fake.close()


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    yield h
    h.close()


def run(prober, layers=LAYERS, seconds=5.0):
    started = time.monotonic()
    results = prober.evaluate(list(layers), Deadline(seconds))
    return summarize(results, list(layers), started)


def assert_verdict(report, layer, code, failure_class):
    assert not report["ready"]
    assert (report["failed_layer"], report["exit_code"], report["failure_class"]) == (layer, code, failure_class), \
        report["message"]
    assert report["message"].startswith(layer + ": ") and "\n" not in report["message"]
    assert report["layers"][-1]["layer"] == layer and report["hint"] == report["layers"][-1]["hint"] != ""


# -- the report ------------------------------------------------------------------------------
def test_healthy_host_passes_all_five_layers(host):
    report = run(host.prober())
    assert report["ready"] and report["exit_code"] == 0 and report["failed_layer"] is None
    assert [r["layer"] for r in report["layers"]] == list(LAYERS)
    assert all(r["healthy"] and r["failure_class"] is None and r["hint"] == "" for r in report["layers"])
    assert all(set(r) == RESULT_KEYS for r in report["layers"])
    assert host.qmp.commands[:3] == ["qmp_capabilities", "query-status", "screendump"]
    assert report["layers"][2]["details"]["screen"].startswith("qmp screendump, 64x40")
    assert report["layers"][1]["details"]["restart_count"] == 0


def test_layers_run_in_order_up_to_the_last_requested_one(host):
    assert layers_to_run(["waa_server"]) == ["docker_daemon", "container", "vm_boot", "waa_server"]
    assert layers_to_run(["container", "docker_daemon"]) == ["docker_daemon", "container"]
    with pytest.raises(ValueError):
        layers_to_run(["bogus"])
    report = run(host.prober(), layers=["container"])
    assert report["ready"] and [r["layer"] for r in report["layers"]] == ["docker_daemon", "container"]
    assert host.web.hits == [], "nothing above the last requested layer is touched"


# -- docker_daemon -------------------------------------------------------------------------------
def test_engine_missing_is_permanent_exit_2(tmp_path):
    report = run(Prober(docker_host=str(tmp_path / "nothing.sock")))
    assert_verdict(report, "docker_daemon", codes.DOCKER_DAEMON, codes.PERMANENT)
    assert "docker_daemon" in report["hint"] and len(report["layers"]) == 1


def test_engine_answering_500_or_hanging(host):
    host.docker.ping_status = 500
    assert "500" in run(host.prober())["message"]
    host.docker.hang_all = True
    started = time.monotonic()
    report = run(host.prober(request_timeout=0.3))
    assert time.monotonic() - started < 1.5
    assert_verdict(report, "docker_daemon", codes.DOCKER_DAEMON, codes.PERMANENT)


def test_docker_host_accepts_a_unix_url(host):
    prober = Prober(docker_host="unix://" + host.docker.path)
    assert run(prober, layers=["container"])["ready"]


# -- container -------------------------------------------------------------------------------
def test_missing_container_is_permanent_and_says_run_vm_setup(host):
    report = run(host.prober(container_name="nope"))
    assert_verdict(report, "container", codes.CONTAINER, codes.PERMANENT)
    assert "vm_setup" in report["hint"].replace("vm-setup", "vm_setup")


def test_stopped_container_is_recoverable_with_its_state_and_last_logs(host):
    host.docker.add_container("winarena", running=False, exit_code=137)
    host.docker.logs["winarena"] = "".join("line %d\n" % n for n in range(30))
    report = run(host.prober())
    assert_verdict(report, "container", codes.CONTAINER, codes.RECOVERABLE)
    details = report["layers"][-1]["details"]
    assert "exit code 137" in report["message"] and details["exit_code"] == 137 and details["status"] == "exited"
    assert details["last_logs"][-1] == "line 29" and len(details["last_logs"]) <= 20


@pytest.mark.parametrize("kind,word", [({"oom": True, "running": False}, "OOM-killed"),
                                       ({"restarting": True, "running": False}, "restarting")])
def test_oom_killed_and_restarting_containers(host, kind, word):
    host.docker.add_container("winarena", **kind)
    report = run(host.prober())
    assert_verdict(report, "container", codes.CONTAINER, codes.RECOVERABLE)
    assert word in report["message"]


# -- vm_boot -----------------------------------------------------------------------------------
def test_boot_status_page_means_still_booting(host):
    host.web.answer("/msg.html", 200, "<html><p>Installing Windows...</p></html>")
    report = run(host.prober())
    assert_verdict(report, "vm_boot", codes.VM_BOOT, codes.RECOVERABLE)
    assert report["message"] == "vm_boot: still on the boot status page: Installing Windows..."


def test_novnc_refused_500_or_wrong_page(host):
    prober = host.prober()
    prober.ports["novnc"] = free_port()
    assert "connection refused" in run(prober)["message"]
    host.web.answer("/vnc.html", 500, "oops")
    assert "answers 500 but does not serve noVNC" in run(host.prober())["message"]
    host.web.answer("/vnc.html", 200, "<html>some other site</html>")
    assert_verdict(run(host.prober()), "vm_boot", codes.VM_BOOT, codes.RECOVERABLE)


@pytest.mark.parametrize("setup,expected", [
    ({"port": "refused"}, "connection refused"),
    ({"mode": "hang"}, "no answer within"),
    ({"mode": "garbage"}, "unexpected greeting"),
    ({"status": "paused"}, "QEMU reports the VM as paused"),
])
def test_qmp_failures(host, setup, expected):
    prober = host.prober(request_timeout=0.3)
    if setup.get("port"):
        prober.ports["qmp"] = free_port()
    host.qmp.mode = setup.get("mode", "ok")
    host.qmp.status = setup.get("status", "running")
    started = time.monotonic()
    report = run(prober)
    assert time.monotonic() - started < 1.5
    assert_verdict(report, "vm_boot", codes.VM_BOOT, codes.RECOVERABLE)
    assert expected in report["message"]


def test_qmp_events_between_replies_are_skipped(host):
    host.qmp.mode = "events"
    assert run(host.prober())["ready"]


def test_black_screen_read_back_through_the_engine(host):
    host.docker.screen = make_png(black=True, filters=[0, 1, 2, 3, 4])
    report = run(host.prober())
    assert_verdict(report, "vm_boot", codes.VM_BOOT, codes.RECOVERABLE)
    assert "the screen is black (qmp screendump" in report["message"]
    assert run(host.prober(check_screen=False))["ready"], "check_screen=false skips it"
    assert "screendump" not in host.qmp.commands[-2:]


def test_blue_desktop_with_sub_and_up_filters_is_not_black(host):
    host.docker.screen = make_png(black=False, filters=[1, 2])
    assert run(host.prober())["ready"]


def test_black_screen_falls_back_to_the_screenshot_endpoint(host):
    host.docker.screen = None  # the archive endpoint cannot give the screendump
    host.server.answer("/screenshot", 200, make_png(black=True), "image/png")
    report = run(host.prober())
    assert "black (GET /screenshot" in report["message"]
    host.qmp.mode = "screendump_error"  # QEMU could not write it: same fallback
    host.server.answer("/screenshot", 200, make_png(black=False), "image/png")
    assert run(host.prober())["layers"][2]["details"]["screen"].startswith("GET /screenshot")


def test_an_unreadable_screen_fails_vm_boot_never_passes(host):
    """Not checked is never healthy: a screen that cannot be read fails vm_boot (it used to pass)."""
    host.docker.screen = b"not a png"
    report = run(host.prober())
    assert report["ready"] and report["layers"][2]["details"]["screen"].startswith("GET /screenshot, 64x40"), \
        "a screendump that is not a PNG falls back to /screenshot"
    host.server.answer("/screenshot", 500, "boom")
    report = run(host.prober())
    assert_verdict(report, "vm_boot", codes.VM_BOOT, codes.RECOVERABLE)
    assert report["message"].startswith("vm_boot: the screen could not be checked: qmp screendump: not a PNG")
    assert "GET /screenshot answered 500" in report["message"] and "check_screen" in report["hint"]
    host.server.hang("/screenshot")
    host.docker.screen = None
    started = time.monotonic()
    report = run(host.prober(request_timeout=0.3))
    assert time.monotonic() - started < 1.5 and report["failed_layer"] == "vm_boot", report["message"]
    assert "could not be checked" in report["message"] and report["timed_out"] is False


def test_a_screen_the_deadline_leaves_no_time_for_is_a_timed_out_failure(host):
    """The last request before the deadline gets a usable timeout (the floor) or is not made."""
    page = (200, "text/html", b"<html><title>noVNC</title></html>")
    host.web.routes["/vnc.html"] = lambda handler: (time.sleep(3.3), page)[1]  # leaves < 1 s for the screen
    started = time.monotonic()
    report = run(host.prober(request_timeout=5.0), seconds=4.0)
    assert time.monotonic() - started < 4.5
    assert_verdict(report, "vm_boot", codes.VM_BOOT, codes.RECOVERABLE)
    assert report["timed_out"] is True and report["layers"][-1]["details"].get("deadline_reached") is True, \
        report["message"]
    assert report["message"].startswith("vm_boot: the deadline ended before ") and "could be checked" in report["message"]


# -- waa_server -------------------------------------------------------------------------------
@pytest.mark.parametrize("status,body,expected", [
    (500, {"status": "error", "message": "boom"}, "answered 500"),
    (200, {"status": "Probe successful!"}, "answered 200"),
    (200, {"status": "something else"}, "answered 200"),
    (200, "not json", "answered 200"),
    (200, ["Probe successful"], "answered 200"),
])
def test_waa_server_wrong_answers(host, status, body, expected):
    host.server.answer("/probe", status, json.dumps(body) if isinstance(body, list) else body)
    report = run(host.prober())
    assert_verdict(report, "waa_server", codes.WAA_SERVER, codes.RECOVERABLE)
    assert expected in report["message"]


def test_waa_server_refused(host):
    prober = host.prober()
    prober.ports["server"] = free_port()
    report = run(prober, layers=["waa_server"])
    assert_verdict(report, "waa_server", codes.WAA_SERVER, codes.RECOVERABLE)
    assert "connection refused" in report["message"]


def test_a_hung_server_costs_one_request_timeout(host):
    host.server.hang("/probe")
    started = time.monotonic()
    report = run(host.prober(request_timeout=0.4))
    assert time.monotonic() - started < 1.5
    assert_verdict(report, "waa_server", codes.WAA_SERVER, codes.RECOVERABLE)
    assert "within 0.4s" in report["message"]


def test_a_hung_server_never_outlives_the_deadline(host):
    host.server.hang("/probe")
    started = time.monotonic()
    report = run(host.prober(request_timeout=30), seconds=0.6)
    assert time.monotonic() - started < 1.5 and not report["ready"]


def test_a_trickling_server_is_cut_at_the_request_timeout(host):
    host.server.trickle("/probe", every_s=0.05)  # never idle long enough for a socket timeout
    started = time.monotonic()
    report = run(host.prober(request_timeout=0.4))
    assert time.monotonic() - started < 1.5 and report["failed_layer"] == "waa_server"


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
    assert all(r["attempts"] == 3 for r in report["layers"])


# -- accessibility ------------------------------------------------------------------------------
@pytest.mark.parametrize("status,body,expected", [
    (200, {"AT": ""}, "with an empty tree"),
    (200, {"AT": None}, "with an empty tree"),
    (200, {}, "with an empty tree"),
    (200, {"AT": "<desktop/>"}, "has no windows"),
    (200, {"AT": "<desk"}, "not XML"),
    (400, {"status": "error", "message": "bad backend"}, "answered 400"),
    (500, {"status": "error", "message": "boom"}, "answered 500"),
])
def test_empty_or_broken_accessibility_tree(host, status, body, expected):
    host.server.answer("/accessibility", status, body)
    report = run(host.prober())
    assert_verdict(report, "accessibility", codes.ACCESSIBILITY, codes.TRANSIENT)
    assert expected in report["message"]


def test_accessibility_backend_and_its_own_timeout(host):
    run(host.prober(a11y_backend="uia"))
    assert "/accessibility?backend=uia" in host.server.hits
    host.server.hang("/accessibility")
    started = time.monotonic()
    report = run(host.prober(a11y_timeout=0.3))
    assert time.monotonic() - started < 1.5
    assert_verdict(report, "accessibility", codes.ACCESSIBILITY, codes.TRANSIENT)


# -- fatal log lines --------------------------------------------------------------------------------
@pytest.mark.parametrize("line,hint_words", [
    ("ERROR: KVM acceleration not available (device file missing), this will cause a major loss of performance.",
     ["nested virtualization", "D8ds_v5", "security type Standard", "--device /dev/kvm"]),
    ("ERROR: Your configured RAM_SIZE of 64 GB is too high for the 31 GB of memory available",
     ["lower", "RAM_SIZE", "more memory"]),
])
def test_fatal_log_lines_fail_at_once_as_preflight(host, line, hint_words):
    host.web.answer("/msg.html", 200, "Starting VM...")
    host.docker.logs["winarena"] = "Starting WinArena...\nStarting VM...\n" + line + "\n"
    report = run(host.prober())
    assert_verdict(report, "vm_boot", codes.PREFLIGHT, codes.PERMANENT)
    assert line.split(",")[0].replace("ERROR: ", "").replace("Your configured ", "") in report["message"]
    assert all(word in report["hint"] for word in hint_words), report["hint"]
    details = report["layers"][-1]["details"]
    assert details["log_line"].startswith(line[7:30]) and details["last_logs"][-1] == line


def test_coloured_log_lines_are_matched_and_shown_without_escapes(host):
    host.web.answer("/msg.html", 200, "Starting VM...")
    host.docker.logs["winarena"] = ("\x1b[1;34m❯ \x1b[1;36mStarting VM...\x1b[0m\n"
                                    "\x1b[1;31m❯ ERROR: KVM acceleration not available (no write access), this will "
                                    "cause a major loss of performance.\x1b[0m\n")
    report = run(host.prober())
    assert report["exit_code"] == codes.PREFLIGHT and "\x1b" not in report["message"]
    assert report["layers"][-1]["details"]["last_logs"] == [
        "❯ Starting VM...",
        "❯ ERROR: KVM acceleration not available (no write access), this will cause a major loss of performance."]


def test_usermode_networking_is_named_when_the_server_fails(host):
    host.docker.logs["winarena"] = "WARNING: NET_ADMIN is missing: falling back to usermode networking!\n"
    assert run(host.prober())["ready"], "a healthy server wins over the warning"
    host.server.answer("/probe", 500, "x")
    report = run(host.prober())
    assert_verdict(report, "waa_server", codes.WAA_SERVER, codes.PERMANENT)
    assert "NET_ADMIN" in report["hint"] and "/dev/net/tun" in report["hint"]


def test_log_lines_come_from_the_current_run_only(host):
    host.web.answer("/msg.html", 200, "booting")
    report = run(host.prober())
    assert report["failure_class"] == codes.RECOVERABLE, "no fatal line: still booting"
    since = [q for path, q in host.docker.queries if path.endswith("/logs")][-1]["since"]
    assert int(since) == parse_docker_time("2026-11-24T00:00:00.123456789Z") == 1795478400


def test_the_fatal_pattern_table_is_one_place():
    assert {p.layer for p in FATAL_LOG_PATTERNS} <= set(LAYERS)
    assert all(p.failure_class in codes.FAILURE_CLASSES and p.exit_code in codes.EXIT_CODES and p.hint
               for p in FATAL_LOG_PATTERNS)
    pattern, line = match_fatal_log("x\nWARNING: falling back to usermode networking! bad\ny")
    assert pattern.layer == "waa_server" and line == "WARNING: falling back to usermode networking! bad"
    assert match_fatal_log("all good") == (None, None)
