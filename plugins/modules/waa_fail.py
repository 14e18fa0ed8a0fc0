#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: waa_fail
short_description: Fail a host with a structured verdict (exit code, step, class, message, hint)
version_added: "0.1.0"
description:
  - Like M(ansible.builtin.fail), but the failure carries the collection's verdict as data under
    the result key C(waa_verdict) - the exit code of the one table (docs/exit-codes.md), its name,
    the step and layer, the failure class, a one-line message and a hint.
  - C(waa-run), the C(openadapt.waa.waa_summary) callback and C(set_stats) read that data; no exit
    code is inferred from role or task names or message text.
  - This is an action plugin; it runs on the controller and never connects to the host.
author:
  - openadapt.waa contributors (@openadapt)
options:
  code:
    description:
      - Exit code of the table, as its number (V(64)) or its name (V(usage), V(image_pull)).
      - Required unless O(verdict) is given.
    type: raw
  message:
    description:
      - One line that says what is wrong, naming the variable and value where there is one.
      - Required unless O(verdict) is given.
    type: str
  verdict:
    description: A whole verdict found earlier (e.g. by M(openadapt.waa.waa_publish) in a rescue); fail with it as it is.
    type: dict
  step:
    description: Where it happened (a role or playbook step). Defaults to the role the task belongs to.
    type: str
  layer:
    description: The health layer, when the failure is one.
    type: str
  failure_class:
    description: What may help.
    type: str
    choices: [permanent, recoverable, transient]
  hint:
    description: What to do. Defaults to the table's hint for the code.
    type: str
  details:
    description: Extra data for the report.
    type: dict
attributes:
  check_mode:
    support: full
    description: Runs in check mode as it does otherwise (it changes nothing).
  diff_mode:
    support: none
    description: Returns no diff.
notes:
  - The task always fails; guard it with C(when).
"""

EXAMPLES = r"""
- name: Refuse to pull when pulling is off
  openadapt.waa.waa_fail:
    code: image_pull
    message: "image {{ waa_image }} is not present and waa_image_pull is false"
    hint: load the image or set waa_image_pull=true
  when: not waa_image_pull
"""

RETURN = r"""
waa_verdict:
  description: The verdict (exit_code, exit_name, step, layer, failure_class, message, hint).
  returned: always
  type: dict
  sample: {exit_code: 3, exit_name: image_pull, step: winarena_image, layer: null, failure_class: null,
           message: "image windowsarena/winarena:latest is not present and waa_image_pull is false",
           hint: "load the image or set waa_image_pull=true"}
msg:
  description: The message.
  returned: always
  type: str
"""
