#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: waa_image_progress
short_description: Report a running WAA image pull, keep its worker alive, and return its result
version_added: "0.1.0"
description:
  - Reads the progress file that the pull worker of M(openadapt.waa.waa_image) (O(openadapt.waa.waa_image#module:background=true))
    writes, so a task with C(until) can show bytes and layers while the pull runs.
  - Each call renews the worker's lease for O(lease) seconds. A worker whose lease runs out
    (nobody polls, because the controller was killed or the run cancelled) stops the pull and exits, so a
    cancelled run leaves no process behind on the host.
  - When the pull is done, returns its result (present, image_id, source, pull_attempts), or fails
    with the pull's verdict (exit code 3, image_pull). A worker that died without a result is a
    failure too.
  - Each retry of such a task carries C(pull_progress) in its result, which C(waa-run) shows
    as a live progress line with an ETA.
author:
  - openadapt.waa contributors (@openadapt)
options:
  progress_file:
    description: The file given to M(openadapt.waa.waa_image) as O(openadapt.waa.waa_image#module:progress_file).
    type: path
    required: true
  lease:
    description:
      - Seconds the worker may go on without the next call of this module. 0 reads only (renews nothing).
      - Make it comfortably longer than the delay between polls.
    type: int
    default: 60
  fail_on_error:
    description: Fail when the finished pull failed (the role's use). False only reports it.
    type: bool
    default: true
notes:
  - Supports check mode (reads only; renews nothing).
"""

EXAMPLES = r"""
- name: Show pull progress until the pull is done
  openadapt.waa.waa_image_progress:
    progress_file: /tmp/waa-pull.json
    lease: 60
  register: pull
  until: pull.done | default(true) | bool
  retries: 720
  delay: 5
"""

RETURN = r"""
done:
  description: Whether the pull finished (successfully or not).
  returned: always
  type: bool
present:
  description: Whether the image is present (when done).
  returned: always
  type: bool
image_id:
  description: The image's ID when the pull succeeded.
  returned: when done and present
  type: str
source:
  description: The reference the image came from (the primary name or the fallback reference).
  returned: when done
  type: str
pull_attempts:
  description: Pull attempts made.
  returned: when done
  type: int
pull_progress:
  description: image, source, attempt, bytes_done, bytes_total, layers_done, layers_total, status, elapsed_s, failed, progress.
  returned: always
  type: dict
progress:
  description:
    - What the pull saw of progress, in the shape of M(openadapt.waa.waa_health_probe)'s C(progress) -
      C(stalled), C(stall_timeout_s), C(last_progress_s_ago), C(where) (V(pull)), C(signals) (bytes and layers).
    - "A stalled pull fails with C(stalled at pull for S s (N bytes of M): ...); one that the hard cap ended
      while bytes still came with C(still progressing at the cap (deadline X s; last progress N s ago: ...))."
  returned: when the pull worker reported it
  type: dict
msg:
  description: One progress line, e.g. C(pulling 1.2/14.0 GB, 3/12 layers).
  returned: always
  type: str
waa_verdict:
  description: The verdict of a failed pull (exit code 3, image_pull).
  returned: on failure
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes
from ansible_collections.openadapt.waa.plugins.module_utils.waa_image_pull import (
    failure_hint, read_progress, worker_alive, write_lease,
)

RESULT_FIELDS = ("present", "image_id", "source", "pull_attempts", "errors")


def progress_line(snapshot):
    if not snapshot:
        return "pull starting"
    if snapshot.get("status") == "present":
        return "image present"
    gb = 1024.0 ** 3
    return "pulling %.2f/%.2f GB, %d/%d layers (attempt %s, %s)" % (
        snapshot.get("bytes_done", 0) / gb, snapshot.get("bytes_total", 0) / gb,
        snapshot.get("layers_done", 0), snapshot.get("layers_total", 0),
        snapshot.get("attempt", 0), snapshot.get("status", ""))


def main():
    module = AnsibleModule(argument_spec=dict(progress_file=dict(type="path", required=True),
                                              lease=dict(type="int", default=60),
                                              fail_on_error=dict(type="bool", default=True)),
                           supports_check_mode=True)
    p = module.params
    snapshot = read_progress(p["progress_file"]) or {}
    done = bool(snapshot.get("done"))
    if not done and snapshot.get("worker_pid") and not worker_alive(snapshot):
        # killed from outside (OOM killer, kill -9): it could not write its result
        reread = read_progress(p["progress_file"]) or {}
        if reread.get("done"):
            snapshot, done = reread, True
        else:
            snapshot = dict(snapshot, done=True, present=False,
                            failed="the pull worker (pid %s) ended without a result" % snapshot.get("worker_pid"))
            done = True
    elif not done and p["lease"] > 0 and not module.check_mode and snapshot.get("lease_file"):
        write_lease(snapshot["lease_file"], p["lease"])
    result = dict(changed=False, done=done, pull_progress=snapshot, msg=progress_line(snapshot),
                  present=bool(snapshot.get("present")))
    if snapshot.get("progress"):
        result["progress"] = snapshot["progress"]
    if done:
        for key in RESULT_FIELDS:
            if key in snapshot:
                result[key] = snapshot[key]
        result["changed"] = bool(snapshot.get("changed"))
        if snapshot.get("failed") or not snapshot.get("present"):
            image = snapshot.get("image") or "?"
            message = "image %s: %s" % (image, snapshot.get("failed") or "the pull failed")
            result["msg"] = message
            if p["fail_on_error"]:
                hint = failure_hint(snapshot, codes.describe(codes.IMAGE_PULL).hint)
                module.fail_json(exit_code=codes.IMAGE_PULL, hint=hint,
                                 waa_verdict=codes.verdict("image_pull", message, step="winarena_image", hint=hint),
                                 **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
