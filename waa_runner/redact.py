"""Keeping secrets out of the run directory, the JSON report and the terminal.

What a run could leak, and what is done about each (docs/json-report.md, "Secrets"):
- Extra variables whose name (or a key anywhere inside them) contains password, passwd, token,
  secret, credential, private_key or api_key: never on the command line nor in the run
  directory. They reach ansible-playbook as `-e @FILE`, FILE being 0600 in a 0700 directory on
  tmpfs ($XDG_RUNTIME_DIR or /dev/shm; the temp dir otherwise), removed when the run ends (and
  by the next run when a run was killed).
- ansible-runner's `command` artifact records the whole process environment: variables whose
  name looks secret are replaced by "<redacted>".
- `ansible_env` facts (the environment of the controller for local hosts) are dropped from every
  event before ansible-runner writes it, and the jsonfile fact cache in the artifacts is off.
- Defence in depth: every event (before it is written, reduced or shown) and, at the end, every
  file of the run directory has the secret values themselves replaced by "<redacted>", in case a
  task printed one.
Roles still have to mark tasks that handle secrets `no_log`.
"""
from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

SECRET_VAR = re.compile(r"passw|token|secret|credential|private_key|api_?key", re.IGNORECASE)
SECRET_ENV = re.compile(r"passw|token|secret|credential|private_key|api_?key|access_?key", re.IGNORECASE)
REDACTED = "<redacted>"
# Shorter values are not redacted by value (they would hit ordinary words); they are still kept out
# of the command line and the run directory by name.
MIN_SECRET_LEN = 6
MIN_ENV_SECRET_LEN = 8


def _has_secret_key(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(SECRET_VAR.search(str(key)) or _has_secret_key(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_secret_key(item) for item in value)
    return False


def split_secrets(extra_vars: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain, secret): a variable is secret when its name, or a key anywhere inside it, looks secret."""
    plain: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for key, value in extra_vars.items():
        (secret if SECRET_VAR.search(key) or _has_secret_key(value) else plain)[key] = value
    return plain, secret


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def secret_values(secret_vars: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """The strings to redact: every leaf of the secret variables and the values of secret-looking env vars."""
    values = {v for v in _leaves(secret_vars) if len(v) >= MIN_SECRET_LEN}
    env = os.environ if environ is None else environ
    values.update(value for key, value in env.items() if SECRET_ENV.search(key) and len(value) >= MIN_ENV_SECRET_LEN)
    return sorted(values, key=len, reverse=True)


class Redactor:
    """Replaces known secret values in text, events and files."""

    def __init__(self, values: Iterable[str]) -> None:
        forms: set[str] = set()
        for value in values:
            forms.add(value)
            forms.add(json.dumps(value)[1:-1])  # as it appears inside JSON text
        self.forms = sorted((f for f in forms if len(f) >= MIN_SECRET_LEN), key=len, reverse=True)

    def text(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def event(self, event: dict[str, Any]) -> None:
        """Redact in place (ansible-runner writes the very dict the event handler got)."""
        _drop_env_facts(event.get("event_data"))
        if not self.forms:
            return
        text = json.dumps(event)
        cleaned = self.text(text)
        if cleaned != text:
            replacement = json.loads(cleaned)
            event.clear()
            event.update(replacement)

    def tree(self, root: Path) -> list[Path]:
        """Redact every file under root; returns the files that changed."""
        changed: list[Path] = []
        if not self.forms:
            return changed
        for path in root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                text = path.read_text(encoding="utf-8", errors="surrogateescape")
            except OSError:
                continue
            cleaned = self.text(text)
            if cleaned != text:
                _rewrite(path, cleaned)
                changed.append(path)
        return changed


def _drop_env_facts(event_data: Any) -> None:
    if not isinstance(event_data, dict):
        return
    res = event_data.get("res")
    if not isinstance(res, dict):
        return
    nested = res.get("results")
    for item in [res, *(nested if isinstance(nested, list) else [])]:
        if isinstance(item, dict) and isinstance(item.get("ansible_facts"), dict):
            item["ansible_facts"].pop("ansible_env", None)
            item["ansible_facts"].pop("env", None)


def _rewrite(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".redact-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(text)
    os.replace(tmp, path)


def scrub_command_artifact(path: Path) -> None:
    """ansible-runner records the whole process environment in artifacts/<ident>/command: redact secrets."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    env = data.get("env")
    if isinstance(env, dict):
        data["env"] = {key: (REDACTED if SECRET_ENV.search(key) else value) for key, value in env.items()}
        _rewrite(path, json.dumps(data))


# ------------------------------------------------------------------------------ secrets file
def secret_dir() -> Path:
    """A private (0700) directory, on tmpfs when there is one, so the secrets never touch a disk."""
    for base in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm", tempfile.gettempdir()):
        if not base or not os.path.isdir(base) or not os.access(base, os.W_OK):
            continue
        path = Path(base) / f"waa-runner-{os.getuid()}"
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700:
                remove_stale_secrets(path)
                return path
        except OSError:
            continue
    raise OSError("no private directory for the secrets file")


def remove_stale_secrets(directory: Path) -> None:
    """Secrets files of runs that died without cleaning up (e.g. SIGKILL)."""
    for path in directory.glob("secrets-*.json"):
        try:
            os.kill(int(path.name.split("-")[1]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (ValueError, IndexError, PermissionError):
            continue


def write_secrets(secret: Mapping[str, Any]) -> Path:
    fd, name = tempfile.mkstemp(prefix=f"secrets-{os.getpid()}-", suffix=".json", dir=secret_dir())
    with os.fdopen(fd, "w") as handle:  # mkstemp: 0600, O_EXCL
        json.dump(secret, handle)
    return Path(name)
