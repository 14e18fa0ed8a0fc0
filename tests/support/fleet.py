"""A fleet of WAA test hosts reached over real SSH, on this machine.

Each host is a `waa-fleethost` container (systemd as PID 1, sshd, its own Docker engine: the
stand-in for an Azure VM) with sshd published on its own loopback address (127.A.B.C:22). One
ed25519 key per fleet is installed for `azureuser` before the host boots; the host keys are
recorded with ssh-keyscan when the hosts are made, and every connection checks them
(StrictHostKeyChecking=yes). A real registry on the fleet's network holds the emulator image,
which every host pulls through the winarena_image role (as `waa-fleet-registry:5000/...`).

The inventory groups the hosts under `waa` (children = the groups asked for) with the connection
settings a real fleet wants: become, the key, the fleet's known_hosts, SSH multiplexing
(ControlMaster/ControlPersist), pipelining. An ansible.cfg next to it lets plain ansible-playbook
use the same settings.

From Python (tests, benchmarks)::

    fleet = start_fleet({"waa_pool_a": 3, "waa_pool_b": 2}, no_kvm={"pool-b-1"})
    ...  # waa-run up -i fleet.inventory
    fleet.remove()

From a shell (docs/fleet.md)::

    .venv/bin/python -m tests.support.fleet create waa_pool_a=3 waa_pool_b=2 --dir /tmp/myfleet
    .venv/bin/python -m tests.support.fleet remove /tmp/myfleet
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python tests/support/fleet.py`: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.emulator import RUN_ID, TEST_LABEL, docker, poll_until  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HOST_IMAGE = "waa-fleethost:bookworm"
REGISTRY_ALIAS = "waa-fleet-registry"
FLEET_IMAGE = f"{REGISTRY_ALIAS}:5000/waa-emulator:latest"
# Every capability but SYS_RESOURCE (outside this machine's bounding set) and BPF, PERFMON,
# CHECKPOINT_RESTORE (unknown to engine 20.10): what systemd and an inner engine need, without
# --privileged.
CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE",
        "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ"]
# The emulator's stages in seconds: a warm boot of about 2 s instead of minutes.
FAST_EMULATOR = {"WAA_EMU_BOOT_S": 1, "WAA_EMU_INSTALL_S": 1, "WAA_EMU_SERVER_S": 1, "WAA_EMU_BLACK_S": 0.5}
# What every host of a test fleet gets unless the caller overrides it (common_vars / host_vars).
FLEET_VARS = {
    "waa_image": FLEET_IMAGE,
    "waa_docker_insecure_registries": [f"{REGISTRY_ALIAS}:5000"],
    "waa_ram_size": "1G",
    "waa_preflight_min_free_storage_gb": 1,
    "waa_preflight_min_free_docker_gb": 1,
    "waa_container_env": FAST_EMULATOR,
    "waa_health_timeout": 120,
    "waa_health_recovery_timeout": 60,
}


@dataclass
class FleetHost:
    name: str
    container: str
    address: str
    group: str
    kvm: bool = True
    host_vars: dict = field(default_factory=dict)


@dataclass
class Fleet:
    fleet_id: str
    directory: Path
    network: str
    registry: str
    hosts: list[FleetHost]
    owns_directory: bool = False
    registry_port: int = 0
    timings: dict = field(default_factory=dict)

    @property
    def inventory(self) -> Path:
        return self.directory / "inventory.yml"

    @property
    def key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def ansible_cfg(self) -> Path:
        return self.directory / "ansible.cfg"

    @property
    def control_dir(self) -> Path:
        return _control_dir(self.directory, self.fleet_id)

    def host(self, name: str) -> FleetHost:
        return next(h for h in self.hosts if h.name == name)

    def ssh(self, name: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command on a host over real SSH (the fleet's key and known_hosts, no multiplexing)."""
        return subprocess.run(["ssh", *_ssh_options(self.key, self.known_hosts), f"azureuser@{self.host(name).address}",
                               *argv], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def save(self) -> None:
        data = asdict(self)
        data["directory"] = str(self.directory)
        (self.directory / "fleet.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Fleet":
        data = json.loads((Path(directory) / "fleet.json").read_text())
        data["directory"] = Path(data["directory"])
        data["hosts"] = [FleetHost(**host) for host in data["hosts"]]
        return cls(**data)

    def close_masters(self) -> None:
        """End the SSH master connections (ControlPersist) so the next run connects cold."""
        for master in (self.control_dir.glob("*") if self.control_dir.is_dir() else []):
            subprocess.run(["ssh", "-o", f"ControlPath={master}", "-O", "exit", "fleet-host"], capture_output=True,
                           timeout=10, stdin=subprocess.DEVNULL)

    def remove(self) -> None:
        """Remove every container, anonymous volume and network of the fleet (and its directory if it made it)."""
        self.close_masters()
        names = [h.container for h in self.hosts] + [self.registry]
        docker("rm", "-f", "-v", *names, check=False, timeout=300)
        docker("network", "rm", self.network, check=False)
        shutil.rmtree(self.control_dir, ignore_errors=True)
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _control_dir(directory: Path, fleet_id: str) -> Path:
    # A Unix socket path must stay under 108 bytes: ControlPath=<dir>/%C adds 41.
    if len(str(directory)) <= 50:
        return directory / "cp"
    return Path(tempfile.gettempdir()) / f"waa-cp-{fleet_id}"


def _ssh_options(key: Path, known_hosts: Path) -> list[str]:
    return ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]


def _host_argv(fleet: Fleet, host: FleetHost) -> list[str]:
    argv = ["create", "--name", host.container, "--hostname", host.name, "--label", f"{TEST_LABEL}={RUN_ID}",
            "--label", f"io.openadapt.waa.fleet={fleet.fleet_id}", "--network", fleet.network,
            "-p", f"{host.address}:22:22",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v", "/var/lib/docker",  # anonymous volume: overlay2 for the inner engine, removed with rm -v
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
            "--device", "/dev/net/tun"]
    if host.kvm:
        argv += ["--device", "/dev/kvm"]
    for cap in CAPS:
        argv += ["--cap-add", cap]
    return [*argv, HOST_IMAGE, "/sbin/init"]


def _keyscan(address: str) -> str:
    proc = subprocess.run(["ssh-keyscan", "-T", "2", "-t", "ed25519", address], capture_output=True, text=True,
                          timeout=10)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _make_host(fleet: Fleet, host: FleetHost, deadline: float) -> str:
    """Create, key and boot one host; wait for sshd and systemd; return its known_hosts line."""
    for _attempt in range(3):
        docker(*_host_argv(fleet, host))
        # The key is in place before sshd starts (root-owned 0644 passes sshd's StrictModes).
        docker("cp", str(fleet.key) + ".pub", f"{host.container}:/home/azureuser/.ssh/authorized_keys")
        proc = docker("start", host.container, check=False)
        if proc.returncode == 0:
            break
        docker("rm", "-f", "-v", host.container, check=False)
        if "address already in use" not in proc.stderr and "port is already allocated" not in proc.stderr:
            raise RuntimeError(f"docker start {host.container} failed: {proc.stderr.strip()}")
        rng = random.SystemRandom()  # someone else holds <address>:22: take another loopback address
        host.address = f"127.{rng.randint(100, 254)}.{rng.randint(0, 254)}.{rng.randint(2, 254)}"
    else:
        raise RuntimeError(f"no free loopback address for {host.name}")
    line = poll_until(lambda: _keyscan(host.address), deadline_s=max(1.0, deadline - time.monotonic()),
                      what=f"sshd on {host.name} ({host.address})", interval_s=0.25)
    known = fleet.directory / f".known-{host.name}"
    known.write_text(line + "\n")
    # Waits for systemd to finish booting (the inner engine included): "running", or "degraded" when
    # an optional unit failed. Asked as root through systemd's private socket: the same question from
    # the SSH user goes through D-Bus and, asked early in the boot, could hang well past the boot.
    proc = docker("exec", host.container, "systemctl", "is-system-running", "--wait", check=False,
                  timeout=max(5.0, deadline - time.monotonic()))
    state = proc.stdout.strip()
    if state not in ("running", "degraded"):
        raise RuntimeError(f"{host.name}: systemd did not come up ({state or proc.stderr.strip()})")
    # Then logs in with the key against the recorded host key, as every run will.
    login = subprocess.run(["ssh", *_ssh_options(fleet.key, known), f"azureuser@{host.address}", "true"],
                           capture_output=True, text=True, timeout=max(5.0, deadline - time.monotonic()),
                           stdin=subprocess.DEVNULL)
    known.unlink()
    if login.returncode != 0:
        raise RuntimeError(f"{host.name}: SSH login failed: {login.stderr.strip()}")
    return line


def _start_registry(fleet: Fleet, emulator: str, deadline: float) -> None:
    docker("run", "-d", "--name", fleet.registry, "--label", f"{TEST_LABEL}={RUN_ID}",
           "--label", f"io.openadapt.waa.fleet={fleet.fleet_id}", "--network", fleet.network,
           "--network-alias", REGISTRY_ALIAS, "-p", "127.0.0.1::5000", "waa-registry:latest")
    fleet.registry_port = int(docker("port", fleet.registry, "5000/tcp").stdout.split(":")[-1])

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{fleet.registry_port}/v2/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    poll_until(answers, deadline_s=max(1.0, deadline - time.monotonic()), what="the fleet registry", interval_s=0.2)
    pushed = f"127.0.0.1:{fleet.registry_port}/waa-emulator:latest"
    docker("tag", emulator, pushed)
    try:
        docker("push", pushed, timeout=300)
    finally:
        docker("rmi", pushed, check=False)


def start_fleet(groups: dict[str, int], *, host_vars: dict[str, dict] | None = None, no_kvm=frozenset(),
                common_vars: dict | None = None, directory: str | os.PathLike | None = None,
                workers: int = 8, deadline_s: float = 240) -> Fleet:
    """Make a fleet: groups {"waa_pool_a": 2, ...}; hosts are named pool-a-1, pool-a-2, ...

    host_vars: per host name; no_kvm: host names that get no /dev/kvm (they fail preflight);
    common_vars: override FLEET_VARS for every host. At most `workers` hosts are made at once;
    everything made is removed again when any step fails.
    """
    from waa_runner import images

    started = time.monotonic()
    deadline = started + deadline_s
    images.ensure_fleethost(lambda m: None)
    images.ensure_registry(lambda m: None)
    emulator = images.ensure_emulator(lambda m: None).image
    built = time.monotonic()
    fleet_id = uuid.uuid4().hex[:6]
    owns = directory is None
    directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix=f"waa-fleet-{fleet_id}-"))
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.SystemRandom()
    prefix = f"127.{rng.randint(100, 254)}.{rng.randint(0, 254)}"
    hosts: list[FleetHost] = []
    for group, count in groups.items():
        for number in range(1, count + 1):
            name = f"{group.removeprefix('waa_').replace('_', '-')}-{number}"
            hosts.append(FleetHost(name=name, container=f"waa-fleet-{fleet_id}-{name}",
                                   address=f"{prefix}.{len(hosts) + 2}", group=group, kvm=name not in no_kvm,
                                   host_vars=dict((host_vars or {}).get(name, {}))))
    unknown = set(no_kvm) | set(host_vars or {})
    unknown -= {h.name for h in hosts}
    if unknown:
        raise ValueError(f"no such hosts in the fleet: {sorted(unknown)}")
    fleet = Fleet(fleet_id, directory, f"waa-fleet-{fleet_id}", f"waa-fleet-registry-{fleet_id}", hosts, owns)
    try:
        docker("network", "create", "--label", f"{TEST_LABEL}={RUN_ID}", fleet.network)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"waa-fleet-{fleet_id}",
                        "-f", str(fleet.key)], check=True, capture_output=True)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            registry = pool.submit(_start_registry, fleet, emulator, deadline)
            known = list(pool.map(lambda h: _make_host(fleet, h, deadline), hosts))
            registry.result()
        fleet.known_hosts.write_text("\n".join(known) + "\n")
        write_inventory(fleet, {**FLEET_VARS, **(common_vars or {})})
        fleet.timings = {"images_s": round(built - started, 2), "hosts_s": round(time.monotonic() - built, 2)}
        fleet.save()
    except BaseException:
        fleet.remove()
        raise
    return fleet


