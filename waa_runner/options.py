"""Every option of waa-run and of the Python API, described once.

Each Option says what it means (its help, shown by `waa-run --help` and in the API's docstrings),
which commands take it, how it is spelled on the command line, what values are allowed (checked
the same way for a flag and for a keyword argument), and which playbook variable it becomes. The
CLI (waa_runner.cli) builds its parsers from this table, the API (waa_runner.api) validates its
keyword arguments with it and turns them into extra variables with it: nothing is described twice,
as ansible-runner's `run` and `run_async` share one documented signature.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

TARGETED = frozenset({"vm_setup", "server_start", "up", "probe", "down", "status"})
WITH_IMAGE = frozenset({"vm_setup", "server_start", "up"})
WITH_HEALTH = frozenset({"vm_setup", "server_start", "up", "probe", "status"})
AZURE = frozenset({"provision", "teardown"})
ALL = TARGETED | AZURE

LIMIT_PATTERN = re.compile(r"^[A-Za-z0-9_.:*!&,\[\]@~^$()|?+/\-]+$")
POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# Commands (the API's functions; waa-run spells them with - for _): the playbook each runs, and what it does.
COMMANDS: dict[str, tuple[str, str]] = {
    "vm_setup": ("vm_setup", "set hosts up from scratch: preflight, engine, image, container, readiness"),
    "server_start": ("server_start", "start existing containers and wait until WAA is ready (exit code 4 where "
                                     "there is none)"),
    "up": ("up", "bring hosts to ready and to the declared configuration: vm-setup where the container is missing, "
                 "else converge and start it; then readiness"),
    "probe": ("probe", "read-only health report of every host; changes nothing"),
    "down": ("down", "stop the containers (the Windows disk stays); --deallocate stops Azure billing"),
    "status": ("probe", "per host: the probe's read-only report, and for Azure hosts the VM's power state, size and "
                        "hourly price (a deallocated VM is reported without connecting to it: exit code 15)"),
    "provision": ("provision", "create a pool of Azure VMs for WAA in parallel; a second call with the same inputs "
                               "creates nothing"),
    "teardown": ("teardown", "delete a pool of Azure VMs with their disks, NICs, IPs and NSG (irreversible: the pool "
                             "name is asked twice)"),
}


class UsageError(ValueError):
    """Bad input, found before anything ran; the message names the value and what is allowed."""


def _number(value: Any, name: str, *, integer: bool, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    bad = isinstance(value, bool) or not isinstance(value, kinds) or (isinstance(value, float) and not math.isfinite(value))
    if not bad and low is not None:
        bad = value <= low if low_open else value < low
    if not bad and high is not None:
        bad = value > high
    if bad:
        what = "a whole number" if integer else "a finite number"
        parts = []
        if low is not None:
            parts.append(f"{'greater than' if low_open else 'at least'} {low:g}")
        if high is not None:
            parts.append(f"at most {high:g}")
        raise UsageError(f"{name} {value!r} must be {what}{' ' + ' and '.join(parts) if parts else ''}")


def number(*, integer: bool = False, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Callable[[Any, str], None]:
    def check(value: Any, name: str) -> None:
        _number(value, name, integer=integer, low=low, high=high, low_open=low_open)
    return check


def _limit(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.strip() or not LIMIT_PATTERN.match(value) or \
            value.count("[") != value.count("]") or ",," in value:
        raise UsageError(f"{name} {value!r} is not a host pattern; use names, groups and patterns such as "
                         f"'waa_pool_a', 'host1,host2', 'waa:!bad', 'waa:&pool_a', 'waa[0:4]' (no spaces)")


def _image(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise UsageError(f"{name} {value!r} is not an image reference (e.g. windowsarena/winarena:latest)")


def _pool(value: Any, name: str) -> None:
    if not isinstance(value, str) or not POOL_NAME.match(value):
        raise UsageError(f"{name} {value!r} is not a pool name: 1-12 lowercase letters or digits, starting with a "
                         f"letter (VMs are named waa-<pool>-NN, the inventory group is waa_pool_<pool>)")


def _cidrs(value: Any, name: str) -> None:
    if not value or (not isinstance(value, str) and not all(isinstance(item, str) and item for item in value)):
        raise UsageError(f"{name} is required: the address range allowed to SSH in, e.g. 203.0.113.7/32")


def _text(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{name} {value!r} must be a non-empty string")


def _path(value: Any, name: str) -> None:
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise UsageError(f"{name} {str(value)!r} is empty; give a path")


def _extra_vars(value: Any, name: str) -> None:
    if not isinstance(value, Mapping):
        raise UsageError(f"{name} must be a mapping of names to values, not {type(value).__name__}")
    for key in value:
        if not isinstance(key, str) or not VAR_NAME.match(key):
            raise UsageError(f"extra variable name {key!r} is not a valid Ansible variable name "
                             f"(letters, digits and _, not starting with a digit)")


def _bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"{name} {value!r} must be True or False")


def _callable(value: Any, name: str) -> None:
    if value is not None and not callable(value):
        raise UsageError(f"{name} must be a callable")


@dataclass(frozen=True)
class Option:
    """One option of the wrapper: its meaning, where it applies, its spelling, its rule, its variable."""
    name: str  # the Python keyword
    help: str  # the one description
    commands: frozenset[str]
    check: Callable[[Any, str], None] | None = None
    default: Any = None
    flags: tuple[str, ...] = ()  # () = Python API only
    cli: Mapping[str, Any] | None = None  # argparse extras: action, metavar, type (a parser from text)
    variable: str | None = None  # the playbook variable the value becomes
    to_variable: Callable[[Any], Any] | None = None  # the value as that variable (default: as it is)
    required: bool = False

    def validate(self, value: Any) -> None:
        if value is None and not self.required:
            return
        if self.check is not None:
            self.check(value, self.name)

    def variables(self, value: Any) -> dict[str, Any]:
        """The extra variables a given value sets."""
        if self.variable is None or value is None or (value is False and self.to_variable is None
                                                      and isinstance(self.default, bool)):
            return {}
        converted = self.to_variable(value) if self.to_variable else value
        return {} if converted is None else {self.variable: converted}


def _text_number(kind: type, check: Callable[[Any, str], None]) -> Callable[[str], Any]:
    """An argparse `type` that parses text and applies the option's own rule (one rule for both paths)."""
    import argparse

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number")
        try:
            check(value, "value")
        except UsageError as err:
            raise argparse.ArgumentTypeError(str(err).replace("value ", "", 1))
        return value
    return parse


