# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fail the host with a structured verdict (the collection's verdict contract).

Every fail site of the collection's roles and playbooks uses this instead of
`ansible.builtin.fail`, so the exit code, step, failure class and hint travel as data
(`waa_verdict`) to waa-run, the callback plugin and set_stats, and nothing has to be
guessed from role names, task names or message text.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.openadapt.waa.plugins.module_utils.waa_exit_codes import VERDICT_KEY, code_of, verdict, verdict_in


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("code", "message", "step", "layer", "failure_class", "hint", "details", "verdict"))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = self._task.args
        handed = verdict_in({VERDICT_KEY: args.get("verdict")})
        if handed is not None:  # fail again with a verdict found earlier (a rescue that published it)
            result.update(failed=True, changed=False, msg=handed.get("message") or "failed")
            result[VERDICT_KEY] = handed
            return result
        code = args.get("code")
        if code_of(code) is None:
            raise AnsibleActionFail("waa_fail: code=%r is not an exit code of the table (number or name)" % (code,))
        step = args.get("step")
        if not step and self._task._role is not None:
            step = self._task._role.get_name(include_role_fqcn=False)
        found = verdict(code, args.get("message"), step=step, layer=args.get("layer"),
                        failure_class=args.get("failure_class"), hint=args.get("hint"))
        result.update(failed=True, changed=False, msg=found["message"])
        result[VERDICT_KEY] = found
        if args.get("details"):
            result["details"] = args["details"]
        return result