def write_inventory(fleet: Fleet, group_vars: dict) -> None:
    """inventory.yml (groups: waa → the fleet's groups) and ansible.cfg for plain ansible-playbook."""
    import yaml

    fleet.control_dir.mkdir(mode=0o700, exist_ok=True)
    # multiplexing in ssh_args: they come first on ssh's command line, and ssh takes an option's
    # first value (in ssh_common_args, Ansible's default ssh_args' ControlPersist=60s would win)
    multiplexing = f"-o ControlMaster=auto -o ControlPersist=10m -o ControlPath={fleet.control_dir}/%C"
    ssh_args = " ".join([
        f"-o UserKnownHostsFile={fleet.known_hosts}", "-o StrictHostKeyChecking=yes", "-o IdentitiesOnly=yes",
        "-o ConnectTimeout=10", "-o ServerAliveInterval=5", "-o ServerAliveCountMax=3"])
    children: dict = {}
    for host in fleet.hosts:
        members = children.setdefault(host.group, {"hosts": {}})["hosts"]
        members[host.name] = {"ansible_host": host.address, **host.host_vars}
    inventory = {"waa": {"children": children, "vars": {
        "ansible_user": "azureuser",
        "ansible_become": True,
        "ansible_ssh_private_key_file": str(fleet.key),
        "ansible_ssh_args": multiplexing,
        "ansible_ssh_common_args": ssh_args,
        "ansible_ssh_pipelining": True,
        "ansible_python_interpreter": "/usr/bin/python3",
        **group_vars}}}
    header = (f"# Test fleet {fleet.fleet_id}: made by tests/support/fleet.py; remove it with\n"
              f"#   python -m tests.support.fleet remove {fleet.directory}\n")
    fleet.inventory.write_text(header + yaml.safe_dump(inventory, sort_keys=False, default_flow_style=False))
    fleet.ansible_cfg.write_text(
        "# ANSIBLE_CONFIG=<this file> ansible-playbook openadapt.waa.up  (waa-run sets the same itself)\n"
        "[defaults]\n"
        f"inventory = {fleet.inventory}\n"
        f"collections_path = {REPO / 'collections'}\n"
        "forks = 50\n"
        "host_key_checking = True\n"
        "interpreter_python = /usr/bin/python3\n"
        "retry_files_enabled = False\n"
        "[ssh_connection]\n"
        "pipelining = True\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fleet",
                                     description="Make or remove a local fleet of WAA test hosts reached over SSH.")
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="make a fleet and print its inventory")
    create.add_argument("groups", nargs="+", metavar="GROUP=N", help="e.g. waa_pool_a=3 waa_pool_b=2")
    create.add_argument("--dir", help="where the key, known_hosts and inventory go (default: a new temp dir)")
    create.add_argument("--no-kvm", action="append", default=[], metavar="HOST", help="a host without /dev/kvm")
    create.add_argument("--boot-seconds", type=float, help="the emulator's warm boot time (default: about 2 s)")
    remove = sub.add_parser("remove", help="remove a fleet made with create")
    remove.add_argument("dir")
    args = parser.parse_args(argv)
    if args.action == "remove":
        fleet = Fleet.load(args.dir)
        fleet.owns_directory = False
        fleet.remove()
        print(f"removed fleet {fleet.fleet_id} ({len(fleet.hosts)} hosts); {args.dir} is left for you to delete")
        return 0
    groups = {}
    for item in args.groups:
        group, _, count = item.partition("=")
        groups[group] = int(count or 1)
    common = {}
    if args.boot_seconds:
        common["waa_container_env"] = emulator_timings(args.boot_seconds)
    fleet = start_fleet(groups, no_kvm=set(args.no_kvm), common_vars=common,
                        directory=Path(args.dir).resolve() if args.dir else None)
    fleet.owns_directory = False
    fleet.save()
    for host in fleet.hosts:
        print(f"{host.name:<12} {host.group:<12} ssh azureuser@{host.address}{'' if host.kvm else '  (no /dev/kvm)'}")
    print(f"\ninventory: {fleet.inventory}\n"
          f"  .venv/bin/waa-run up -i {fleet.inventory}\n"
          f"  ANSIBLE_CONFIG={fleet.ansible_cfg} .venv/bin/ansible-playbook openadapt.waa.up\n"
          f"  ssh -i {fleet.key} -o UserKnownHostsFile={fleet.known_hosts} azureuser@{fleet.hosts[0].address}\n"
          f"remove: .venv/bin/python -m tests.support.fleet remove {fleet.directory}")
    return 0


def emulator_timings(boot_s: float) -> dict:
    """Emulator stages for a warm boot (start to /probe 200) of about boot_s seconds."""
    return {"WAA_EMU_BOOT_S": round(boot_s * 0.4, 2), "WAA_EMU_INSTALL_S": 1,
            "WAA_EMU_SERVER_S": round(boot_s * 0.6, 2), "WAA_EMU_BLACK_S": 0}


if __name__ == "__main__":
    sys.exit(main())
