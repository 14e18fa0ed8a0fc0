# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn role settings into the container's description (winarena_container).

Written in Python rather than Jinja so the rules (flag names, value patterns, port mapping) are
each stated once and refused with a message that names the bad value.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError

from ansible_collections.openadapt.waa.plugins.module_utils import waa_container_config

# entry.sh's flags (WindowsAgentArena src/win-arena-container/entry.sh); an unknown one makes the
# real script loop forever at 100% CPU.
ENTRY_FLAGS = (
    "prepare_image", "start_client", "agent", "model", "som_origin", "a11y_backend", "clean_results",
    "worker_id", "num_workers", "result_dir", "json_name",
)
FLAG_VALUE = re.compile(r"^[A-Za-z0-9_./:@+-]{1,200}$")
CONTAINER_PORTS = {"novnc": 8006, "server": 5000, "rdp": 3389, "qmp": 7200, "monitor": 7100}


def _flag_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def waa_entry_args(flags):
    """{'prepare_image': False} -> ['--prepare-image', 'false']: argv for entry.sh, no shell involved."""
    if not isinstance(flags, dict):
        raise AnsibleFilterError("waa_entry_flags must be a mapping of flag -> value, got %r" % (flags,))
    argv = []
    for name, value in flags.items():
        if name not in ENTRY_FLAGS:
            raise AnsibleFilterError(
                "unknown entry.sh flag %r in waa_entry_flags; allowed: %s" % (name, ", ".join(ENTRY_FLAGS)))
        text = _flag_value(value)
        if not FLAG_VALUE.match(text):
            raise AnsibleFilterError(
                "bad value %r for entry.sh flag %s: use letters, digits and _ . / : @ + - only" % (text, name))
        argv += ["--" + name.replace("_", "-"), text]
    return argv


def waa_published_ports(ports, address):
    """{'novnc': 8006, ...}, '127.0.0.1' -> ['127.0.0.1:8006:8006', ...] in the container's port order."""
    unknown = sorted(set(ports) - set(CONTAINER_PORTS))
    if unknown:
        raise AnsibleFilterError("unknown port name(s) %s in waa_ports; allowed: %s"
                                 % (", ".join(unknown), ", ".join(CONTAINER_PORTS)))
    published = []
    for name, container_port in CONTAINER_PORTS.items():
        if name in ports:
            published.append("%s:%d:%d" % (address, int(ports[name]), container_port))
    return published


def waa_container_env(base, extra):
    """The container's environment: base settings overlaid with extra, every value a string."""
    merged = dict(base)
    merged.update(extra or {})
    return dict((str(k), _flag_value(v)) for k, v in merged.items())


def waa_config_fingerprint(spec):
    """The container description's fingerprint: the label the probe compares (waa_container_config)."""
    try:
        return waa_container_config.fingerprint(spec)
    except ValueError as err:
        raise AnsibleFilterError(str(err))


class FilterModule(object):
    def filters(self):
        return {
            "waa_entry_args": waa_entry_args,
            "waa_published_ports": waa_published_ports,
            "waa_container_env": waa_container_env,
            "waa_config_fingerprint": waa_config_fingerprint,
        }
