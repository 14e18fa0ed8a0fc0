# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether the running container is the one the inputs declare, without running the converge.

The declared container (roles/waa_common/vars/main.yml: `_waa_container_spec`, the exact values
the winarena_container role hands to community.docker.docker_container) is reduced to one
fingerprint here. The role writes it into the container's label LABEL when it creates the
container, so a change of any declared value changes the label that docker_container compares,
and docker_container recreates the container (/storage kept). The health probe reads the label
back and the image ID the container runs, so one engine round trip tells "ready and as declared":
such a host needs no converge at all (`up`'s fast path). A container somebody made by hand has no
label and always goes through the converge.

Standard library only: the probe runs on the target host; the filter
openadapt.waa.waa_config_fingerprint calls the same function on the controller.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json

from ansible_collections.openadapt.waa.plugins.module_utils.waa_docker_api import (
    DockerAPIError, DockerUnavailable)

LABEL = "io.openadapt.waa.config"
FINGERPRINT_CHARS = 16


def fingerprint(spec):
    """A short, stable digest of the declared container (any JSON-able mapping)."""
    if not isinstance(spec, dict):
        raise ValueError("the container description must be a mapping, got %s" % type(spec).__name__)
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:FINGERPRINT_CHARS]


def compare(details, expected, image_id):
    """(matches, reason) for the container layer's details against the declared fingerprint.

    `details`: the container layer's details (config_fingerprint = the label, image_id = the image
    the container runs); `image_id`: the ID the declared image reference names now (None when the
    engine does not have it)."""
    if not details.get("exists"):
        return False, "the container does not exist"
    found = details.get("config_fingerprint")
    if not found:
        return False, "the container carries no %s label (not made by this collection)" % LABEL
    if found != expected:
        return False, "the declared configuration changed (label %s, declared %s)" % (found, expected)
    if image_id is None:
        return False, "the declared image is not on the host"
    if details.get("image_id") != image_id:
        return False, "the declared image now names another image than the container runs"
    return True, "the container is as declared"


def container_details(report):
    """The container layer's details of a probe report ({} when that layer did not run)."""
    for layer in report.get("layers") or []:
        if layer.get("layer") == "container":
            return layer.get("details") or {}
    return {}


def check(client, report, expected, timeout=5.0):
    """{exists, matches, reason, fingerprint, declared} of the probed container against `expected`
    ({fingerprint, image}); the image's ID is asked of the engine only when the label matches."""
    details = container_details(report)
    result = {"exists": bool(details.get("exists")), "fingerprint": details.get("config_fingerprint"),
              "declared": expected["fingerprint"]}
    image_id = None
    if details.get("exists") and details.get("config_fingerprint") == expected["fingerprint"]:
        try:
            image = client.inspect_image(expected["image"], timeout=timeout)
        except (DockerUnavailable, DockerAPIError, ValueError) as err:
            result.update(matches=False, reason="cannot inspect the declared image %s: %s" % (expected["image"], err))
            return result
        image_id = image.get("Id") if isinstance(image, dict) else None
    result["matches"], result["reason"] = compare(details, expected["fingerprint"], image_id)
    return result


def start_if_stopped(client, name, report, timeout=30.0, check_mode=False):
    """Start the probed container when it is as declared but not running (up's shortcut around a
    converge: nothing to recreate, only to start). Returns {started, reason} or None when not applicable."""
    details = container_details(report)
    config = report.get("config") or {}
    if not config.get("matches") or details.get("running") or details.get("restarting"):
        return None
    if check_mode:
        return {"started": False, "would_start": True, "reason": "check mode"}
    try:
        started = client.start_container(name, timeout=timeout)
    except (DockerUnavailable, DockerAPIError, ValueError) as err:
        return {"started": False, "reason": "the engine did not start it: %s" % err}
    return {"started": started, "reason": "started the stopped container" if started else "it already ran"}
