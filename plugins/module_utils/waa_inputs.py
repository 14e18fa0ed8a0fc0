# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rules of every input beyond its type: ranges, patterns, paths, names.

Each input's type, default, choices and description are written once, in the roles'
meta/argument_specs.yml (shared inputs in roles/waa_common) or, for the playbooks' own switches,
in PLAYBOOK_OPTIONS below. What an argument spec cannot say (a range, a pattern, "not under /mnt")
is written once here, in RULES, keyed by the variable's name. The action plugin
openadapt.waa.waa_validate applies both; the Jinja tests in plugins/test/waa.py use the same
patterns. Standard library only.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import math
import re

SIZE = re.compile(r"^[1-9][0-9]{0,4}[GMT]$")
CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
# [registry[:port]/]path[:tag][@sha256:digest]; a registry has a dot or a port, or is localhost;
# path components are lower case, as Docker requires.
IMAGE_REF = re.compile(
    r"^(?:(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+(?::[0-9]+)?|localhost(?::[0-9]+)?|[a-zA-Z0-9-]+:[0-9]+)/)?"
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
REGISTRY_HOST = re.compile(r"^[a-zA-Z0-9.-]+(:[0-9]+)?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# entry.sh flag values and other words that end up in an argv: no shell metacharacters.
SAFE_WORD = re.compile(r"^[A-Za-z0-9_./:@+-]{1,200}$")
LOG_SIZE = re.compile(r"^[1-9][0-9]{0,5}[kmg]$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,100}$")
HOST_PATTERN = re.compile(r"^[A-Za-z0-9_.:*!&,\[\]@~^$()|?+/\-]+$")
WINDOWS_VERSIONS = ("11", "11e", "11l", "10", "10e", "10l", "2022", "2019", "2025")
# entry.sh's flags (WindowsAgentArena src/win-arena-container/entry.sh); an unknown one makes the
# real script loop forever at 100% CPU.
ENTRY_FLAGS = (
    "prepare_image", "start_client", "agent", "model", "som_origin", "a11y_backend", "clean_results",
    "worker_id", "num_workers", "result_dir", "json_name",
)
# Environment entries the roles set from their own, validated inputs.
RESERVED_ENV = {"RAM_SIZE": "waa_ram_size", "CPU_CORES": "waa_cpu_cores", "DISK_SIZE": "waa_disk_size",
                "VERSION": "waa_windows_version"}
# Variables that inventories and the playbooks themselves set (not user inputs, never refused).
SET_BY_THE_COLLECTION = frozenset((
    "waa_azure_vm_name", "waa_azure_resource_group", "waa_azure_location", "waa_azure_vm_size", "waa_azure_id",
    "waa_azure_powerstate", "waa_azure_status", "waa_azure_address", "waa_azure_power", "waa_azure_power_result",
    "waa_azure_prices", "waa_container_exists", "waa_container_running", "waa_docker_answers", "waa_docker_probe",
    "waa_health_report", "waa_preflight", "waa_image_id", "waa_validated", "waa_up_probe", "waa_vm_existing",
    "waa_vm_result", "waa_vm_sizes_to_try", "waa_vm_size_attempt", "waa_provision", "waa_validate_roles",
    "waa_azure_power_result", "waa_verdicts", "waa_verdict",
    # inventory/azure_rm.yml's pool tag
    "waa_pool",
    # the inputs of provision.yml and teardown.yml (checked there, with Azure's rules): they may sit in
    # the same group_vars as the host inputs
    "waa_pool_size", "waa_resource_group", "waa_location", "waa_vm_size", "waa_vm_size_fallbacks", "waa_admin_user",
    "waa_ssh_public_key_file", "waa_ssh_public_key", "waa_ssh_allow_any", "waa_ssh_source_cidr", "waa_os_disk_size_gb",
    "waa_os_disk_type", "waa_public_ip", "waa_vnet_name", "waa_vnet_cidr", "waa_subnet_name", "waa_subnet_cidr",
    "waa_auto_shutdown", "waa_auto_shutdown_time", "waa_auto_shutdown_timezone", "waa_tags", "waa_allow_gen2_image",
    "waa_confirm_teardown", "waa_teardown_vnet", "waa_teardown_timeout", "waa_teardown_poll_seconds",
    "waa_provision_timeout", "waa_provision_poll_seconds", "waa_provision_targets",
))

# The playbooks' own switches (the roles' inputs are in their argument specs).
PLAYBOOK_OPTIONS = {
    "waa_target": {"type": "str", "default": "waa",
                   "description": "Host pattern the playbooks run on."},
    "waa_strategy": {"type": "str", "choices": ["free", "linear"],
                     "description": "Play strategy (free unless waa_max_fail_percentage is set)."},
    "waa_max_fail_percentage": {"type": "int",
                                "description": "Stop the play when more than this percentage of hosts failed."},
    "waa_probe_wait": {"type": "bool", "default": False, "description": "probe.yml: wait for readiness."},
    "waa_probe_fail": {"type": "bool", "default": False, "description": "probe.yml: fail a host that is not ready."},
    "waa_container_down_mode": {"type": "str", "choices": ["stopped", "absent"], "default": "stopped",
                                "description": "down.yml: stop the container or remove it (the disk stays)."},
    "waa_deallocate": {"type": "bool", "default": False, "description": "down.yml: deallocate the Azure VM."},
    "waa_azure_wait_for_ssh": {"type": "bool", "default": True,
                               "description": "up.yml: wait for SSH after starting an Azure VM."},
    "waa_azure_ssh_timeout": {"type": "int", "default": 600,
                              "description": "up.yml: seconds to wait for SSH after starting an Azure VM."},
    "waa_azure_deallocate_on_ssh_timeout": {"type": "bool", "default": False,
                                            "description": "up.yml: deallocate a VM whose SSH never answered."},
    "waa_lock_owner": {"type": "dict", "description": "Who holds the host lock: run_id, what, controller, pid, "
                                                      "boot_id, pidns (waa-run sets it)."},
    "waa_lock_wait": {"type": "float", "default": 0,
                      "description": "Seconds to wait for another run's host lock (waa-run --wait-lock)."},
    "waa_lock_ttl": {"type": "int", "default": 7200, "description": "Seconds a host lock holds without renewal."},
    "waa_lock_takeover_own": {"type": "bool", "default": False,
                              "description": "Take over a host lock left by another run of this controller "
                                             "(waa-run sets it)."},
}


# ------------------------------------------------------------------------------ rules
def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(low=None, high=None, low_open=False):
    """A finite number in [low, high] (low excluded with low_open)."""
    if low is not None and high is not None:
        allowed = "a number from %g to %g" % (low, high)
    elif low is not None:
        allowed = "a number %s %g" % ("greater than" if low_open else "at least", low)
    else:
        allowed = "a finite number"

    def check(value):
        if not _finite(value):
            return allowed
        if low is not None and (value <= low if low_open else value < low):
            return allowed
        if high is not None and value > high:
            return allowed
        return None
    return check


def pattern(regex, allowed):
    def check(value):
        return None if isinstance(value, str) and regex.match(value) else allowed
    return check


def optional(check):
    """'' (unset) or what `check` allows."""
    def inner(value):
        if value in ("", None):
            return None
        problem = check(value)
        return None if problem is None else problem + " (or empty)"
    return inner


def absolute_path(forbid_mnt=True):
    def check(value):
        text = str(value or "")
        if not text.startswith("/") or "\x00" in text or "/../" in text + "/" or "\n" in text:
            return "an absolute path"
        if forbid_mnt and (text == "/mnt" or text.startswith("/mnt/")):
            return "an absolute path not under /mnt (Azure wipes its temporary disk on deallocate)"
        return None
    return check


def ip_address(value):
    try:
        ipaddress.ip_address(str(value))
        return None
    except ValueError:
        return "an IP address"


def ports(value):
    for name, port in (value or {}).items():
        if port is None:
            continue
        if not _finite(port) or int(port) != port or not 1 <= port <= 65535:
            return "ports from 1 to 65535 (%s=%r)" % (name, port)
    numbers = [port for port in (value or {}).values() if port is not None]
    if len(set(numbers)) != len(numbers):
        return "a different port for each service"
    return None


def container_env(value):
    for key, item in (value or {}).items():
        if key in RESERVED_ENV:
            return ("without %s (the role sets it from %s, which is validated: set that instead)"
                    % (key, RESERVED_ENV[key]))
        if not ENV_NAME.match(str(key)):
            return "environment names of letters, digits and _ (%r)" % (key,)
        if isinstance(item, (dict, list)) or item is None:
            return "a string or number for each entry (%s)" % (key,)
        if isinstance(item, float) and not math.isfinite(item):
            return "a finite number for %s" % (key,)
    return None


def entry_flags(value):
    for name, item in (value or {}).items():
        if name not in ENTRY_FLAGS:
            return "only entry.sh's flags: %s (not %r)" % (", ".join(ENTRY_FLAGS), name)
        if item is None:
            continue
        text = ("true" if item else "false") if isinstance(item, bool) else str(item)
        if not SAFE_WORD.match(text):
            return "flag values of letters, digits and _ . / : @ + - only (%s=%r)" % (name, item)
    return None


def words(regex, allowed):
    def check(value):
        for item in value or []:
            if not isinstance(item, str) or not regex.match(item):
                return "%s (not %r)" % (allowed, item)
        return None
    return check


def registries(value):
    return words(REGISTRY_HOST, "registry host[:port] names")(value)


def mirrors(value):
    for item in value or []:
        if not isinstance(item, str) or not re.match(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[^\s]*)?$", item):
            return "http(s) URLs (not %r)" % (item,)
    return None


def paths(value):
    for item in value or []:
        if absolute_path(forbid_mnt=False)(item):
            return "absolute paths (not %r)" % (item,)
    return None


def layers_nonempty(value):
    return None if value else "at least one layer"


# The rule of each input that has one (checked after its type, choices and sub-options).
RULES = {
    "waa_container_name": pattern(CONTAINER_NAME, "1-128 letters, digits and _ . - (starting with a letter or digit)"),
    "waa_image": pattern(IMAGE_REF, "an image reference like windowsarena/winarena:latest (lower-case path)"),
    "waa_image_digest": optional(pattern(DIGEST, "sha256: and 64 hex digits")),
    "waa_storage_path": absolute_path(),
    "waa_docker_data_root": absolute_path(),
    "waa_ram_size": pattern(SIZE, "a size like 8G, 512M or 1T"),
    "waa_disk_size": pattern(SIZE, "a size like 64G or 1T"),
    "waa_cpu_cores": number(1, 64),
    "waa_windows_version": lambda v: None if str(v) in WINDOWS_VERSIONS else "one of " + ", ".join(WINDOWS_VERSIONS),
    "waa_bind_address": ip_address,
    "waa_ports": ports,
    "waa_container_env": container_env,
    "waa_entry_flags": entry_flags,
    "waa_container_stop_timeout": number(0, 3600),
    "waa_container_retries": number(1, 20),
    "waa_image_fallback_registry": optional(pattern(REGISTRY_HOST, "a registry host[:port]")),
    "waa_image_pull_timeout": number(10, 86400),
    "waa_image_stall_timeout": number(5, 86400),
    "waa_image_pull_retries": number(1, 20),
    "waa_image_pull_backoff": number(0, 600),
    "waa_image_progress_interval": number(1, 600),
    "waa_docker_log_max_size": pattern(LOG_SIZE, "a size like 50m, 1g or 500k"),
    "waa_docker_log_max_file": number(1, 100),
    "waa_docker_registry_mirrors": mirrors,
    "waa_docker_insecure_registries": registries,
    "waa_docker_packages": words(PACKAGE_NAME, "Debian package names"),
    "waa_docker_users": words(USER_NAME, "Linux user names"),
    "waa_docker_start_retries": number(1, 20),
    "waa_docker_start_delay": number(0, 600),
    "waa_docker_wait_timeout": number(1, 3600),
    "waa_preflight_memory_headroom_gb": number(0, 1024),
    "waa_preflight_min_free_storage_gb": number(0, 65536),
    "waa_preflight_min_free_docker_gb": number(0, 65536),
    "waa_preflight_kernel_features": words(re.compile(r"^[a-z0-9_]{1,64}$"), "kernel module names"),
    "waa_preflight_temp_disk_paths": paths,
    "waa_health_layers": layers_nonempty,
    "waa_health_timeout": number(0, 86400, low_open=True),
    "waa_health_stall_timeout": number(0, 86400),
    "waa_health_request_timeout": number(0, 600, low_open=True),
    "waa_health_recovery_timeout": number(0, 86400, low_open=True),
    "waa_health_backoff_initial": number(0, 600, low_open=True),
    "waa_health_backoff_factor": number(1, 10),
    "waa_health_backoff_max": number(0, 3600, low_open=True),
    "waa_health_breaker_threshold": number(0, 1000),
    "waa_health_breaker_reset": number(0, 86400),
    "waa_target": pattern(HOST_PATTERN, "an Ansible host pattern (no spaces)"),
    "waa_max_fail_percentage": number(0, 100),
    "waa_azure_ssh_timeout": number(1, 7200),
    "waa_lock_wait": number(0, 86400),
    "waa_lock_ttl": number(10, 7 * 86400),
    "waa_image_pull_lease": number(5, 86400),
    "waa_image_pull_first_poll_grace": number(1, 86400),
}


def check_rules(values):
    """[(name, value, allowed)] for every value that breaks its rule."""
    problems = []
    for name, rule in RULES.items():
        if name in values and values[name] is not None:
            allowed = rule(values[name])
            if allowed:
                problems.append((name, values[name], allowed))
    return problems


def cross_checks(values):
    """Rules between inputs."""
    problems = []
    address = values.get("waa_bind_address")
    if address is not None and not values.get("waa_expose_publicly") and not ip_address(address):
        if not ipaddress.ip_address(str(address)).is_loopback:
            problems.append(("waa_bind_address", address,
                             "a loopback address (127.0.0.0/8, ::1) unless waa_expose_publicly is true: nothing "
                             "on these ports is authenticated"))
    backoff_initial, backoff_max = values.get("waa_health_backoff_initial"), values.get("waa_health_backoff_max")
    lease, interval = values.get("waa_image_pull_lease"), values.get("waa_image_progress_interval")
    if _finite(lease) and _finite(interval) and lease < 3 * interval:
        problems.append(("waa_image_pull_lease", lease,
                         "at least 3 x waa_image_progress_interval (%g): a slow poll must not end the pull" % (3 * interval)))
    if _finite(backoff_initial) and _finite(backoff_max) and backoff_initial > backoff_max:
        problems.append(("waa_health_backoff_initial", backoff_initial,
                         "at most waa_health_backoff_max (%g)" % backoff_max))
    return problems
