# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate every input of the collection once per host, before anything changes, on the controller.

The inputs are described once: type, default, choices, sub-options and description in the roles'
meta/argument_specs.yml (shared ones in roles/waa_common), the playbooks' own switches in
module_utils/waa_inputs.PLAYBOOK_OPTIONS, and what a spec cannot say (ranges, patterns, paths) in
waa_inputs.RULES. A bad value fails the host with the verdict `usage` (exit 64) naming the
variable, the value and what is allowed; a variable named waa_* that the collection does not know
is refused with the closest known name.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import os

import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.openadapt.waa.plugins.module_utils import waa_inputs as inputs
from ansible_collections.openadapt.waa.plugins.module_utils.waa_exit_codes import USAGE, VERDICT_KEY, verdict

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_ROLE = "waa_common"
SPEC_KEYS = ("type", "elements", "choices", "default", "options", "required", "no_log")
_SPECS = {}


def role_specs():
    """{role: {entry point: {option: spec}}} from every role's meta/argument_specs.yml (read once per process)."""
    if not _SPECS:
        roles_dir = os.path.join(COLLECTION_ROOT, "roles")
        for role in sorted(os.listdir(roles_dir)):
            path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
            if os.path.isfile(path):
                with open(path) as handle:
                    data = yaml.safe_load(handle) or {}
                _SPECS[role] = dict((entry, (body or {}).get("options") or {})
                                    for entry, body in (data.get("argument_specs") or {}).items())
    return _SPECS


def _validator_spec(spec):
    """An argument spec for ArgumentSpecValidator: only the keys it knows, recursively."""
    out = dict((key, spec[key]) for key in SPEC_KEYS if key in spec and key != "options")
    if spec.get("options"):
        out["options"] = dict((name, _validator_spec(sub)) for name, sub in spec["options"].items())
    return out


def options_for(roles):
    """The options a play uses: the shared inputs, the named roles' main entry points, the playbooks' switches."""
    specs = role_specs()
    wanted = {}
    for entries in [specs.get(SHARED_ROLE, {})] + [specs.get(role, {}) for role in roles]:
        for entry, options in entries.items():
            if entry in ("main", "shared"):
                wanted.update(options)
    wanted.update(inputs.PLAYBOOK_OPTIONS)
    return wanted


def known_names():
    names = set(inputs.PLAYBOOK_OPTIONS) | set(inputs.SET_BY_THE_COLLECTION)
    for entries in role_specs().values():
        for options in entries.values():
            names.update(options)
    return names


def _show(value):
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def closest(name, known):
    """The known name meant: one that ends like it (waa_stop_timeout -> waa_container_stop_timeout), else the nearest."""
    tail = name[len("waa_"):]
    ending = sorted((k for k in known if k.endswith("_" + tail)), key=len)
    return ending[:1] or difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)


def validate(values, roles, defined):
    """Problems ('name=value: allowed ...') of the values given for the options of `roles`.

    values: {name: value} of the variables that are set; defined: every variable name set for the
    host (to find unknown waa_* names)."""
    wanted = options_for(roles)
    problems, checked = [], {}
    for name, spec in sorted(wanted.items()):
        params = {name: values[name]} if name in values else {}
        try:
            result = ArgumentSpecValidator({name: _validator_spec(spec)}).validate(params)
            errors = list(result.error_messages)
        except Exception:  # a value of the wrong shape can trip the validator itself (a list for a dict)
            errors = ["must be a %s%s" % (spec.get("type", "str"), " of %s" % spec["elements"] if spec.get("elements")
                                          else "")]
        if errors:
            detail = "; ".join(message.replace(" found in %s" % name, "") for message in errors)
            shown = _show(values.get(name))
            problems.append("%s=%s: %s" % (name, shown, detail))
            continue
        checked[name] = result.validated_parameters.get(name)
    for name, value, allowed in inputs.check_rules(checked) + inputs.cross_checks(checked):
        problems.append("%s=%s: must be %s" % (name, _show(value), allowed))
    known = known_names()
    for name in sorted(defined):
        if name.startswith("waa_") and name not in known:
            close = closest(name, known)
            problems.append("%s: not a variable of openadapt.waa%s" % (
                name, " (did you mean %s?)" % close[0] if close else ""))
    return problems


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("roles",))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        roles = self._task.args.get("roles") or []
        defined = [name for name in task_vars if isinstance(name, str) and name.startswith("waa_")]
        values, problems = {}, []
        for name in defined:
            try:
                values[name] = self._templar.template(task_vars[name])
            except Exception as err:  # an undefined variable inside a value, a bad template
                problems.append("%s: cannot be resolved: %s" % (name, str(err).splitlines()[0]))
        problems += validate(values, roles, defined)
        if problems:
            message = "invalid input (%d): %s" % (len(problems), " | ".join(problems))
            result.update(failed=True, changed=False, msg=message, problems=problems)
            result[VERDICT_KEY] = verdict(
                USAGE, message, step="validate", failure_class="permanent",
                hint="fix the named variables (ansible-doc -t role openadapt.waa.<role> lists them); nothing was changed")
            return result
        result.update(changed=False, msg="every input is valid")
        return result
