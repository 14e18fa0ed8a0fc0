#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: waa_image
short_description: Ensure the WAA image is present, pulling it with progress, stall detection and a fallback registry
version_added: "0.1.0"
description:
  - Ensures the Windows Agent Arena image is present in the host's Docker engine, at a tag or
    pinned to a digest. Pulls only when the image is missing.
  - While pulling, writes bytes and layers done to O(progress_file) so a second task (see
    M(openadapt.waa.waa_image_progress)) can show progress while this one runs asynchronously.
  - Notices a stalled pull (no new bytes for O(stall_timeout) seconds), aborts that attempt and
    retries with exponential backoff; after O(retries) attempts on the primary registry it tries
    O(fallback_registry) (e.g. an Azure Container Registry mirror in the VM's region) and tags
    the result with the primary name.
  - Talks to the engine API on its Unix socket; needs no Docker SDK and no CLI.
author:
  - openadapt.waa contributors
options:
  name:
    description: Image reference without digest, e.g. C(windowsarena/winarena:latest).
    type: str
    required: true
  digest:
    description: Pin to this digest (C(sha256:...)); the image is looked up and pulled by it.
    type: str
    default: ""
  pull:
    description: C(missing) pulls when the image is absent; C(never) fails when it is absent.
    type: str
    choices: [missing, never]
    default: missing
  check_only:
    description: Only report whether the image is present; never pull, never fail for a missing image.
    type: bool
    default: false
  fallback_registry:
    description: Registry holding the same repository path, tried after the primary one fails.
    type: str
    default: ""
  registry_username:
    description: User for the registries (the same for primary and fallback).
    type: str
    default: ""
  registry_password:
    description: Password or token for the registries. Never logged.
    type: str
    default: ""
  stall_timeout:
    description: Seconds without new bytes after which an attempt counts as stalled.
    type: int
    default: 120
  retries:
    description: Attempts per registry.
    type: int
    default: 3
  backoff_initial:
    description: First delay between attempts, in seconds (doubles, capped at 60, with jitter).
    type: float
    default: 5
  progress_file:
    description: File to write pull progress to (JSON), read by M(openadapt.waa.waa_image_progress).
    type: path
  docker_host:
    description: Path of the engine's Unix socket.
    type: path
    default: /var/run/docker.sock
notes:
  - Supports check mode (reports that a pull would happen, pulls nothing).
  - The registry password is declared C(no_log) and is sent only in the C(X-Registry-Auth) header.
"""

EXAMPLES = r"""
- name: Ensure the image, pulling with progress in the background
  openadapt.waa.waa_image:
    name: windowsarena/winarena:latest
    fallback_registry: myacr.azurecr.io
    registry_username: "{{ acr_user }}"
    registry_password: "{{ acr_token }}"
    progress_file: /tmp/waa-pull.json
  async: 3600
  poll: 0
  register: pull_job
"""

RETURN = r"""
present:
  description: Whether the image is present after the module ran (or already was, with O(check_only)).
  returned: always
  type: bool
image:
  description: The reference that was looked up (name or name@digest).
  returned: always
  type: str
image_id:
  description: The image's ID when present.
  returned: when present
  type: str
source:
  description: Where the image came from in this run (C(local), the primary name, or the fallback reference).
  returned: always
  type: str
pull_attempts:
  description: Pull attempts made (0 when nothing was pulled).
  returned: always
  type: int
pull_progress:
  description: Last progress snapshot (bytes_done, bytes_total, layers_done, layers_total, status).
  returned: when a pull ran
  type: dict
exit_code:
  description: 3 (image pull) on failure, as in waa-run's exit code table.
  returned: on failure
  type: int
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six.moves.urllib.parse import quote

from ansible_collections.openadapt.waa.plugins.module_utils import waa_docker_api as docker_api
from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_image_pull import (
    PullError, PullProgress, backoff_delays, pull_once, registry_auth_header, registry_of, split_reference,
    with_registry, write_progress,
)


def inspect_image(client, reference):
    status, _headers, body = client.request("GET", "/images/%s/json" % quote(reference, safe=""), timeout=30)
    if status == 404:
        return None
    if status != 200:
        raise PullError("inspecting %s: engine answered %s %s" % (reference, status, body[:200]))
    return docker_api.json_body(body)


def pull_messages(client, reference, auth, stall_timeout):
    repository, tag, digest = split_reference(reference)
    query = {"fromImage": repository, "tag": digest or tag or "latest"}
    headers = {"X-Registry-Auth": auth} if auth else None
    try:
        for message in client.stream_json("POST", "/images/create", query=query, headers=headers,
                                          timeout=stall_timeout, idle_timeout=stall_timeout):
            yield message
    except docker_api.StreamIdle:
        raise PullError("no data from the engine for %ds" % stall_timeout, stalled=True)
    except docker_api.DockerAPIError as err:
        raise PullError(str(err))


def tag_image(client, source_ref, target_ref):
    repository, tag, _digest = split_reference(target_ref)
    status, _h, body = client.request(
        "POST", "/images/%s/tag" % quote(source_ref, safe=""),
        query={"repo": repository, "tag": tag or "latest"}, timeout=30)
    if status not in (200, 201):
        raise PullError("tagging %s as %s: %s %s" % (source_ref, target_ref, status, body[:200]))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            digest=dict(type="str", default=""),
            pull=dict(type="str", choices=["missing", "never"], default="missing"),
            check_only=dict(type="bool", default=False),
            fallback_registry=dict(type="str", default=""),
            registry_username=dict(type="str", default=""),
            registry_password=dict(type="str", default="", no_log=True),
            stall_timeout=dict(type="int", default=120),
            retries=dict(type="int", default=3),
            backoff_initial=dict(type="float", default=5),
            progress_file=dict(type="path"),
            docker_host=dict(type="path", default="/var/run/docker.sock"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    reference = p["name"] + ("@" + p["digest"] if p["digest"] else "")
    client = docker_api.DockerClient(p["docker_host"])
    result = dict(changed=False, image=reference, source="local", pull_attempts=0, present=False)

    def fail(message, **extra):
        result.update(extra)
        module.fail_json(msg="image %s: %s" % (reference, message), exit_code=codes.IMAGE_PULL,
                         hint=codes.describe(codes.IMAGE_PULL).hint, **result)

    try:
        found = inspect_image(client, reference)
    except (PullError, docker_api.DockerUnavailable) as err:
        module.fail_json(msg="the Docker engine does not answer at %s: %s" % (p["docker_host"], err),
                         exit_code=codes.DOCKER_DAEMON, hint=codes.describe(codes.DOCKER_DAEMON).hint, **result)
    if found:
        result.update(present=True, image_id=found.get("Id"))
        write_progress(p["progress_file"], {"image": reference, "done": True, "failed": None, "status": "present",
                                            "bytes_done": 0, "bytes_total": 0, "layers_done": 0,
                                            "layers_total": 0, "attempt": 0, "source": "local"})
        module.exit_json(**result)
    if p["check_only"]:
        module.exit_json(**result)
    if p["pull"] == "never":
        fail("not present and pulling is off (waa_image_pull: false); load or pull it first")
    if module.check_mode:
        result.update(changed=True)
        module.exit_json(**result)

    sources = [reference]
    if p["fallback_registry"]:
        sources.append(with_registry(reference, p["fallback_registry"]))
    errors = []
    last_snapshot = None
    for source in sources:
        auth = registry_auth_header(p["registry_username"], p["registry_password"], registry_of(split_reference(source)[0]))
        delays = backoff_delays(p["backoff_initial"], 2.0, 60.0)
        for attempt in range(1, p["retries"] + 1):
            result["pull_attempts"] += 1
            progress = PullProgress(reference, source, result["pull_attempts"])
            try:
                pull_once(pull_messages(client, source, auth, p["stall_timeout"]), progress, p["stall_timeout"],
                          lambda snap: write_progress(p["progress_file"], snap))
                if not inspect_image(client, source):
                    raise PullError("the engine finished the pull but has no image %s" % source)
                if source != reference:
                    tag_image(client, source, p["name"])
                last_snapshot = progress.snapshot(done=True)
                write_progress(p["progress_file"], last_snapshot)
                found = inspect_image(client, reference) or inspect_image(client, source)
                result.update(changed=True, present=True, source=source, pull_progress=last_snapshot,
                              image_id=(found or {}).get("Id"))
                module.exit_json(**result)
            except (PullError, docker_api.DockerUnavailable) as err:
                stalled = getattr(err, "stalled", False)
                errors.append("%s attempt %d: %s%s" % (source, attempt, "stalled, " if stalled else "", err))
                last_snapshot = progress.snapshot(failed=str(err))
                write_progress(p["progress_file"], last_snapshot)
                if attempt < p["retries"]:
                    time.sleep(next(delays))
    write_progress(p["progress_file"], dict(last_snapshot or {}, done=True, failed=errors[-1] if errors else "failed"))
    fail("pull failed after %d attempts: %s" % (result["pull_attempts"], " | ".join(errors[-3:])),
         pull_progress=last_snapshot, errors=errors)


if __name__ == "__main__":
    main()
