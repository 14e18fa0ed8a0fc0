"""Start and stop WAA emulator containers the way the real container is started (waa-facts §3).

Each test container gets its own loopback address (127.x.y.z) so standard ports never clash and
tests only ever talk to loopback. Containers carry TEST_LABEL so a crashed run can be cleaned up.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

TEST_LABEL = "io.openadapt.waa.test"
RUN_ID = os.environ.setdefault("WAA_TEST_RUN_ID", uuid.uuid4().hex[:8])

# container port -> name, as the real image publishes them.
PORTS = {"novnc": 8006, "server": 5000, "rdp": 3389, "qmp": 7200, "monitor": 7100}
ENTRY_COMMAND = "./entry.sh --prepare-image false --start-client false"

T = TypeVar("T")


def free_loopback_address() -> str:
    """A random 127.x.y.z address (not 127.0.0.1): a test host of its own with standard ports."""
    rng = random.SystemRandom()
    return f"127.{rng.randint(100, 254)}.{rng.randint(0, 254)}.{rng.randint(2, 254)}"


def poll_until(probe: Callable[[], T], *, deadline_s: float, what: str, interval_s: float = 0.1) -> T:
    """Call probe until it returns a truthy value or the deadline passes (then AssertionError)."""
    end = time.monotonic() + deadline_s
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= end:
            raise AssertionError(f"{what}: not reached within {deadline_s:.0f}s (last: {last!r})")
        time.sleep(interval_s)


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


@dataclass
class EmulatorHandle:
    name: str
    host: str
    storage_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))

    def url(self, port_name: str, path: str = "/") -> str:
        return f"http://{self.host}:{self.ports[port_name]}{path}"

    def logs(self) -> str:
        proc = docker("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return docker("exec", self.name, *argv, check=check)

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.name).stdout)[0]

    def wait_for_log(self, line: str, deadline_s: float = 60) -> str:
        return poll_until(lambda: line in self.logs() and self.logs(), deadline_s=deadline_s, what=f"log line {line!r}")

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)


def start_emulator(
    *,
    image: str,
    storage_dir: Path,
    name: str | None = None,
    host: str | None = None,
    kvm: bool = True,
    net_admin: bool = True,
    ram_size: str = "1G",
    env: dict[str, str] | None = None,
    command: str = ENTRY_COMMAND,
    extra_args: tuple[str, ...] = (),
) -> EmulatorHandle:
    handle = EmulatorHandle(
        name=name or f"waa-test-{RUN_ID}-{uuid.uuid4().hex[:6]}",
        host=host or free_loopback_address(),
        storage_dir=Path(storage_dir),
    )
    argv = ["run", "-d", "--name", handle.name, "--label", f"{TEST_LABEL}={RUN_ID}", "--stop-timeout", "120"]
    if kvm:
        argv += ["--device", "/dev/kvm"]
    argv += ["--device", "/dev/net/tun"]
    if net_admin:
        argv += ["--cap-add", "NET_ADMIN"]
    merged_env = {"RAM_SIZE": ram_size, "CPU_CORES": "2", "DISK_SIZE": "64G", "VERSION": "11e", **(env or {})}
    for key, value in merged_env.items():
        argv += ["-e", f"{key}={value}"]
    argv += ["-v", f"{handle.storage_dir}:/storage"]
    for port in handle.ports.values():
        argv += ["-p", f"{handle.host}:{port}:{port}"]
    argv += [*extra_args, "--entrypoint", "/bin/bash", image, "-c", command]
    docker(*argv)
    return handle


def remove_test_containers(run_id: str | None) -> None:
    selector = f"label={TEST_LABEL}={run_id}" if run_id else f"label={TEST_LABEL}"
    ids = docker("ps", "-aq", "--filter", selector, check=False).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
