"""The physical limit of a fleet probe: the same five checks as the health probe, over the same
SSH hosts, in parallel, with plain Python and no Ansible (one `ssh host sudo python3 -` per host,
the check script on stdin). fleet_scaling.py reports our wall time over this one's.

The checks, each with a 5 s deadline: the engine's _ping on its Unix socket, the container's
inspect (running), noVNC's /vnc.html, the WAA server's /probe, a non-empty /accessibility tree.
"""
from __future__ import annotations

import json
import resource
import subprocess
import threading
import time
from dataclasses import dataclass

CHECKS = r'''
import http.client, json, socket, sys
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.settimeout(5); self.sock.connect("/var/run/docker.sock")
def engine(path):
    c = Unix("docker", timeout=5); c.request("GET", path); r = c.getresponse(); return r.status, r.read(4 << 20)
def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5); c.request("GET", path); r = c.getresponse()
    return r.status, r.read(32 << 20)
out = {}
try:
    out["docker_daemon"] = engine("/_ping")[0] == 200
    status, body = engine("/containers/winarena/json")
    out["container"] = status == 200 and json.loads(body)["State"]["Running"]
    status, body = get(8006, "/vnc.html"); out["vm_boot"] = status == 200 and b"novnc" in body.lower()
    status, body = get(5000, "/probe"); out["waa_server"] = status == 200
    status, body = get(5000, "/accessibility?backend=win32"); out["accessibility"] = status == 200 and len(body) > 2
except Exception as err:
    out["error"] = str(err)
print(json.dumps(out))
'''


@dataclass
class Reference:
    wall_s: float
    cpu_s: float  # user + system of the ssh processes (the controller's whole share)
    ready: int


def probe_fleet(addresses: list[str], ssh_options: list[str], user: str = "azureuser") -> Reference:
    """Run the five checks on every address at once; count the hosts where all five pass."""
    results: dict[str, dict] = {}

    def one(address: str) -> None:
        proc = subprocess.run(["ssh", *ssh_options, f"{user}@{address}", "sudo", "python3", "-"], input=CHECKS,
                              capture_output=True, text=True, timeout=60)
        try:
            results[address] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            results[address] = {"error": proc.stderr.strip()[-200:]}

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(address,)) for address in addresses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    layers = ("docker_daemon", "container", "vm_boot", "waa_server", "accessibility")
    ready = sum(1 for found in results.values() if all(found.get(layer) for layer in layers))
    return Reference(wall, cpu, ready)
