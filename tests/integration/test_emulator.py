"""The WAA emulator behaves like windowsarena/winarena (shared/waa-facts.md §3-§5), on the real engine.

Every container is started like the real one (tests/support/emulator.py) and reached only through its
ports published on a loopback address. No fixed sleeps: every wait polls with a deadline, and every
"never" is checked over a bounded window.
"""
from __future__ import annotations

import hashlib
import http.client as httpclient
import json
import os
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.support.emulator import ENTRY_COMMAND, PORTS, docker, poll_until

pytestmark = pytest.mark.docker

FAST = {"WAA_EMU_BOOT_S": "0.4", "WAA_EMU_INSTALL_S": "0.4", "WAA_EMU_SERVER_S": "0.6", "WAA_EMU_BLACK_S": "0.3",
        "WAA_EMU_WAIT_LOG_S": "0.3"}
READY_LINE = "VM is up and running, and the Windows Arena Server is ready to use!"
WAITING_LINE = "Waiting for a response from the windows server. This might take a while..."
BOOT_LINE = "Booting Windows using QEMU"
DEADLINE = 30  # seconds for anything that must happen; the boots above take 2-3 s
NEVER = 3  # seconds a "never" is watched for, well past the FAST boot


# ------------------------------------------------------------------------------------ helpers
def http(handle, port: str, path: str, method: str = "GET", body: bytes | None = None,
         headers: dict | None = None, timeout: float = 3.0) -> tuple[int, dict, bytes]:
    """(status, headers, body); status 0 when nothing answers (refused, reset, closed, timed out)."""
    conn = httpclient.HTTPConnection(handle.host, handle.ports[port], timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    except (OSError, httpclient.HTTPException):
        return 0, {}, b""
    finally:
        conn.close()


def post_json(handle, path: str, payload) -> tuple[int, dict]:
    status, _headers, body = http(handle, "server", path, "POST", json.dumps(payload).encode(),
                                  {"Content-Type": "application/json"})
    return status, json.loads(body) if body else {}


def ready(handle) -> bool:
    return http(handle, "server", "/probe", timeout=2)[0] == 200


def wait_ready(handle) -> None:
    poll_until(lambda: ready(handle), deadline_s=DEADLINE, what=f"{handle.name}: /probe 200")


def never(condition, seconds: float, what: str) -> None:
    """`condition` stays false for the whole (bounded) window."""
    with pytest.raises(AssertionError):
        poll_until(condition, deadline_s=seconds, what=what, interval_s=0.2)


def qmp(handle, *commands: dict, negotiate: bool = True) -> list:
    """The greeting, then one reply per command (events skipped); raises OSError/ValueError if QMP is absent."""
    with socket.create_connection((handle.host, handle.ports["qmp"]), timeout=3) as sock:
        reader = sock.makefile("r")

        def next_message() -> dict:
            line = reader.readline()
            if not line:
                raise ConnectionError("QMP closed the connection")
            return json.loads(line)

        replies = [next_message()]
        for command in ([{"execute": "qmp_capabilities"}] if negotiate else []) + list(commands):
            sock.sendall(json.dumps(command).encode() + b"\r\n")
            reply = next_message()
            while "event" in reply:
                reply = next_message()
            replies.append(reply)
        return replies


def qmp_answers(handle) -> bool:
    try:
        return qmp(handle, {"execute": "query-status"})[-1] == {
            "return": {"status": "running", "singlestep": False, "running": True}}
    except (OSError, ValueError):
        return False


def monitor(handle, line: str) -> str:
    with socket.create_connection((handle.host, handle.ports["monitor"]), timeout=3) as sock:
        data = b""
        while not data.endswith(b"(qemu) "):
            data += sock.recv(4096) or b"(qemu) "
        sock.sendall(line.encode() + b"\r\n")
        reply = b""
        while not reply.endswith(b"(qemu) "):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.decode().replace("(qemu) ", "").strip()


def png_info(data: bytes) -> tuple[tuple[int, int], bool]:
    """((width, height), black?) of the emulator's PNGs (truecolour, filter 0 on every row)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16]
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (depth, colour) == (8, 2)
    offset, idat = 8, b""
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    assert len(raw) == stride * height and all(raw[y * stride] == 0 for y in range(height))
    pixels = b"".join(raw[y * stride + 1:(y + 1) * stride] for y in range(height))
    return (width, height), pixels.count(0) == len(pixels)


def screenshot(handle) -> tuple[tuple[int, int], bool]:
    status, headers, body = http(handle, "server", "/screenshot")
    assert status == 200 and headers["content-type"] == "image/png", (status, headers)
    return png_info(body)


def screendump(handle, path: str = "/tmp/screen.png", fmt: str = "png") -> bytes:
    replies = qmp(handle, {"execute": "screendump", "arguments": {"filename": path, "format": fmt}})
    assert replies[-1] == {"return": {}}, replies
    return subprocess.run(["docker", "exec", handle.name, "cat", path], capture_output=True, check=True).stdout


def hung(handle) -> bool:
    """Port 5000 accepts and sends nothing back within a second."""
    try:
        with socket.create_connection((handle.host, handle.ports["server"]), timeout=3) as sock:
            sock.sendall(b"GET /probe HTTP/1.1\r\nHost: guest\r\n\r\n")
            sock.settimeout(1.0)
            try:
                sock.recv(100)  # an answer, or the connection closed
            except socket.timeout:
                return True
            return False
    except OSError:
        return False


def running(handle) -> bool:
    return handle.inspect()["State"]["Running"] is True


def stopped(handle):
    state = handle.inspect()["State"]
    return state if not state["Running"] else None


def disk_fingerprint(path: Path) -> tuple:
    """Size, mtime and a hash of every allocated extent of a sparse file (never reads its holes)."""
    info = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        fd, offset = handle.fileno(), 0
        while True:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after offset
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            handle.seek(start)
            digest.update(struct.pack(">QQ", start, end) + handle.read(end - start))
            offset = end
    return info.st_size, info.st_mtime_ns, digest.hexdigest()


# --------------------------------------------------------------------------------- boot stages
def test_boot_sequence_and_ports_in_order(emulator):
    handle = emulator(env={**FAST, "WAA_EMU_BOOT_S": "2", "WAA_EMU_INSTALL_S": "1.5", "WAA_EMU_SERVER_S": "3"})
    # 1. the status page: /msg.html 200 with the step, every other path a page titled "Windows"
    first = poll_until(lambda: (r := http(handle, "novnc", "/msg.html"))[0] == 200 and r, deadline_s=DEADLINE,
                       what="the status page")
    assert first[2].strip() and b"<html" not in first[2].lower(), first
    status, _headers, body = http(handle, "novnc", "/some/other/path")
    assert status == 200 and b"<title>Windows</title>" in body
    assert not qmp_answers(handle), "QMP before QEMU started"
    assert not ready(handle)
    steps = set()

    def status_page_gone() -> bool:
        status, _h, step = http(handle, "novnc", "/msg.html")
        if status == 200:
            steps.add(step.decode().strip())
        return status == 404

    # 2. QEMU: /msg.html 404, noVNC on 8006, QMP and the monitor answer; the server not yet
    poll_until(status_page_gone, deadline_s=DEADLINE, what="/msg.html 404")
    assert not ready(handle), "the WAA server answered as soon as QEMU started"
    assert any("Installing Windows" in step for step in steps), steps  # a first boot
    status, _headers, body = http(handle, "novnc", "/")
    assert status == 200 and b"<title>noVNC</title>" in body
    greeting, caps, query = qmp(handle, {"execute": "query-status"})
    assert set(greeting) == {"QMP"} and "version" in greeting["QMP"] and caps == {"return": {}}
    assert query == {"return": {"status": "running", "singlestep": False, "running": True}}
    assert monitor(handle, "info status") == "VM status: running"
    # 3. the WAA server, exactly as the real one answers
    wait_ready(handle)
    status, headers, body = http(handle, "server", "/probe")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"status": "Probe successful", "message": "Service is operational"}
    logs = handle.wait_for_log("Keeping container alive", deadline_s=DEADLINE)
    lines = logs.splitlines()
    order = ["Starting WinArena...", "Starting VM...", "Starting WinArena VM...", BOOT_LINE, READY_LINE,
             "VM started, server ready", "Skipping image preparation...", "Keeping container alive"]
    positions = [next(i for i, line in enumerate(lines) if want in line) for want in order]
    assert positions == sorted(positions), logs
    booted, ready_at = positions[3], positions[4]
    assert WAITING_LINE in lines[:booted] and WAITING_LINE in lines[booted:ready_at], logs
    assert lines.count(WAITING_LINE) >= 3, "the wait is logged repeatedly"
    assert not any(WAITING_LINE in line for line in lines[ready_at:]), "no waiting once ready"


def test_guest_api_matches_the_waa_server(emulator):
    handle = emulator(env={**FAST, "WAA_EMU_BLACK_S": "4"})
    wait_ready(handle)
    # the screen: black for a while after the server is up (both ways of looking), then a desktop
    assert screenshot(handle) == ((1440, 900), True)
    assert png_info(screendump(handle)) == ((1440, 900), True)
    poll_until(lambda: not screenshot(handle)[1], deadline_s=DEADLINE, what="a non-black screenshot")
    assert png_info(screendump(handle)) == ((1440, 900), False)
    ppm = screendump(handle, "/tmp/screen.ppm", "ppm")
    assert ppm.startswith(b"P6\n1440 900\n255\n") and len(ppm) == len(b"P6\n1440 900\n255\n") + 1440 * 900 * 3

    assert http(handle, "server", "/platform")[::2] == (200, b"Windows")
    for query in ("", "?backend=win32", "?backend=uia"):
        status, headers, body = http(handle, "server", "/accessibility" + query)
        assert status == 200 and headers["content-type"] == "application/json"
        root = ElementTree.fromstring(json.loads(body)["AT"])
        assert root.tag == "desktop" and len(root) >= 2
        assert any(child.tag == "shell_traywnd" and child.get("name") == "Taskbar" for child in root)
    assert http(handle, "server", "/accessibility?backend=bogus")[::2] == (400, b"Invalid backend specified")

    status, reply = post_json(handle, "/execute", {"command": ["cmd", "/c", "echo", "hi there"], "shell": False})
    # subprocess.run(text=True) on Windows: list2cmdline quotes "hi there" and cmd's echo prints the quotes
    assert (status, reply) == (200, {"status": "success", "output": '"hi there"\n', "error": "", "returncode": 0})
    status, reply = post_json(handle, "/execute", {"command": "cmd /c exit 3", "shell": True})
    assert status == 200 and reply["status"] == "success" and reply["returncode"] == 3
    for payload in ({"shell": False}, ["not", "an", "object"]):  # any exception: 500 with the error shape
        status, reply = post_json(handle, "/execute", payload)
        assert status == 500 and reply["status"] == "error" and reply["message"], reply
    status, _headers, body = http(handle, "server", "/execute", "POST", b"{not json", {"Content-Type": "application/json"})
    assert status == 500 and json.loads(body)["status"] == "error"
    status, _headers, body = http(handle, "server", "/no/such/route")
    assert status == 500 and json.loads(body)["message"].startswith("404 Not Found")

    # QEMU's QMP and monitor, errors included
    replies = qmp(handle, {"execute": "query-status"}, negotiate=False)
    assert replies[1]["error"]["class"] == "CommandNotFound", "query-status before qmp_capabilities"
    replies = qmp(handle, {"execute": "screendump", "arguments": {}}, {"execute": "no-such-command", "id": 7},
                  {"execute": "screendump", "arguments": {"filename": "/no/dir/x.png", "format": "png"}})
    assert replies[2]["error"] == {"class": "GenericError", "desc": "Parameter 'filename' is missing"}
    assert replies[3]["error"]["class"] == "CommandNotFound" and replies[3]["id"] == 7
    assert replies[4]["error"]["class"] == "GenericError"
    assert monitor(handle, "no-such-command") == "unknown command: 'no-such-command'"
    with socket.create_connection((handle.host, handle.ports["rdp"]), timeout=3):
        pass

    # /shutdown: the answer, then Windows powers off: the server and QEMU go away, the container stays
    status, reply = post_json(handle, "/shutdown", {})
    assert status == 200 and reply["status"] == "Shutdown started successfully"
    poll_until(lambda: not ready(handle), deadline_s=DEADLINE, what="the server goes away after /shutdown")
    handle.wait_for_log("Shutdown completed!", deadline_s=DEADLINE)
    assert not qmp_answers(handle) and running(handle)


# --------------------------------------------------------------------------------------- storage
def test_first_boot_installs_then_a_recreated_container_keeps_the_disk(emulator, tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    first = emulator(storage_dir=storage, env=FAST)
    wait_ready(first)
    assert "first boot" in first.logs() and "Creating a 64G growable disk image" in first.logs()
    disk, marker = storage / "data.img", storage / "windows.boot"
    assert marker.exists()
    assert disk.stat().st_size == 64 * 1024 ** 3 and disk.stat().st_blocks * 512 < 1024 ** 2, "data.img is sparse"
    first.exec("python3", "-c", "f = open('/storage/data.img', 'r+b'); f.seek(123456789); f.write(b'windows-was-here')")
    before = disk_fingerprint(disk), marker.read_bytes(), marker.stat().st_mtime_ns
    first.remove()

    second = emulator(storage_dir=storage, env=FAST)
    wait_ready(second)
    logs = second.logs()
    assert "first boot" not in logs and "Creating a" not in logs, logs
    assert (disk_fingerprint(disk), marker.read_bytes(), marker.stat().st_mtime_ns) == before
    with open(disk, "rb") as handle:
        handle.seek(123456789)
        assert handle.read(16) == b"windows-was-here"


# --------------------------------------------------------------------------------- preconditions
@pytest.mark.parametrize("extra,reason", [
    ((), "(device file missing)"),
    (("--device", "/dev/kvm:/dev/kvm:r"), "(no write access)"),
])
def test_without_kvm_it_logs_the_real_message_and_never_becomes_ready(emulator, extra, reason):
    handle = emulator(kvm=False, extra_args=extra, env=FAST)
    logs = handle.wait_for_log(f"KVM acceleration not available {reason}", deadline_s=DEADLINE)
    waited = logs.count(WAITING_LINE)
    never(lambda: ready(handle) or qmp_answers(handle), NEVER, "ready or QEMU without KVM")
    assert http(handle, "novnc", "/msg.html")[0] == 200, "the status page stays"
    logs = handle.logs()
    assert logs.count(WAITING_LINE) > waited and READY_LINE not in logs and BOOT_LINE not in logs
    assert running(handle), "the real container does not exit"


def test_without_net_admin_novnc_and_qmp_work_but_5000_never_answers(emulator):
    handle = emulator(net_admin=False, env=FAST)
    handle.wait_for_log("falling back to usermode networking", deadline_s=DEADLINE)
    poll_until(lambda: http(handle, "novnc", "/msg.html")[0] == 404, deadline_s=DEADLINE, what="noVNC")
    assert b"noVNC" in http(handle, "novnc", "/")[2]
    poll_until(lambda: qmp_answers(handle) and not png_info(screendump(handle))[1], deadline_s=DEADLINE,
               what="Windows booted (QMP screendump shows a desktop)")
    never(lambda: ready(handle), NEVER, "/probe through usermode networking")
    assert READY_LINE not in handle.logs() and running(handle)


def test_too_much_ram_logs_the_real_message_and_never_boots(emulator):
    handle = emulator(ram_size="4096G", env=FAST)
    handle.wait_for_log("Your configured RAM_SIZE of 4096 GB is too high", deadline_s=DEADLINE)
    never(lambda: ready(handle) or qmp_answers(handle), NEVER, "ready or QEMU with RAM_SIZE too high")
    assert http(handle, "novnc", "/msg.html")[0] == 200
    assert BOOT_LINE not in handle.logs() and running(handle)
    assert not (handle.storage_dir / "data.img").exists()


# ---------------------------------------------------------------------------------------- faults
def booted(handle) -> bool:
    """QEMU runs and the screen shows the desktop: everything but the WAA server is up."""
    return qmp_answers(handle) and not png_info(screendump(handle))[1]


@pytest.mark.parametrize("fault", ["server_down", "server_hang", "empty_tree", "black_screen", "crash"])
def test_fault_set_at_start(emulator, fault):
    handle = emulator(env={**FAST, "WAA_EMU_FAULT": fault})
    if fault == "crash":
        state = poll_until(lambda: stopped(handle), deadline_s=DEADLINE, what="the container stops")
        logs = handle.logs()
        assert state["ExitCode"] != 0 and "QEMU crashed" in logs
        assert logs.index(BOOT_LINE) < logs.index("QEMU crashed"), "QEMU crashes once it runs"
        return
    if fault in ("server_down", "server_hang"):
        poll_until(lambda: booted(handle), deadline_s=DEADLINE, what="Windows booted")
        if fault == "server_hang":
            poll_until(lambda: hung(handle), deadline_s=DEADLINE, what="5000 accepts and never answers")
        never(lambda: ready(handle), NEVER, f"/probe with {fault}")
        assert READY_LINE not in handle.logs()
        handle.exec("waa-emu-fault", "clear")
        wait_ready(handle)
        handle.wait_for_log(READY_LINE, deadline_s=DEADLINE)
        return
    wait_ready(handle)
    if fault == "empty_tree":
        for backend in ("win32", "uia"):
            assert json.loads(http(handle, "server", f"/accessibility?backend={backend}")[2]) == {"AT": ""}
        return
    never(lambda: not screenshot(handle)[1] or not png_info(screendump(handle))[1], NEVER,
          "a non-black screen with black_screen")
    handle.exec("waa-emu-fault", "clear", "black_screen")
    poll_until(lambda: not screenshot(handle)[1], deadline_s=DEADLINE, what="the desktop after clearing")


def test_faults_at_run_time(emulator):
    handle = emulator(env=FAST)
    wait_ready(handle)
    poll_until(lambda: not screenshot(handle)[1], deadline_s=DEADLINE, what="the desktop")

    assert "active faults: empty_tree" in handle.exec("waa-emu-fault", "empty_tree").stdout
    assert json.loads(http(handle, "server", "/accessibility")[2]) == {"AT": ""}
    handle.exec("waa-emu-fault", "black_screen")
    assert handle.exec("waa-emu-fault", "list").stdout.split() == ["empty_tree", "black_screen"]
    assert screenshot(handle)[1] and png_info(screendump(handle))[1]
    handle.exec("waa-emu-fault", "clear", "empty_tree")  # clears only that one
    assert json.loads(http(handle, "server", "/accessibility")[2])["AT"].startswith("<desktop")
    assert screenshot(handle)[1]
    handle.exec("waa-emu-fault", "clear")
    assert not screenshot(handle)[1]

    handle.exec("waa-emu-fault", "server_down")
    poll_until(lambda: not ready(handle), deadline_s=DEADLINE, what="the server goes down")
    assert not hung(handle), "server_down closes connections at once"
    handle.exec("waa-emu-fault", "clear")
    wait_ready(handle)

    handle.exec("waa-emu-fault", "server_hang")
    poll_until(lambda: hung(handle), deadline_s=DEADLINE, what="the server hangs")
    handle.exec("waa-emu-fault", "clear")
    wait_ready(handle)

    bad = handle.exec("waa-emu-fault", "no_such_fault", check=False)
    assert bad.returncode == 2 and "unknown fault 'no_such_fault'" in bad.stderr
    assert "[waa-emu] faults now: server_hang" in handle.logs()

    handle.exec("waa-emu-fault", "crash")
    state = poll_until(lambda: stopped(handle), deadline_s=DEADLINE, what="the container stops after a crash")
    assert state["ExitCode"] != 0 and "QEMU crashed" in handle.logs()


def test_unknown_fault_name_at_start_is_refused(emulator):
    handle = emulator(env={**FAST, "WAA_EMU_FAULT": "server_down,bogus"})
    state = poll_until(lambda: stopped(handle), deadline_s=DEADLINE, what="the emulator exits")
    assert state["ExitCode"] != 0 and "unknown WAA_EMU_FAULT bogus" in handle.logs()


# -------------------------------------------------------------------------------- entry / docker
@pytest.mark.parametrize("extra,needle", [
    (" --bogus-flag 1", "Unknown option: --bogus-flag (known: --prepare-image,"),
    (" --agent", "Option --agent needs a value"),
])
def test_bad_entry_flags_are_refused(emulator, extra, needle):
    handle = emulator(command=ENTRY_COMMAND + extra, env=FAST)
    state = poll_until(lambda: stopped(handle), deadline_s=DEADLINE, what="the emulator exits")
    assert state["ExitCode"] != 0 and needle in handle.logs()


def test_prepare_image_shuts_windows_down_and_entry_ends(emulator):
    handle = emulator(command="./entry.sh --prepare-image true --start-client false",
                      env={**FAST, "WAA_EMU_PREPARE_S": "2.5"})
    state = poll_until(lambda: stopped(handle), deadline_s=DEADLINE, what="entry.sh ends")
    logs = handle.logs()
    assert state["ExitCode"] == 127, "the real entry.sh ends in `wait -n` without children"
    for line in (READY_LINE, "Preparing Arena image by gracefully shutting down the Windows VM...",
                 "Windows VM is shutting down...", "Shutdown completed!"):
        assert line in logs, logs


def test_runs_unprivileged_with_kvm_net_admin_and_loopback_ports(emulator):
    handle = emulator(env=FAST)
    info = handle.inspect()
    host = info["HostConfig"]
    assert host["Privileged"] is False
    assert [cap.removeprefix("CAP_") for cap in host["CapAdd"]] == ["NET_ADMIN"]
    assert "/dev/kvm" in [device["PathOnHost"] for device in host["Devices"]]
    bindings = {port: [b["HostIp"] for b in bound] for port, bound in host["PortBindings"].items()}
    assert set(bindings) == {f"{port}/tcp" for port in PORTS.values()}
    assert all(ips and all(ip.startswith("127.") for ip in ips) for ips in bindings.values()), bindings
    assert info["Config"]["Entrypoint"] == ["/bin/bash"] and info["Config"]["Cmd"] == ["-c", ENTRY_COMMAND]
    wait_ready(handle)  # and it works that way


@pytest.mark.parametrize("ignore", [False, True])
def test_docker_stop(emulator, ignore):
    handle = emulator(env={**FAST, **({"WAA_EMU_IGNORE_SIGTERM": "1"} if ignore else {})})
    handle.wait_for_log("Starting VM...", deadline_s=DEADLINE)
    started = time.monotonic()
    docker("stop", "-t", "2" if ignore else "30", handle.name)
    took = time.monotonic() - started
    state = handle.inspect()["State"]
    if ignore:  # the real PID 1 ignores SIGTERM: docker waits the stop timeout and kills
        assert state["ExitCode"] == 137 and took >= 1.9
    else:
        assert state["ExitCode"] == 0 and took < 10 and "received SIGTERM" in handle.logs()


def test_image_is_the_base_plus_a_few_small_files(emulator_image):
    from waa_runner import images

    sizes = json.loads(docker("image", "inspect", "--format", "[{{.Size}}]", emulator_image).stdout)[0], \
        json.loads(docker("image", "inspect", "--format", "[{{.Size}}]", images.BASE_IMAGE).stdout)[0]
    assert sizes[0] - sizes[1] < 1024 ** 2, sizes
    dockerfile = (images.EMULATOR_CONTEXT / "Dockerfile").read_text()
    assert "apt-get" not in dockerfile and "pip" not in dockerfile
    again = images.ensure_emulator(lambda message: None)
    assert again.image == emulator_image and again.built is False
    assert images.ensure_base(lambda message: None).built is False
