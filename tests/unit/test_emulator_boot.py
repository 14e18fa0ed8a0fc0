"""The emulator's pieces one at a time, in-process on 127.0.0.1 with ephemeral ports: settings and
flags, faults, the status page and noVNC, the preconditions, /storage, the boot with QMP and the
monitor, the poller's ready line, and the main loop's crash and power-off."""
from __future__ import annotations

import io
import json
import os
import socket
import threading
import time

import pytest

from waa_runner.emulator.waa_emu import boot, config, main, preconditions, storage, web
from waa_runner.emulator.waa_emu.config import Settings, Timings, UsageError
from waa_runner.emulator.waa_emu.guest_api import GuestServer
from waa_runner.emulator.waa_emu.guest_routes import ROUTES
from waa_runner.emulator.waa_emu.logs import Log
from waa_runner.emulator.waa_emu.state import State
from tests.support.emulator import poll_until

FAST = Timings(boot=0.02, install=0.02, server=0.05, black=0.02, wait_log=0.1, prepare=0.0)
EPHEMERAL = {"web": 0, "rdp": 0, "qmp": 0, "monitor": 0}


def make_state(tmp_path, **overrides) -> tuple[State, io.StringIO]:
    values = dict(fault_file=str(tmp_path / "faults"), storage=str(tmp_path / "storage"), bind_addr="127.0.0.1",
                  ports=EPHEMERAL, guest_addr="127.0.0.1", timings=FAST, kvm_check=False, ram_check=False,
                  forward_addrs=())
    values.update(overrides)
    stream = io.StringIO()
    state = State.create(Settings(**values), Log(stream))
    state.faults.reset(())
    return state, stream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_flags_and_settings():
    flags = config.parse_flags(["--prepare-image", "false", "--start-client", "false"])
    assert flags["prepare-image"] == "false" and flags["agent"] == "navi"
    with pytest.raises(UsageError, match=r"^Unknown option: --nope \(known: --prepare-image"):
        config.parse_flags(["--nope", "x"])
    with pytest.raises(UsageError, match=r"^Option --agent needs a value"):
        config.parse_flags(["--agent"])
    warnings: list[str] = []
    settings = Settings.from_env({"WAA_EMU_BOOT_S": "soon", "WAA_EMU_FAULT": "empty_tree", "KVM": "N"}, warnings.append)
    assert settings.timings.boot == 2.0 and warnings == ["WAA_EMU_BOOT_S='soon' is not a number of seconds: using 2.0"]
    assert settings.initial_faults == ("empty_tree",) and settings.kvm_check is False
    with pytest.raises(UsageError, match="unknown WAA_EMU_FAULT bogus"):
        Settings.from_env({"WAA_EMU_FAULT": "bogus"}, warnings.append)


def test_status_page_then_novnc():
    status, body, _ = web.route(True, "Installing Windows...", "/msg.html", False)
    assert (status, body) == (200, '<p class="loading">Installing Windows</p>\n')
    assert "<title>Windows</title>" in web.route(True, "x", "/anything", False)[1]
    assert web.route(False, "", "/msg.html", False)[0] == 404
    assert "<title>noVNC</title>" in web.route(False, "", "/vnc.html", False)[1]
    assert web.route(False, "", "/", True)[::2] == (301, {"Location": "/?resize=scale&autoconnect=true"})


def test_preconditions_with_the_real_messages(tmp_path):
    settings = Settings(kvm_cpu_flags=True, ram_size="8G")
    assert preconditions.kvm_error(settings, device=str(tmp_path / "kvm")) == "(device file missing)"
    device, cpuinfo = tmp_path / "kvm", tmp_path / "cpuinfo"
    device.write_text("")
    cpuinfo.write_text("flags\t\t: fpu sse2\n")
    assert preconditions.kvm_error(settings, device=str(device), cpuinfo=str(cpuinfo)) == "(vmx/svm disabled)"
    cpuinfo.write_text("flags\t\t: fpu vmx\n")
    assert preconditions.kvm_error(settings, device=str(device), cpuinfo=str(cpuinfo)) is None
    status = tmp_path / "status"
    status.write_text("CapEff:\t0000000000001000\n")
    assert preconditions.has_net_admin(str(status)) is True
    status.write_text("CapEff:\t00000000a80425fb\n")
    assert preconditions.has_net_admin(str(status)) is False
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemAvailable:   {6 * 1024 * 1024} kB\n")
    assert preconditions.ram_error(settings, str(meminfo)) == (
        "Your configured RAM_SIZE of 8 GB is too high for the 6 GB of memory available, please set a lower value.")
    assert preconditions.iec_bytes("1.5T") == int(1.5 * (1 << 40)) and preconditions.iec_bytes("64", "G") == 64 << 30


