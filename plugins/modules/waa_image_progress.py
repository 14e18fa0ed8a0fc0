#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: waa_image_progress
short_description: Read the progress of a running WAA image pull
version_added: "0.1.0"
description:
  - Reads the progress file that M(openadapt.waa.waa_image) writes while it pulls
    asynchronously, so a task with C(until) can show bytes and layers while the pull runs.
  - Each retry of such a task carries C(pull_progress) in its result, which C(waa-run) shows
    as a live progress line with an ETA.
author:
  - openadapt.waa contributors
options:
  progress_file:
    description: The file given to M(openadapt.waa.waa_image) as O(openadapt.waa.waa_image#module:progress_file).
    type: path
    required: true
notes:
  - Read-only; supports check mode.
"""

EXAMPLES = r"""
- name: Show pull progress until the pull is done
  openadapt.waa.waa_image_progress:
    progress_file: /tmp/waa-pull.json
  register: pull
  until: pull.done
  retries: 720
  delay: 5
"""

RETURN = r"""
done:
  description: Whether the pull finished (successfully or not).
  returned: always
  type: bool
pull_progress:
  description: image, source, attempt, bytes_done, bytes_total, layers_done, layers_total, status, elapsed_s, failed.
  returned: always
  type: dict
msg:
  description: One progress line, e.g. C(pulling 1.2/14.0 GB, 3/12 layers).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openadapt.waa.plugins.module_utils.waa_image_pull import read_progress


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
    module = AnsibleModule(argument_spec=dict(progress_file=dict(type="path", required=True)),
                           supports_check_mode=True)
    snapshot = read_progress(module.params["progress_file"])
    module.exit_json(changed=False, done=bool(snapshot and snapshot.get("done")), pull_progress=snapshot or {},
                     msg=progress_line(snapshot))


if __name__ == "__main__":
    main()
