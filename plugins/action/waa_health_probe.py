# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side of openadapt.waa.waa_health_probe: run the module on the host, then publish
its verdict in the custom stats when asked (`publish`), so a probe that is a host's last step
needs no second task to reach the AWX job artifacts.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.openadapt.waa.plugins.module_utils.waa_exit_codes import VERDICT_KEY, published


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result = merge_hash(result, self._execute_module(
            module_name="openadapt.waa.waa_health_probe", module_args=self._task.args, task_vars=task_vars,
            wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        publish = self._task.args.get("publish", "never")
        found = result.get(VERDICT_KEY)
        if isinstance(found, dict) and not result.get("failed") and (
                publish == "always" or (publish == "when_up_to_date" and result.get("up_to_date"))):
            result["ansible_stats"] = published((task_vars or {}).get("inventory_hostname", ""), found)
        return result
