# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: waa_summary
type: aggregate
short_description: One line per host at the end of a run - its status, exit code, layer, message and hint
version_added: "0.1.0"
description:
  - Prints, after the play recap of any C(ansible-playbook) run (or AWX/AAP job) of the
    openadapt.waa playbooks, the same one-line-per-host verdict that C(waa-run) prints, and the
    run's exit code by the collection's table (docs/exit-codes.md).
  - Reads the verdicts the collection hands over as data (the result key C(waa_verdict)), reduced by
    the same functions waa-run uses (module_utils/waa_exit_codes.py); a failure that carries no
    verdict is exit code 9 with its own message; an unreachable host is exit code 10.
  - Prints nothing for runs in which no task handed over a verdict.
author:
  - openadapt.waa contributors (@openadapt)
requirements:
  - enable it with C(callbacks_enabled = openadapt.waa.waa_summary) in ansible.cfg (the repository's
    ansible.cfg does) or C(ANSIBLE_CALLBACKS_ENABLED=openadapt.waa.waa_summary)
"""

from ansible.plugins.callback import CallbackBase

from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "openadapt.waa.waa_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.verdicts = {}  # host -> (verdict, is_failure)
        self.saw_verdict = False

    def _observe(self, result, failed=False, unreachable=False):
        host = result._host.get_name()
        data = result._result if isinstance(result._result, dict) else {}
        if codes.verdict_in(data) is not None:
            self.saw_verdict = True
        role = getattr(result._task, "_role", None)
        step = role.get_name(include_role_fqcn=False) if role is not None else result._task.get_name()
        found = codes.verdict_of_result(data, failed=failed, unreachable=unreachable, step=step)
        if found is not None:
            self.verdicts[host] = (found, failed or unreachable)

    def v2_runner_on_ok(self, result):
        self._observe(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not ignore_errors:
            self._observe(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self._observe(result, unreachable=True)

    def v2_playbook_on_stats(self, stats):
        if not self.saw_verdict:
            return
        lines, exit_codes = [], []
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            found, is_failure = self.verdicts.get(host, (None, False))
            if found is not None and is_failure and not summary.get("failures") and not summary.get("unreachable"):
                found = None  # the play rescued that failure
            if found is None:
                continue
            exit_codes.append(found["exit_code"])
            lines.append(codes.host_line(host, found))
        if not lines:
            return
        overall = codes.overall(exit_codes)
        row = codes.describe(overall)
        self._display.banner("OPENADAPT.WAA VERDICTS")
        for line in lines:
            self._display.display(line)
        self._display.display("exit %d (%s): %s" % (overall, row.name, row.summary))
