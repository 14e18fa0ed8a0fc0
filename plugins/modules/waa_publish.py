#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: waa_publish
short_description: Publish a host's verdict in the run's custom stats (set_stats) for AWX/AAP job artifacts
version_added: "0.1.0"
description:
  - Adds the host's verdict (exit_code, exit_name, step, layer, failure_class, message, hint) to the
    custom stats key C(waa_verdicts) (aggregated over hosts), which AWX/AAP show as job artifacts and
    ansible-runner writes to its artifacts - the same data C(waa-run) reduces and prints.
  - Give O(verdict) (a step's C(waa_verdict)) or O(result) (a failed task's result, such as
    C(ansible_failed_result) in a rescue; a failure that carries no verdict becomes exit code 9 with
    its own message).
  - This is an action plugin; it runs on the controller and never connects to the host.
author:
  - openadapt.waa contributors (@openadapt)
options:
  verdict:
    description: The verdict to publish.
    type: dict
  result:
    description: A task result to take the verdict from.
    type: dict
  step:
    description: The step to name when O(result) carries no verdict.
    type: str
attributes:
  check_mode:
    support: full
    description: Runs in check mode as it does otherwise (it changes nothing).
  diff_mode:
    support: none
    description: Returns no diff.
"""

EXAMPLES = r"""
- name: Publish the readiness verdict
  openadapt.waa.waa_publish:
    verdict: "{{ waa_health_report.waa_verdict }}"
"""

RETURN = r"""
waa_verdict:
  description: The verdict published.
  returned: always
  type: dict
"""
