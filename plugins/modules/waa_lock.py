#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: waa_lock
short_description: Take, renew or release a WAA host's lock (one run per container, whoever starts it)
version_added: "0.1.0"
description:
  - Keeps two runs off the same container on the same host, whatever controller, inventory
    spelling, C(--limit) pattern or state directory they come from. The lock is a lease file on
    the host, C(<lock_dir>/<name>.lock), holding the run id, what runs, the controller and an expiry.
  - A lease is taken over (never blocks) when it expired, when the host rebooted since it was
    taken, when its holder ran on this machine and that process is gone, or, with O(takeover_own),
    when it belongs to another run of the same controller (waa-run holds a controller-side lock
    per host, so such a lease is left by a killed run).
  - A live holder makes O(state=acquired) wait up to O(wait) seconds, then fail with exit code 12
    (C(busy)) and a verdict naming the holder.
author:
  - openadapt.waa contributors (@openadapt)
options:
  name:
    description: What the lock protects, normally the container's name (C(winarena)).
    type: str
    default: winarena
  state:
    description: C(acquired) takes (or re-takes) the lease; C(renewed) extends ours; C(released) drops ours.
    type: str
    choices: [acquired, renewed, released]
    default: acquired
  owner:
    description:
      - Who holds it. C(run_id) (required; the same for every task of one run), C(what)
        (e.g. C(waa-run up)), C(controller) (a name for the controller), C(pid) (the controller
        process), C(boot_id) and C(pidns) (the controller's boot and pid namespace; when they match
        the host's, a dead C(pid) frees the lock at once).
      - Without C(pid), the module records the ansible-playbook process above it when there is one
        on this machine (local connection).
    type: dict
    required: true
  ttl:
    description: Seconds the lease holds without renewal.
    type: int
    default: 7200
  wait:
    description: Seconds to wait for a live holder before failing busy.
    type: float
    default: 0
  takeover_own:
    description: Treat a lease of the same C(controller) in O(owner) (another run id) as stale.
    type: bool
    default: false
  lock_dir:
    description: Directory of the lock files (a tmpfs such as /run/lock, so a reboot frees every lock).
    type: path
    default: /run/lock/openadapt-waa
notes:
  - Supports check mode (reports whether the lock could be taken; takes nothing).
"""

EXAMPLES = r"""
- name: Hold this host's container for the run
  openadapt.waa.waa_lock:
    name: "{{ waa_container_name }}"
    owner:
      run_id: "{{ waa_lock_run_id }}"
      what: "ansible-playbook up"
      controller: "{{ lookup('ansible.builtin.pipe', 'hostname') }}"
    wait: 0

- name: Let the next run in
  openadapt.waa.waa_lock:
    name: "{{ waa_container_name }}"
    state: released
    owner:
      run_id: "{{ waa_lock_run_id }}"
"""

RETURN = r"""
holder:
  description: The lease record now in place (ours after acquired/renewed), or the live holder when busy.
  returned: always
  type: dict
took_over:
  description: The stale lease that was replaced, with the reason (C(stale)), when there was one.
  returned: when a stale lease was taken over
  type: dict
waited:
  description: Whether the module waited for another run.
  returned: with state=acquired
  type: bool
exit_code:
  description: 12 (busy) when another run holds the lock.
  returned: on failure
  type: int
waa_verdict:
  description: The structured verdict of a failure.
  returned: on failure
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.openadapt.waa.plugins.module_utils import _waa_lock as lock
from ansible_collections.openadapt.waa.plugins.module_utils import waa_exit_codes as codes


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", default="winarena"),
            state=dict(type="str", choices=["acquired", "renewed", "released"], default="acquired"),
            owner=dict(type="dict", required=True),
            ttl=dict(type="int", default=7200),
            wait=dict(type="float", default=0),
            takeover_own=dict(type="bool", default=False),
            lock_dir=dict(type="path", default=lock.DEFAULT_DIR),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        owner = lock.run_owner(p["owner"])
        if module.check_mode:
            host_lock = lock.HostLock(p["name"], p["lock_dir"])
            holder = host_lock.read()
            busy = holder is not None and holder.get("run_id") != owner["run_id"] and \
                lock.stale_reason(holder, owner, takeover_own=p["takeover_own"]) is None
            module.exit_json(changed=not busy and p["state"] == "acquired", holder=holder or {}, busy=busy)
        if p["state"] == "released":
            module.exit_json(changed=lock.HostLock(p["name"], p["lock_dir"]).release(owner), holder={})
        if p["state"] == "renewed":
            host_lock = lock.HostLock(p["name"], p["lock_dir"])
            host_lock.renew(owner, p["ttl"])
            module.exit_json(changed=False, holder=host_lock.read())
        _host_lock, result = lock.take(p["name"], owner, p["ttl"], wait_s=p["wait"], takeover_own=p["takeover_own"],
                                       directory=p["lock_dir"])
    except lock.LockFailure as failure:
        module.fail_json(msg=failure.message, holder=failure.holder, exit_code=failure.exit_code,
                         waa_verdict=failure.verdict)
    except (lock.LockError, IOError, OSError) as err:
        message = "the lock of %s cannot be used: %s" % (p["name"], err)
        module.fail_json(msg=message, waa_verdict=codes.verdict("unknown", message, step="lock"))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
