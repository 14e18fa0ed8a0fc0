# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja tests that validate role inputs: the one place each input pattern is written.

Roles assert with these in their validate.yml before touching a host, e.g.
``waa_ram_size is openadapt.waa.waa_size``.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

SIZE = re.compile(r"^[1-9][0-9]{0,4}[GMT]$")
CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
# [registry[:port]/]path[:tag][@sha256:digest]; a registry has a dot or a port, or is localhost;
# path components are lower case, as Docker requires.
IMAGE_REF = re.compile(
    r"^(?:(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+(?::[0-9]+)?|localhost(?::[0-9]+)?|[a-zA-Z0-9-]+:[0-9]+)/)?"  # registry/
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"  # path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"  # :tag @digest
)
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
WINDOWS_VERSIONS = ("11", "11e", "11l", "10", "10e", "10l", "2022", "2019", "2025")


def waa_size(value):
    """A RAM_SIZE / DISK_SIZE like 8G, 512M or 1T."""
    return isinstance(value, str) and bool(SIZE.match(value))


def waa_container_name(value):
    return isinstance(value, str) and bool(CONTAINER_NAME.match(value))


def waa_image_ref(value):
    return isinstance(value, str) and bool(IMAGE_REF.match(value))


def waa_digest(value):
    return isinstance(value, str) and (value == "" or bool(DIGEST.match(value)))


def waa_loopback(value):
    try:
        return ipaddress.ip_address(value).is_loopback
    except (ValueError, TypeError):
        return False


def waa_ip_address(value):
    try:
        ipaddress.ip_address(value)
        return True
    except (ValueError, TypeError):
        return False


def waa_windows_version(value):
    return str(value) in WINDOWS_VERSIONS


class TestModule(object):
    def tests(self):
        return {
            "waa_size": waa_size,
            "waa_container_name": waa_container_name,
            "waa_image_ref": waa_image_ref,
            "waa_digest": waa_digest,
            "waa_loopback": waa_loopback,
            "waa_ip_address": waa_ip_address,
            "waa_windows_version": waa_windows_version,
        }
