#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: waa_validate
short_description: Validate every input of openadapt.waa for a host before anything changes, on the controller
version_added: "0.1.0"
description:
  - Checks every variable the named roles and the playbooks take - its type, choices and
    sub-options (the roles' C(meta/argument_specs.yml), the shared inputs of C(openadapt.waa.waa_common))
    and its rule (ranges, patterns, absolute paths off /mnt, no shell metacharacters in entry.sh
    flags, no C(RAM_SIZE) around its validation; C(plugins/module_utils/waa_inputs.py)).
  - Refuses any variable named C(waa_*) that the collection does not know, with the closest known
    name ("did you mean waa_container_stop_timeout?").
  - A bad input fails the host with the verdict C(usage) (exit code 64) whose message names every
    bad variable, its value and what is allowed. The playbooks run it once per host, in a play of
    its own, before any host changes (C(openadapt.waa.validate)).
  - This is an action plugin; it runs on the controller and never connects to the host.
author:
  - openadapt.waa contributors (@openadapt)
options:
  roles:
    description: The roles whose inputs to check (their C(main) entry points), besides the shared inputs and the playbooks' switches.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Runs in check mode as it does otherwise (it changes nothing).
  diff_mode:
    support: none
    description: Returns no diff.
"""

EXAMPLES = r"""
- name: Validate the inputs of the roles this play uses
  openadapt.waa.waa_validate:
    roles: [winarena_container, waa_health]
"""

RETURN = r"""
problems:
  description: One line per bad input - C(name=value - what is allowed).
  returned: failure
  type: list
  elements: str
  sample: ["waa_cpu_cores=65: must be a number from 1 to 64"]
waa_verdict:
  description: The verdict (exit code 64, usage) when an input is bad.
  returned: failure
  type: dict
"""
