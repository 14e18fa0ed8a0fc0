"""The WAA emulator behaves like windowsarena/winarena (shared/waa-facts.md §3-§5), on the real engine."""
from __future__ import annotations

import json
import socket
import struct
import urllib.error
import urllib.request

import pytest

from tests.support.emulator import ENTRY_COMMAND, PORTS, docker, poll_until

pytestmark = pytest.mark.docker
FAST = {"WAA_EMU_BOOT_S": "1", "WAA_EMU_INSTALL_S": "1", "WAA_EMU_SERVER_S": "1", "WAA_EMU_BLACK_S": "0.5"}


def http(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
        return 0, b""


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def qmp(host: str, *commands: dict) -> list[dict]:
    with socket.create_connection((host, PORTS["qmp"]), timeout=3) as sock:
        reader = sock.makefile("r")
        replies = [json.loads(reader.readline())]
        for command in commands:
            sock.sendall(json.dumps(command).encode() + b"\r\n")
            replies.append(json.loads(reader.readline()))
        return replies


def ready(handle) -> bool:
    return http(handle.url("server", "/probe"))[0] == 200


def png_size_and_black(data: bytes) -> tuple[tuple[int, int], bool]:
    import zlib
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    offset, idat = 8, b""
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(idat)
    return (width, height), raw.count(0) == len(raw)


def test_boot_sequence_and_ports_in_order(emulator):
    handle = emulator(env={**FAST, "WAA_EMU_BOOT_S": "2", "WAA_EMU_SERVER_S": "2"})
    # 1. the status page: every path is a page titled "Windows", /msg.html says the step
    status, body = poll_until(lambda: (r := http(handle.url("novnc", "/msg.html")))[0] == 200 and r,
                              deadline_s=30, what="status page")
    assert body
    assert b"<title>Windows</title>" in http(handle.url("novnc", "/anything"))[1]
    assert http(handle.url("server", "/probe"))[0] != 200
    # 2. QEMU: /msg.html 404, noVNC on 8006, QMP running
    poll_until(lambda: http(handle.url("novnc", "/msg.html"))[0] == 404, deadline_s=30, what="msg.html 404")
    assert b"noVNC" in http(handle.url("novnc", "/"))[1]
    greeting, caps, status_reply = qmp(handle.host, {"execute": "qmp_capabilities"}, {"execute": "query-status"})
    assert "QMP" in greeting and caps == {"return": {}}
    assert status_reply["return"]["status"] == "running" and status_reply["return"]["running"] is True
    # 3. the WAA server answers exactly as the real one
    poll_until(lambda: ready(handle), deadline_s=30, what="/probe 200")
    assert json.loads(http(handle.url("server", "/probe"))[1]) == {
        "status": "Probe successful", "message": "Service is operational"}
    logs = handle.logs()
    order = ["Starting WinArena...", "Starting VM...", "Booting Windows using QEMU",
             "Waiting for a response from the windows server. This might take a while...",
             "VM is up and running, and the Windows Arena Server is ready to use!"]
    positions = [logs.index(line) for line in order]
    assert positions == sorted(positions), logs


def test_guest_api(emulator):
    handle = emulator(env=FAST)
    poll_until(lambda: ready(handle), deadline_s=30, what="/probe 200")
    assert http(handle.url("server", "/platform")) == (200, b"Windows")
    poll_until(lambda: not png_size_and_black(http(handle.url("server", "/screenshot"))[1])[1],
               deadline_s=20, what="a non-black screenshot")
    size, _black = png_size_and_black(http(handle.url("server", "/screenshot"))[1])
    assert size == (1440, 900)
    for backend in ("win32", "uia"):
        status, body = http(handle.url("server", f"/accessibility?backend={backend}"))
        tree = json.loads(body)["AT"]
        assert status == 200 and tree.startswith("<desktop") and "shell_traywnd" in tree
    assert http(handle.url("server", "/accessibility?backend=bogus"))[0] == 400
    status, reply = post(handle.url("server", "/execute"), {"command": ["cmd", "/c", "echo", "hi"], "shell": False})
    assert status == 200 and reply["status"] == "success" and reply["returncode"] == 0 and "output" in reply
    status, reply = post(handle.url("server", "/execute"), {"shell": True})
    assert status == 500 and reply["status"] == "error"
    status, reply = post(handle.url("server", "/shutdown"), {})
    assert status == 200 and reply["status"] == "Shutdown started successfully"
    with socket.create_connection((handle.host, PORTS["rdp"]), timeout=3):
        pass
    # QMP screendump writes a PNG inside the container
    qmp(handle.host, {"execute": "qmp_capabilities"},
        {"execute": "screendump", "arguments": {"filename": "/tmp/shot.png", "format": "png"}})
    assert handle.exec("python3", "-c", "print(open('/tmp/shot.png','rb').read(8))").stdout.strip() == repr(b"\x89PNG\r\n\x1a\n")


def test_first_boot_installs_and_storage_survives_a_recreate(emulator, tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    first = emulator(storage_dir=storage, env={**FAST, "WAA_EMU_INSTALL_S": "2"})
    poll_until(lambda: ready(first), deadline_s=30, what="first boot ready")
    assert "installing" in first.logs()
    disk = storage / "data.img"
    assert disk.stat().st_size == 64 * 1024 ** 3 and disk.stat().st_blocks * 512 < 10 * 1024 ** 2, "data.img is sparse"
    assert (storage / "windows.boot").exists()
    with open(disk, "r+b") as handle:  # Windows' bytes, somewhere in the disk
        handle.seek(123456789)
        handle.write(b"windows-was-here")
    before = (storage / "windows.boot").read_bytes()
    first.remove()
    second = emulator(storage_dir=storage, env=FAST)
    poll_until(lambda: ready(second), deadline_s=30, what="second boot ready")
    assert "installing" not in second.logs()
    assert (storage / "windows.boot").read_bytes() == before
    with open(disk, "rb") as handle:
        handle.seek(123456789)
        assert handle.read(16) == b"windows-was-here"


def never_ready_within(handle, seconds: float) -> None:
    with pytest.raises(AssertionError):
        poll_until(lambda: ready(handle), deadline_s=seconds, what="ready")


def test_without_kvm_it_logs_and_never_becomes_ready(emulator):
    handle = emulator(kvm=False, env=FAST)
    handle.wait_for_log("KVM acceleration not available (device file missing)", deadline_s=20)
    never_ready_within(handle, 4)
    assert handle.inspect()["State"]["Running"] is True, "the real container does not exit"


def test_without_net_admin_8006_answers_and_5000_never(emulator):
    handle = emulator(net_admin=False, env=FAST)
    handle.wait_for_log("falling back to usermode networking", deadline_s=20)
    poll_until(lambda: http(handle.url("novnc", "/msg.html"))[0] == 404, deadline_s=30, what="noVNC up")
    handle.wait_for_log("Windows Arena Server is ready", deadline_s=20)  # the guest itself is up...
    never_ready_within(handle, 3)  # ...but nothing forwards port 5000


def test_too_much_ram_logs_the_real_message_and_never_boots(emulator):
    handle = emulator(ram_size="4096G", env=FAST)
    handle.wait_for_log("Your configured RAM_SIZE of 4096 GB is too high", deadline_s=20)
    never_ready_within(handle, 3)
    assert http(handle.url("novnc", "/msg.html"))[0] == 200


@pytest.mark.parametrize("how", ["env", "runtime"])
def test_faults(emulator, how):
    handle = emulator(env={**FAST, **({"WAA_EMU_FAULT": "empty_tree,black_screen"} if how == "env" else {})})
    if how == "runtime":
        poll_until(lambda: ready(handle), deadline_s=30, what="ready")
        handle.exec("waa-emu-fault", "empty_tree")
        handle.exec("waa-emu-fault", "black_screen")
    poll_until(lambda: ready(handle), deadline_s=30, what="ready")
    assert json.loads(http(handle.url("server", "/accessibility"))[1]) == {"AT": ""}
    _size, black = png_size_and_black(http(handle.url("server", "/screenshot"))[1])
    assert black
    handle.exec("waa-emu-fault", "clear")
    handle.exec("waa-emu-fault", "server_down")
    poll_until(lambda: not ready(handle), deadline_s=5, what="server down")
    handle.exec("waa-emu-fault", "clear")
    handle.exec("waa-emu-fault", "server_hang")
    with socket.create_connection((handle.host, PORTS["server"]), timeout=3) as sock:
        sock.settimeout(1.0)
        sock.sendall(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(socket.timeout):
            sock.recv(100)  # accepts, never answers
    handle.exec("waa-emu-fault", "clear")
    poll_until(lambda: ready(handle), deadline_s=10, what="ready again after clear")
    handle.exec("waa-emu-fault", "crash")
    state = poll_until(lambda: (s := handle.inspect()["State"])["Running"] is False and s, deadline_s=10,
                       what="the container stops after a crash")
    assert state["ExitCode"] != 0 and "QEMU crashed" in handle.logs()


def test_unknown_entry_flag_is_refused(emulator):
    handle = emulator(command=ENTRY_COMMAND + " --bogus-flag 1", env=FAST)
    state = poll_until(lambda: (s := handle.inspect()["State"])["Running"] is False and s, deadline_s=15,
                       what="the emulator exits")
    assert state["ExitCode"] != 0
    assert "Unknown option: --bogus-flag" in handle.logs()


def test_no_privileged_and_only_loopback_bindings(emulator):
    handle = emulator(env=FAST)
    info = handle.inspect()
    assert info["HostConfig"]["Privileged"] is False
    assert [cap.removeprefix("CAP_") for cap in info["HostConfig"]["CapAdd"]] == ["NET_ADMIN"]
    bindings = [b for port in info["HostConfig"]["PortBindings"].values() for b in port]
    assert bindings and all(b["HostIp"].startswith("127.") for b in bindings)


def test_sigterm_stops_it_promptly(emulator):
    handle = emulator(env=FAST)
    handle.wait_for_log("Starting VM...", deadline_s=20)
    docker("stop", "-t", "20", handle.name)
    assert handle.inspect()["State"]["ExitCode"] == 0


def test_image_builds_are_cached_by_content(emulator_image):
    from waa_runner import images

    again = images.ensure_emulator(lambda message: None)
    assert again.image == emulator_image and again.built is False
    assert images.ensure_base(lambda message: None).built is False
