#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: waa_preflight
short_description: Check that a host can run the Windows Agent Arena container, without changing it
version_added: "0.1.0"
description:
  - Checks what the C(windowsarena/winarena) container needs from its host before anything is
    installed or started, so a host that can never become ready fails in seconds with the fix,
    instead of hanging for the whole boot deadline.
  - Checks the CPU architecture, that C(/dev/kvm) is present, writable and answers the KVM API
    (the C(vmx)/C(svm) CPU flag is reported but not required, since some nested hypervisors
    expose KVM without it), free memory against O(ram_size) plus a headroom, free disk at the
    storage path and at Docker's data-root, the kernel features C(tun), C(ip_tables) and
    C(iptable_nat), that the ports to publish are free, and whether the storage path or
    Docker's data-root lie on an Azure temporary disk (wiped on deallocate).
  - Never changes the host. Returns every check with its verdict and, for each failure, one line
    saying what to do.
author:
  - openadapt.waa contributors (@openadapt)
options:
  ram_size:
    description: The RAM_SIZE the container will be given, like C(8G).
    type: str
    default: 8G
  memory_headroom_gb:
    description: Free memory needed on top of O(ram_size), in GB (the container refuses to boot below it).
    type: float
    default: 0.5
  skip_memory_check:
    description: Skip the memory check, e.g. when the container already runs and holds its RAM.
    type: bool
    default: false
  storage_path:
    description: Host directory that will be mounted at C(/storage) (the Windows disk).
    type: path
    required: true
  min_free_storage_gb:
    description: Free disk needed at O(storage_path) (or its nearest existing parent), in GB.
    type: float
    default: 64
  docker_data_root:
    description: Docker's data-root (images live there).
    type: path
    default: /var/lib/docker
  min_free_docker_gb:
    description: Free disk needed at O(docker_data_root) (or its nearest existing parent), in GB.
    type: float
    default: 30
  kernel_features:
    description: Kernel features the container's networking needs.
    type: list
    elements: str
    default: [tun, ip_tables, iptable_nat]
  bind_address:
    description: Address the ports will be published on.
    type: str
    default: 127.0.0.1
  ports:
    description: Host ports that will be published; each must be free or already published by O(owned_ports).
    type: list
    elements: int
    default: [8006, 5000, 3389, 7200, 7100]
  owned_ports:
    description: Ports already published by our own container (they count as free).
    type: list
    elements: int
    default: []
  temp_disk_paths:
    description: Mount points of temporary disks (Azure's resource disk is C(/mnt)).
    type: list
    elements: path
    default: [/mnt]
  temp_disk_policy:
    description: What a storage path or data-root on a temporary disk gives.
    type: str
    choices: [warn, fail]
    default: warn
  require_kvm:
    description: Fail when KVM is not usable. Turn off only to test orchestration on a host without KVM.
    type: bool
    default: true
notes:
  - Supports check mode; it never changes anything in any mode.
"""

EXAMPLES = r"""
- name: Check the host before installing anything
  openadapt.waa.waa_preflight:
    ram_size: 8G
    storage_path: /var/lib/waa/storage
  register: preflight

- name: Only report, let the play decide
  openadapt.waa.waa_preflight:
    storage_path: /var/lib/waa/storage
    temp_disk_policy: warn
  register: preflight
  failed_when: false
"""

RETURN = r"""
ok:
  description: Whether every check passed (warnings do not count).
  returned: always
  type: bool
checks:
  description: One entry per check with C(name), C(ok), C(message), C(fix) and C(warning).
  returned: always
  type: list
  elements: dict
failures:
  description: One line per failed check, with the fix.
  returned: always
  type: list
  elements: str
  sample: ["kvm: /dev/kvm is missing; fix: use a VM size with nested virtualization (e.g. Standard_D8ds_v5) and security type Standard"]
facts:
  description: What was measured, for later roles (arch, cpu_virt_flag, kvm_api_version, mem_available_gb, free_gb).
  returned: always
  type: dict
"""

import errno
import fcntl
import os
import platform
import socket

from ansible.module_utils.basic import AnsibleModule

KVM_GET_API_VERSION = 0xAE00
NESTED_VIRT_FIX = (
    "use an x86_64 VM size with nested virtualization (e.g. Standard_D8ds_v5) created with security "
    "type Standard (TrustedLaunch disables it), and pass --device /dev/kvm"
)
# Where each kernel feature shows itself when it is built in, loaded or loadable.
FEATURE_EVIDENCE = {
    "tun": {"paths": ["/dev/net/tun", "/sys/module/tun"], "config": "CONFIG_TUN"},
    "ip_tables": {"paths": ["/proc/net/ip_tables_names", "/sys/module/ip_tables"], "config": "CONFIG_IP_NF_IPTABLES"},
    "iptable_nat": {"paths": ["/sys/module/iptable_nat"], "config": "CONFIG_IP_NF_NAT"},
}


def parse_size_gb(text):
    """'8G' -> 8.0, '512M' -> 0.5; the units the container's RAM_SIZE accepts."""
    units = {"T": 1024.0, "G": 1.0, "M": 1 / 1024.0}
    text = text.strip().upper().rstrip("B")
    if not text or text[-1] not in units:
        raise ValueError(text)
    return float(text[:-1]) * units[text[-1]]


def mem_available_gb(meminfo="/proc/meminfo"):
    with open(meminfo) as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / (1024.0 * 1024.0)
    return None


def nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def free_gb(path):
    stat = os.statvfs(nearest_existing(path))
    return stat.f_bavail * stat.f_frsize / float(1024 ** 3)


def cpu_virt_flag(cpuinfo="/proc/cpuinfo"):
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    for flag in ("vmx", "svm"):
                        if flag in flags:
                            return flag
                    return None
    except IOError:
        return None
    return None


def kvm_api_version(device="/dev/kvm"):
    """The KVM API version /dev/kvm answers (12 on every current kernel), or an error string."""
    if not os.path.exists(device):
        return None, "missing"
    if not os.access(device, os.R_OK | os.W_OK):
        return None, "no write access"
    try:
        fd = os.open(device, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        return None, "cannot open (%s)" % err.strerror
    try:
        return fcntl.ioctl(fd, KVM_GET_API_VERSION), None
    except (IOError, OSError) as err:
        return None, "does not answer the KVM API (%s)" % err.strerror
    finally:
        os.close(fd)


def kernel_config_symbols():
    """=y/=m symbols from /proc/config.gz or /boot/config-<release>, when either exists."""
    import gzip

    symbols = set()
    candidates = [("/proc/config.gz", gzip.open), ("/boot/config-%s" % platform.release(), open)]
    for path, opener in candidates:
        if os.path.exists(path):
            try:
                with opener(path, "rt") as handle:
                    for line in handle:
                        name, sep, value = line.strip().partition("=")
                        if sep and value in ("y", "m"):
                            symbols.add(name)
            except (IOError, OSError):
                continue
            break
    return symbols


def module_listed(name):
    release = platform.release()
    for path in ("/lib/modules/%s/modules.builtin" % release, "/lib/modules/%s/modules.dep" % release):
        if os.path.exists(path):
            with open(path) as handle:
                if any(os.path.basename(line.split(":")[0]).startswith(name + ".ko") for line in handle):
                    return True
    return False


def feature_available(name, config_symbols):
    evidence = FEATURE_EVIDENCE.get(name, {"paths": ["/sys/module/%s" % name], "config": None})
    if any(os.path.exists(p) for p in evidence["paths"]):
        return True
    if evidence["config"] and evidence["config"] in config_symbols:
        return True
    return module_listed(name)


def port_free(address, port):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR: connections in TIME_WAIT (e.g. from a probe a moment ago) do not make a port busy;
    # a listener still does.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
        return True
    except socket.error as err:
        if err.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    finally:
        sock.close()


def under_any(path, roots):
    real = os.path.realpath(nearest_existing(path))
    for root in roots:
        root_real = os.path.realpath(root)
        if real == root_real or real.startswith(root_real.rstrip("/") + "/"):
            return root
    return None


class Checks(object):
    def __init__(self):
        self.items = []

    def add(self, name, ok, message, fix="", warning=False):
        self.items.append({"name": name, "ok": bool(ok), "message": message, "fix": fix if not ok or warning else "",
                           "warning": bool(warning)})

    @property
    def failures(self):
        return ["%s: %s; fix: %s" % (c["name"], c["message"], c["fix"]) for c in self.items if not c["ok"]]

    @property
    def warnings(self):
        return ["%s: %s; fix: %s" % (c["name"], c["message"], c["fix"]) for c in self.items if c["warning"]]


def run_checks(params):
    checks = Checks()
    facts = {}

    arch = platform.machine()
    facts["arch"] = arch
    checks.add("arch", arch in ("x86_64", "amd64"), "CPU architecture is %s" % arch,
               "WAA needs x86_64: ARM sizes (D*ps_v5) cannot run it; use Standard_D8ds_v5")

    flag = cpu_virt_flag()
    version, kvm_error = kvm_api_version()
    facts["cpu_virt_flag"] = flag
    facts["kvm_api_version"] = version
    if version is not None:
        note = "" if flag else " (no vmx/svm CPU flag, but KVM answers)"
        checks.add("kvm", True, "/dev/kvm answers KVM API version %s%s" % (version, note))
    else:
        message = "/dev/kvm %s" % kvm_error
        if not flag:
            message += " and the CPU shows no vmx/svm flag (nested virtualization is off)"
        if params["require_kvm"]:
            checks.add("kvm", False, message, NESTED_VIRT_FIX)
        else:
            checks.add("kvm", True, message + " (ignored: require_kvm is false)", NESTED_VIRT_FIX, warning=True)

    try:
        ram_gb = parse_size_gb(params["ram_size"])
    except ValueError:
        ram_gb = None
        checks.add("memory", False, "RAM_SIZE %r is not a size like 8G" % params["ram_size"], "set waa_ram_size like 8G")
    available = mem_available_gb()
    facts["mem_available_gb"] = round(available, 2) if available is not None else None
    if ram_gb is not None:
        needed = ram_gb + params["memory_headroom_gb"]
        if params["skip_memory_check"]:
            checks.add("memory", True, "skipped (the container already runs and holds its RAM)")
        elif available is None:
            checks.add("memory", True, "MemAvailable unknown; not checked", "", warning=True)
        else:
            checks.add("memory", available >= needed,
                       "%.1f GB free, RAM_SIZE %s needs %.1f GB" % (available, params["ram_size"], needed),
                       "lower waa_ram_size or use a bigger VM (Standard_D8ds_v5 has 32 GB)")

    facts["free_gb"] = {}
    for name, path, minimum in (("storage_disk", params["storage_path"], params["min_free_storage_gb"]),
                                ("docker_disk", params["docker_data_root"], params["min_free_docker_gb"])):
        free = free_gb(path)
        facts["free_gb"][name] = round(free, 1)
        checks.add(name, free >= minimum, "%.1f GB free at %s, %.0f GB needed" % (free, nearest_existing(path), minimum),
                   "grow the OS disk (128 GB recommended) or free space at %s" % path)
        temp_root = under_any(path, params["temp_disk_paths"])
        if temp_root:
            message = "%s is on the temporary disk %s, which Azure wipes on deallocate" % (path, temp_root)
            fix = "keep it on the OS disk (e.g. /var/lib/waa/storage, /var/lib/docker)"
            if params["temp_disk_policy"] == "fail":
                checks.add(name + "_persistence", False, message, fix)
            else:
                checks.add(name + "_persistence", True, message, fix, warning=True)

    symbols = kernel_config_symbols()
    missing = [f for f in params["kernel_features"] if not feature_available(f, symbols)]
    checks.add("kernel_features", not missing,
               "missing: %s" % ", ".join(missing) if missing else "available: %s" % ", ".join(params["kernel_features"]),
               "load them (modprobe %s) or use a standard Ubuntu 22.04 kernel" % " ".join(missing))

    busy = [p for p in params["ports"] if p not in params["owned_ports"] and not port_free(params["bind_address"], p)]
    checks.add("ports", not busy,
               "in use on %s: %s" % (params["bind_address"], ", ".join(str(p) for p in busy)) if busy
               else "free on %s: %s" % (params["bind_address"], ", ".join(str(p) for p in params["ports"])),
               "stop what listens there or choose other waa_ports")
    return checks, facts


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ram_size=dict(type="str", default="8G"),
            memory_headroom_gb=dict(type="float", default=0.5),
            skip_memory_check=dict(type="bool", default=False),
            storage_path=dict(type="path", required=True),
            min_free_storage_gb=dict(type="float", default=64),
            docker_data_root=dict(type="path", default="/var/lib/docker"),
            min_free_docker_gb=dict(type="float", default=30),
            kernel_features=dict(type="list", elements="str", default=["tun", "ip_tables", "iptable_nat"]),
            bind_address=dict(type="str", default="127.0.0.1"),
            ports=dict(type="list", elements="int", default=[8006, 5000, 3389, 7200, 7100]),
            owned_ports=dict(type="list", elements="int", default=[]),
            temp_disk_paths=dict(type="list", elements="path", default=["/mnt"]),
            temp_disk_policy=dict(type="str", choices=["warn", "fail"], default="warn"),
            require_kvm=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    checks, facts = run_checks(module.params)
    for warning in checks.warnings:
        module.warn(warning)
    module.exit_json(changed=False, ok=not checks.failures, checks=checks.items, failures=checks.failures,
                     facts=facts)


if __name__ == "__main__":
    main()
