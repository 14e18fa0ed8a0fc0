# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Publish a host's verdict as custom stats (set_stats), so AWX/AAP job artifacts and
ansible-runner's artifacts hold the same per-host verdict that waa-run prints.

Given `verdict` (the probe's or a step's waa_verdict) or `result` (a failed task's result, e.g.
ansible_failed_result in a rescue), it reduces it with the collection's one function
(waa_exit_codes.verdict_of_result) and returns it under waa_verdict too, for the task after it.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase

from ansible_collections.openadapt.waa.plugins.module_utils.waa_exit_codes import (
    UNKNOWN, VERDICT_KEY, published, verdict, verdict_in, verdict_of_result)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("verdict", "result", "step"))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = self._task.args
        found = verdict_in({VERDICT_KEY: args.get("verdict")})
        if found is None and isinstance(args.get("result"), dict):
            found = verdict_of_result(args["result"], failed=True, step=args.get("step"))
        if found is None:
            found = verdict(UNKNOWN, "no verdict was handed to waa_publish", step=args.get("step"))
        host = (task_vars or {}).get("inventory_hostname", "")
        result.update(changed=False, msg="%s: exit code %s" % (host, found["exit_code"]))
        result[VERDICT_KEY] = found
        result["ansible_stats"] = published(host, found)
        return result
