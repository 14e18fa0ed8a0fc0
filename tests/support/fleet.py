"""A fleet of WAA test hosts reached over real SSH, on this machine.

Each host is a `waa-fleethost` container (systemd, sshd, its own Docker engine: the stand-in for
an Azure VM) with sshd published on its own loopback address; one key per fleet; host keys
recorded when the hosts are made (StrictHostKeyChecking=yes). A real registry on the fleet's
network holds the emulator image, which every host pulls through the winarena_image role.
"""
from __future__ import annotations

import json
import random
import subprocess
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.emulator import TEST_LABEL, RUN_ID, docker, poll_until

CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE",
        "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ"]
FAST_EMULATOR = {"WAA_EMU_BOOT_S": 1, "WAA_EMU_INSTALL_S": 1, "WAA_EMU_SERVER_S": 1, "WAA_EMU_BLACK_S": 0.5}


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
    inventory: Path

    def remove(self) -> None:
        names = [h.container for h in self.hosts] + [self.registry]
        docker("rm", "-f", "-v", *names, check=False, timeout=300)
        docker("network", "rm", self.network, check=False)

    def host(self, name: str) -> FleetHost:
        return next(h for h in self.hosts if h.name == name)


def _systemd_host(container: str, address: str, network: str, kvm: bool) -> None:
    argv = ["run", "-d", "--name", container, "--hostname", container[-12:], "--label", f"{TEST_LABEL}={RUN_ID}",
            "--network", network, "-p", f"{address}:22:22", "--security-opt", "seccomp=unconfined",
            "--security-opt", "apparmor=unconfined", "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v", "/var/lib/docker", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
            "--device", "/dev/net/tun"]
    if kvm:
        argv += ["--device", "/dev/kvm"]
    for cap in CAPS:
        argv += ["--cap-add", cap]
    docker(*argv, "waa-fleethost:bookworm", "/sbin/init")


def _keyscan(address: str) -> str:
    proc = subprocess.run(["ssh-keyscan", "-T", "2", "-t", "ed25519", address], capture_output=True, text=True)
    return proc.stdout.strip()


def start_fleet(groups: dict[str, int], *, host_vars: dict[str, dict] | None = None, no_kvm: set[str] = frozenset(),
                common_vars: dict | None = None, directory: Path | None = None) -> Fleet:
    """groups: {"waa_pool_a": 2, ...}; hosts are named <group>-<i>; host_vars per host name."""
    from waa_runner import images

    images.ensure_fleethost(lambda m: None)
    images.ensure_registry(lambda m: None)
    emulator = images.ensure_emulator(lambda m: None).image
    fleet_id = uuid.uuid4().hex[:6]
    directory = Path(directory or tempfile.mkdtemp(prefix=f"waa-fleet-{fleet_id}-"))
    network = f"waa-fleet-{fleet_id}"
    registry = f"waa-fleet-registry-{fleet_id}"
    docker("network", "create", "--label", f"{TEST_LABEL}={RUN_ID}", network)
    rng = random.SystemRandom()
    prefix = f"127.{rng.randint(100, 254)}.{rng.randint(0, 254)}"
    hosts = []
    index = 0
    for group, count in groups.items():
        for number in range(1, count + 1):
            index += 1
            name = f"{group.replace('waa_', '').replace('_', '-')}-{number}"
            hosts.append(FleetHost(name=name, container=f"waa-fleet-{fleet_id}-{name}", address=f"{prefix}.{index + 1}",
                                   group=group, kvm=name not in no_kvm, host_vars=(host_vars or {}).get(name, {})))
    fleet = Fleet(fleet_id, directory, network, registry, hosts, directory / "inventory.yml")
    try:
        # the registry, reachable from the hosts as waa-fleet-registry:5000
        registry_port = rng.randint(20000, 40000)
        docker("run", "-d", "--name", registry, "--label", f"{TEST_LABEL}={RUN_ID}", "--network", network,
               "--network-alias", "waa-fleet-registry", "-p", f"127.0.0.1:{registry_port}:5000", "waa-registry:latest")
        key = directory / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda h: _systemd_host(h.container, h.address, network, h.kvm), hosts))
        poll_until(lambda: subprocess.run(["curl", "-sf", f"http://127.0.0.1:{registry_port}/v2/"],
                                          capture_output=True).returncode == 0, deadline_s=30, what="registry")
        pushed = f"127.0.0.1:{registry_port}/waa-emulator:latest"
        docker("tag", emulator, pushed)
        docker("push", pushed, timeout=300)
        docker("rmi", pushed, check=False)
        for host in hosts:
            docker("cp", f"{key}.pub", f"{host.container}:/home/azureuser/.ssh/authorized_keys")
            docker("exec", host.container, "chown", "azureuser:azureuser", "/home/azureuser/.ssh/authorized_keys")
            docker("exec", host.container, "chmod", "600", "/home/azureuser/.ssh/authorized_keys")
        known = [poll_until(lambda h=h: _keyscan(h.address), deadline_s=90, what=f"sshd on {h.name}") for h in hosts]
        (directory / "known_hosts").write_text("\n".join(known) + "\n")
        write_inventory(fleet, key, common_vars or {})
    except Exception:
        fleet.remove()
        raise
    return fleet


def write_inventory(fleet: Fleet, key: Path, common_vars: dict) -> None:
    ssh_args = (f"-o UserKnownHostsFile={fleet.directory / 'known_hosts'} -o StrictHostKeyChecking=yes "
                f"-o ControlMaster=auto -o ControlPersist=120s -o ControlPath={fleet.directory}/cp-%C "
                "-o ConnectTimeout=10")
    children: dict = {}
    for host in fleet.hosts:
        children.setdefault(host.group, {"hosts": {}})["hosts"][host.name] = {"ansible_host": host.address,
                                                                             **host.host_vars}
    inventory = {"waa": {"children": children, "vars": {
        "ansible_user": "azureuser", "ansible_become": True, "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": ssh_args, "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_pipelining": True,
        "waa_image": "waa-fleet-registry:5000/waa-emulator:latest",
        "waa_docker_insecure_registries": ["waa-fleet-registry:5000"],
        "waa_ram_size": "1G", "waa_preflight_min_free_storage_gb": 1, "waa_preflight_min_free_docker_gb": 1,
        "waa_container_env": FAST_EMULATOR, "waa_health_timeout": 120, "waa_health_recovery_timeout": 60,
        **common_vars}}}
    fleet.inventory.write_text(json.dumps(inventory, indent=2))