_forks = number(integer=True, low=1, high=500)
_timeout = number(low=0, low_open=True)
_wait_lock = number(low=0)
_percentage = number(integer=True, low=0, high=100)
_count = number(integer=True, low=1, high=50)

OPTIONS: tuple[Option, ...] = (
    # targets
    Option("inventory", "inventory file or directory (default: --local)", TARGETED, _path,
           flags=("-i", "--inventory"), cli={"metavar": "PATH"}),
    Option("local", "this machine (inventory/local.yml); the default", TARGETED, _bool, default=False,
           flags=("--local",), cli={"action": "store_true"}),
    Option("limit", "host pattern, e.g. waa_pool_a, 'host1,host2', 'waa:!bad'", TARGETED, _limit,
           flags=("-l", "--limit"), cli={"metavar": "PATTERN"}),
    Option("forks", "hosts worked on at once (1-500)", TARGETED, _forks, default=20, flags=("--forks",),
           cli={"metavar": "N", "type": _text_number(int, _forks)}),
    # the run
    Option("timeout", "overall deadline in seconds; hosts not finished by then get exit code 8", ALL, _timeout,
           flags=("--timeout",), cli={"metavar": "SECONDS", "type": _text_number(float, _timeout)}),
    Option("extra_vars", "extra variables (-e KEY=VALUE, {json} or @FILE; give secrets as @FILE: a command line is "
           "visible to other users of the machine)", ALL, _extra_vars),
    Option("state_dir", "run artifacts and locks (default $WAA_STATE_DIR or ~/.local/state/openadapt-waa)", ALL, _path,
           flags=("--state-dir",), cli={"metavar": "DIR"}),
    Option("wait_lock", "seconds to wait for another run on the same hosts (default: exit 12 at once)", ALL,
           _wait_lock, default=0.0, flags=("--wait-lock",),
           cli={"metavar": "SECONDS", "type": _text_number(float, _wait_lock)}),
    Option("verbosity", "more Ansible output in the run artifacts (0-6; -v, -vv, ...)", ALL,
           number(integer=True, low=0, high=6), default=0, flags=("-v", "--verbose"), cli={"action": "count"}),
    Option("keep_runs", "how many run directories to keep", ALL, number(integer=True, low=1), default=20),
    Option("on_event", "called with a ProgressEvent for every phase change, task, retry, pull progress and health "
           "report (from the runner's worker thread)", ALL, _callable),
    Option("cancel", "polled about once a second; True stops the run (hosts not finished get exit code 8)", ALL,
           _callable),
    # the image
    Option("emulator", "run the local WAA emulator image instead of windowsarena/winarena (a rehearsal)",
           WITH_IMAGE, _bool, default=False, flags=("--emulator",), cli={"action": "store_true"}),
    Option("image", "the image to run (waa_image)", WITH_IMAGE, _image, flags=("--image",), cli={"metavar": "REF"},
           variable="waa_image"),
    Option("pull", "pull a missing image (the default); False, --no-pull: it must be on the host already", WITH_IMAGE, _bool,
           flags=("--no-pull",), cli={"action": "store_false", "default": None}, variable="waa_image_pull",
           to_variable=bool),
    # health
    Option("health_timeout", "readiness deadline per host in seconds, its bounded recovery included "
           "(waa_health_timeout)", WITH_HEALTH, _timeout, flags=("--health-timeout",),
           cli={"metavar": "SECONDS", "type": _text_number(float, _timeout)}, variable="waa_health_timeout",
           to_variable=lambda value: int(math.ceil(value))),
    Option("max_fail_percentage", "stop the play when more than N% of the hosts failed (strategy linear)", WITH_IMAGE,
           _percentage, flags=("--max-fail-percentage",),
           cli={"metavar": "N", "type": _text_number(int, _percentage)}, variable="waa_max_fail_percentage"),
    Option("wait", "wait for readiness up to the health timeout instead of reporting at once", frozenset({"probe"}),
           _bool, default=False, flags=("--wait",), cli={"action": "store_true"}, variable="waa_probe_wait",
           to_variable=bool),
    Option("force", "probe through an open circuit breaker", frozenset({"probe"}), _bool, default=False,
           flags=("--force",), cli={"action": "store_true"}, variable="waa_health_force_probe",
           to_variable=lambda value: True if value else None),
    # down
    Option("remove", "remove the containers too (the Windows disk stays)", frozenset({"down"}), _bool, default=False,
           flags=("--remove",), cli={"action": "store_true"}, variable="waa_container_down_mode",
           to_variable=lambda value: "absent" if value else None),
    Option("deallocate", "deallocate the Azure VMs afterwards so they stop billing (waa_deallocate)",
           frozenset({"down"}), _bool, default=False, flags=("--deallocate",), cli={"action": "store_true"},
           variable="waa_deallocate", to_variable=lambda value: True if value else None),
    # Azure pools
    Option("pool", "pool name: 1-12 lowercase letters/digits (VMs waa-<pool>-NN, group waa_pool_<pool>)", AZURE, _pool,
           flags=("--pool",), cli={"metavar": "NAME"}, variable="waa_pool", required=True),
    Option("resource_group", "resource group (default openadapt-waa)", AZURE, _text, flags=("--resource-group",),
           cli={"metavar": "RG"}, variable="waa_resource_group"),
    Option("count", "number of VMs in the pool, 1-50", frozenset({"provision"}), _count, default=1, flags=("--count",),
           cli={"metavar": "N", "type": _text_number(int, _count)}, variable="waa_pool_size"),
    Option("ssh_source_cidr", "address range allowed to SSH in, e.g. 203.0.113.7/32 (repeatable)",
           frozenset({"provision"}), _cidrs, flags=("--ssh-source-cidr",), cli={"action": "append", "metavar": "CIDR"},
           variable="waa_ssh_source_cidr", required=True,
           to_variable=lambda value: value if isinstance(value, str) else (value[0] if len(value) == 1 else list(value))),
    Option("location", "Azure region (default eastus)", frozenset({"provision"}), _text, flags=("--location",),
           cli={"metavar": "REGION"}, variable="waa_location"),
    Option("vm_size", "first VM size to try (default Standard_D8ds_v5; fallbacks follow)", frozenset({"provision"}),
           _text, flags=("--size",), cli={"metavar": "VM_SIZE"}, variable="waa_vm_size"),
    Option("confirm", "the pool name again (teardown deletes every VM and Windows disk of the pool)",
           frozenset({"teardown"}), _text, flags=("--confirm",), cli={"metavar": "NAME"},
           variable="waa_confirm_teardown", required=True),
)
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def for_command(command: str) -> list[Option]:
    return [option for option in OPTIONS if command in option.commands]


