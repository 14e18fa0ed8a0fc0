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
  - With O(background=true) (what the role uses) the pull runs in a detached worker process on
    the host and the task returns at once; M(openadapt.waa.waa_image_progress) then reports its
    progress, renews its lease, and returns the final result. The credentials reach the worker
    through a pipe and live only in its memory; the worker stops the pull and exits when its lease
    is not renewed (controller killed, run cancelled) or at O(pull_timeout).
  - Notices a stalled pull (no new bytes for O(stall_timeout) seconds), aborts that attempt and
    retries with exponential backoff; after O(retries) attempts on the primary registry it tries
    O(fallback_registry) (e.g. an Azure Container Registry mirror in the VM's region) and tags
    the result with the primary name.
  - Talks to the engine API on its Unix socket; needs no Docker SDK and no CLI.
author:
  - openadapt.waa contributors (@openadapt)
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
    description:
      - User for the registry the image reference names (Docker Hub when it names none).
      - Sent to that registry only, never to O(fallback_registry).
    type: str
    default: ""
  registry_password:
    description: Password or token of O(registry_username), for that registry only. Never logged.
    type: str
    default: ""
  fallback_registry_username:
    description: User for O(fallback_registry), sent to that registry only. Empty pulls from it anonymously.
    type: str
    default: ""
  fallback_registry_password:
    description: Password or token of O(fallback_registry_username), for O(fallback_registry) only. Never logged.
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
    description:
      - File to write pull progress to (JSON), read by M(openadapt.waa.waa_image_progress).
        Required with O(background=true); its lease lives next to it (C(<progress_file>.lease)).
    type: path
  background:
    description:
      - Start the pull in a detached worker and return at once (C(started=true)); the result comes
        from M(openadapt.waa.waa_image_progress). False pulls within this task.
    type: bool
    default: false
  pull_timeout:
    description: With O(background=true), hard cap of the whole pull in seconds (all attempts and registries).
    type: int
    default: 3600
  first_poll_grace:
    description:
      - With O(background=true), seconds the worker waits for the first lease renewal before it
        counts as abandoned. After that each M(openadapt.waa.waa_image_progress) call renews the
        lease for its own O(openadapt.waa.waa_image_progress#module:lease) seconds.
    type: int
    default: 600
  docker_host:
    description: Path of the engine's Unix socket.
    type: path
    default: /var/run/docker.sock
notes:
  - Supports check mode (reports that a pull would happen, pulls nothing).
  - The passwords are C(no_log) and are sent only in the C(X-Registry-Auth) header of the pull
    from their own registry. Run the task with pipelining (the role sets C(ansible_pipelining))
    so that no module file holding them is ever written on the host.
"""

EXAMPLES = r"""
- name: Start the pull in the background
  openadapt.waa.waa_image:
    name: windowsarena/winarena:latest
    fallback_registry: myacr.azurecr.io
    fallback_registry_username: "{{ acr_user }}"
    fallback_registry_password: "{{ acr_token }}"
    progress_file: /tmp/waa-pull.json
    background: true
  vars:
    ansible_pipelining: true
  no_log: true
  register: pull_start

- name: Pull progress until done (fails with the pull's verdict)
  openadapt.waa.waa_image_progress:
    progress_file: /tmp/waa-pull.json
  register: pull
  until: pull.done | default(true) | bool
  retries: 720
  delay: 5
  when: pull_start.started | default(false)
"""

RETURN = r"""
present:
  description: Whether the image is present after the module ran (or already was, with O(check_only)).
  returned: always
  type: bool
started:
  description: With O(background=true), whether a pull worker runs for this image now (the image was missing).
  returned: always
  type: bool
joined:
  description:
    - Whether a worker already pulling this image on this engine was joined instead of starting a
      second one (another run pulls it for another container, or an abandoned run's worker).
  returned: when started
  type: bool
worker_pid:
  description: The pull worker's process id on the host.
  returned: when a worker was started
  type: int
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
  description: Last progress snapshot (bytes_done, bytes_total, layers_done, layers_total, status, progress).
  returned: when a pull ran
  type: dict
progress:
  description:
    - What the pull saw of progress, in the shape of M(openadapt.waa.waa_health_probe)'s C(progress) -
      C(stalled) (a stall ended the last attempt), C(stall_timeout_s), C(last_progress_s_ago), C(where) (V(pull))
      and C(signals) (C(bytes_done), C(bytes_total), C(layers_done), C(layers_total)).
    - "A stalled pull's message reads C(stalled at pull for S s (N bytes of M): ...); a pull the hard cap
      O(pull_timeout) ended while bytes still came reads C(still progressing at the cap (deadline X s; ...))."
  returned: when a pull ran in the foreground
  type: dict
exit_code:
  description: 3 (image pull) or 2 (engine) on failure, as in waa-run's exit code table.
  returned: on failure
  type: int
waa_verdict:
  description: The structured verdict of a failure (exit_code, exit_name, step, message, hint, ...).
  returned: on failure
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openadapt.waa.plugins.module_utils import waa_docker_api as docker_api
from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_image_pull import (
    PullError, failure_hint, inspect_image, lease_path, pull_sources, read_progress, run_pull, spawn_worker,
    worker_alive, write_lease, write_progress,
)

STEP = "winarena_image"


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
            fallback_registry_username=dict(type="str", default=""),
            fallback_registry_password=dict(type="str", default="", no_log=True),
            stall_timeout=dict(type="int", default=120),
            retries=dict(type="int", default=3),
            backoff_initial=dict(type="float", default=5),
            progress_file=dict(type="path"),
            background=dict(type="bool", default=False),
            pull_timeout=dict(type="int", default=3600),
            first_poll_grace=dict(type="int", default=600),
            docker_host=dict(type="path", default="/var/run/docker.sock"),
        ),
        required_if=[("background", True, ("progress_file",))],
        supports_check_mode=True,
    )
    p = module.params
    reference = p["name"] + ("@" + p["digest"] if p["digest"] else "")
    client = docker_api.DockerClient(p["docker_host"])
    result = dict(changed=False, image=reference, source="local", pull_attempts=0, present=False, started=False)

    def fail(code, message, **extra):
        result.update(extra)
        text = "image %s: %s" % (reference, message)
        hint = failure_hint(result.get("pull_progress"), codes.describe(codes.code_of(code)).hint)
        module.fail_json(msg=text, exit_code=codes.code_of(code), hint=hint,
                         waa_verdict=codes.verdict(code, text, step=STEP, hint=hint), **result)

    try:
        found = inspect_image(client, reference)
    except (PullError, docker_api.DockerUnavailable, docker_api.DockerAPIError, ValueError) as err:
        fail("docker_daemon", "the Docker engine does not answer at %s: %s" % (p["docker_host"], err))
    if found:
        result.update(present=True, image_id=found.get("Id"))
        write_progress(p["progress_file"], {"image": reference, "done": True, "failed": None, "status": "present",
                                            "bytes_done": 0, "bytes_total": 0, "layers_done": 0,
                                            "layers_total": 0, "attempt": 0, "source": "local", "present": True,
                                            "image_id": found.get("Id"), "pull_attempts": 0, "changed": False})
        module.exit_json(**result)
    if p["check_only"]:
        module.exit_json(**result)
    if p["pull"] == "never":
        fail("image_pull", "not present and pulling is off (waa_image_pull: false); load or pull it first")
    if module.check_mode:
        result.update(changed=True)
        module.exit_json(**result)

    job = {
        "image": reference, "name": p["name"], "stall_timeout": p["stall_timeout"], "retries": p["retries"],
        "backoff_initial": p["backoff_initial"], "docker_host": p["docker_host"], "timeout": p["pull_timeout"],
        "sources": pull_sources(reference, p["registry_username"], p["registry_password"], p["fallback_registry"],
                                p["fallback_registry_username"], p["fallback_registry_password"]),
    }
    if p["background"]:
        progress_file = p["progress_file"]
        previous = read_progress(progress_file)
        if previous and not previous.get("done") and worker_alive(previous):
            # Another run pulls this very image on this engine right now (another container of the
            # same host), or an abandoned run's worker still does: join it rather than pull twice.
            if previous.get("lease_file"):
                write_lease(previous["lease_file"], max(p["first_poll_grace"], 1))
            result.update(started=True, joined=True, worker_pid=previous.get("worker_pid"), pull_progress=previous)
            module.exit_json(**result)
        job.update(progress_file=progress_file, lease_file=lease_path(progress_file))
        try:
            os_remove(progress_file)
            write_lease(job["lease_file"], max(p["first_poll_grace"], 1))
            first = spawn_worker(job)
        except (PullError, IOError, OSError) as err:
            fail("image_pull", "could not start the pull: %s" % err)
        result.update(started=True, joined=False, worker_pid=first.get("worker_pid"), pull_progress=first)
        module.exit_json(**result)

    final = run_pull(job, client, lambda snapshot: write_progress(p["progress_file"], snapshot))
    job.clear()
    write_progress(p["progress_file"], final)
    result.update(pull_attempts=final.get("pull_attempts", 0), pull_progress=final, errors=final.get("errors", []),
                  progress=final.get("progress"))
    if not final.get("present"):
        fail("image_pull", final.get("failed") or "the pull failed")
    result.update(changed=True, present=True, source=final.get("source"), image_id=final.get("image_id"))
    module.exit_json(**result)


def os_remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


if __name__ == "__main__":
    main()