def test_storage_first_boot_then_kept(tmp_path):
    state, stream = make_state(tmp_path, disk_size="2G")
    assert storage.ensure_disk(state)
    disk = storage.disk_path(state)
    assert os.path.getsize(disk) == 2 << 30 and os.stat(disk).st_blocks == 0  # sparse
    storage.install_windows(state)
    assert os.path.exists(storage.marker_path(state)) and "first boot: no" in stream.getvalue()
    mtime = os.stat(disk).st_mtime_ns
    again, again_log = make_state(tmp_path, disk_size="2G")
    assert storage.ensure_disk(again) and os.stat(disk).st_mtime_ns == mtime
    storage.install_windows(again)
    assert "first boot" not in again_log.getvalue()


def qmp_session(port: int, *commands: dict) -> list[dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        reader = sock.makefile("r")
        replies = [json.loads(reader.readline())]
        for command in commands:
            sock.sendall(json.dumps(command).encode() + b"\r\n")
            message = json.loads(reader.readline())
            while "event" in message:
                message = json.loads(reader.readline())
            replies.append(message)
        return replies


def monitor_line(port: int, line: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        reader = sock.makefile("rb")
        reader.read(len(b"QEMU 8.2.2 monitor - type 'help' for more information\r\n(qemu) "))
        sock.sendall(line.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"(qemu) "):
            answer += reader.read(1)
        return answer[:-len(b"(qemu) ")].decode().strip()


def test_boot_qmp_monitor_and_reset(tmp_path):
    state, stream = make_state(tmp_path)
    boot.start_vm(state, net_admin=lambda: True)
    log = stream.getvalue()
    assert "❯ Booting Windows using QEMU v8.2.2..." in log and "Windows started succesfully" in log
    assert state.machine.status_page is False and state.machine.qemu_running
    qmp_port, monitor_port = (server.server_address[1] for server in state.machine.qemu_servers)
    shot = tmp_path / "screen.png"
    replies = qmp_session(qmp_port, {"execute": "query-status"}, {"execute": "qmp_capabilities"},
                          {"execute": "query-status", "id": 1},
                          {"execute": "screendump", "arguments": {"filename": str(shot), "format": "png"}})
    assert replies[1]["error"]["class"] == "CommandNotFound"
    assert replies[3] == {"return": {"status": "running", "singlestep": False, "running": True}, "id": 1}
    assert replies[4] == {"return": {}} and shot.read_bytes().startswith(b"\x89PNG")
    poll_until(state.machine.server_should_listen, deadline_s=5, what="the guest server is due")
    assert monitor_line(monitor_port, "info status") == "VM status: running"
    assert monitor_line(monitor_port, "system_reset") == ""
    assert not state.machine.server_should_listen()  # Windows reboots: its server is down for a while
    poll_until(state.machine.server_should_listen, deadline_s=5, what="the guest server after the reset")
    state.power_off()
    assert "❯ Shutdown completed!" in stream.getvalue()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", qmp_port), timeout=1)


def test_without_net_admin_the_guest_is_unreachable(tmp_path):
    state, stream = make_state(tmp_path)
    boot.start_vm(state, net_admin=lambda: False)
    assert "❯ Warning: falling back to usermode networking (slow)!" in stream.getvalue()
    assert state.machine.qemu_running and not state.machine.server_should_listen()
    state.power_off()


@pytest.mark.parametrize("prepare", ["false", "true"])
def test_entry_setup_waits_for_the_guest_then_logs_ready(tmp_path, prepare):
    state, stream = make_state(tmp_path, guest_port=free_port())
    guest = GuestServer(state, ROUTES)
    exits: list[int] = []
    flags = {**config.ENTRY_DEFAULTS, "prepare-image": prepare, "start-client": "false"}
    thread = threading.Thread(target=boot.entry_setup, args=(state, flags, exits.append), daemon=True)
    thread.start()
    poll_until(lambda: "Waiting for a response from the windows server" in stream.getvalue(), deadline_s=5,
               what="the waiting line")
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:  # main()'s loop: the guest's socket
        guest.reconcile()
        time.sleep(0.02)
    assert not thread.is_alive(), "entry_setup did not end"
    log = stream.getvalue()
    assert "VM is up and running, and the Windows Arena Server is ready to use!" in log
    if prepare == "true":
        assert exits == [127] and "Windows VM is shutting down..." in log and state.machine.off_at is not None
    else:
        assert exits == [] and log.rstrip().endswith("Keeping container alive")
    state.machine.off_at = None
    state.machine.off = True
    guest.reconcile()
    state.power_off()


def test_main_loop_crash_and_power_off(tmp_path):
    state, stream = make_state(tmp_path)
    guest = GuestServer(state, ROUTES)
    state.machine.start_qemu()
    exits: list[int] = []
    state.faults.reset(("crash",))
    faults = main.tick(state, guest, frozenset(), exits.append)
    assert exits == [1] and faults == {"crash"} and "[waa-emu] faults now: crash" in stream.getvalue()
    assert "❯ ERROR: QEMU crashed: qemu-system-x86_64 was killed by signal 11" in stream.getvalue()
    state.faults.reset(())
    state.machine.schedule_power_off(0.0)
    main.tick(state, guest, faults, exits.append)
    assert state.machine.off and "❯ Shutdown completed!" in stream.getvalue()