def check(command: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options of `command` with their defaults filled in; UsageError for an unknown keyword or a
    bad value (named, with what is allowed)."""
    allowed = {option.name: option for option in for_command(command)}
    for name in given:
        if name not in allowed:
            close = difflib.get_close_matches(name, list(allowed), n=1)
            raise UsageError(f"{command} takes no option {name!r}" + (f" (did you mean {close[0]}?)" if close else "")
                             + f"; it takes {', '.join(sorted(allowed))}")
    values: dict[str, Any] = {}
    for name, option in allowed.items():
        value = given.get(name, option.default)
        if value is None and option.required:
            raise UsageError(f"{name} is required for {command}: {option.help}")
        option.validate(value)
        values[name] = value
    if values.get("inventory") is not None and values.get("local"):
        raise UsageError("give either an inventory or local=True (--local), not both")
    if values.get("image") is not None and values.get("emulator"):
        raise UsageError("give either an image or emulator=True (--emulator), not both")
    if command == "teardown" and values["confirm"] != values["pool"]:
        raise UsageError(f"teardown deletes every VM and Windows disk of pool {values['pool']!r}: repeat the pool "
                         f"name to confirm (got {values['confirm']!r})")
    return values


def variables(command: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The playbook variables the options set (after the user's extra_vars, so an option wins)."""
    out: dict[str, Any] = {}
    for option in for_command(command):
        out.update(option.variables(values.get(option.name)))
    return out


def docstring(command: str, summary: str) -> str:
    """An API function's docstring, made from the table (so it never drifts from the CLI's help)."""
    lines = [summary, "", "Keyword arguments (waa_runner.options):"]
    for option in for_command(command):
        default = f" (default {option.default!r})" if option.default not in (None, False) else ""
        lines.append(f"    {option.name}: {option.help}{default}")
    return "\n".join(lines)


def names(commands: Iterable[str]) -> set[str]:
    return {option.name for command in commands for option in for_command(command)}
