"""`waa-run gate HOST`: may a task start on this host now?

Exit 0 only when the host's latest verdict is ready and no older than max_age (default two of the
agent's intervals); else the verdict's own exit code, or 8 (`deadline`) when the latest verdict is
stale (the agent or the watcher stopped), or 9 when there is no verdict at all. It reads files
only - the agent's latest.json for a local host, the watcher's per-host record
(<state dir>/watch/hosts/<host>.json) for a remote one - and imports no ansible, so it answers in
well under 0.3 s and can run before every task.

    from waa_runner.gate import gate
    result = gate("localhost")            # GateResult(exit_code=0, ...)
"""
from __future__ import annotations

import json
import os
import sys
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_AGENT_DIR = "/var/lib/waa-agent"
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_INTERVAL = 30.0
CODE_STALE = 16  # "stale" in the exit-code table: the verdict is older than max_age
CODE_NO_VERDICT = 9


@dataclass
class GateResult:
    host: str
    exit_code: int
    exit_name: str
    message: str
    hint: str
    age_s: float | None
    max_age_s: float
    source: str  # the file the answer came from
    verdict: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object from a file, or None when it is missing, torn or not an object (the agent writes atomically)."""
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _state_root(state_dir: str | os.PathLike[str] | None) -> Path:
    from waa_runner.state import default_state_dir

    return Path(state_dir).expanduser() if state_dir else default_state_dir()


def gate(host: str, *, max_age: float | None = None, state_dir: str | os.PathLike[str] | None = None,
         agent_dir: str | None = None, local: bool | None = None, now: float | None = None) -> GateResult:
    now = time.time() if now is None else now
    cache_path = _state_root(state_dir) / "watch" / "hosts" / f"{host}.json"
    cache = read_json_object(cache_path) if "/" not in host else None
    is_local = local if local is not None else (bool(cache.get("local")) if cache else host in LOCAL_NAMES)
    latest: dict[str, Any] | None
    if is_local:
        directory = agent_dir or (cache or {}).get("agent_dir") or DEFAULT_AGENT_DIR
        source = os.path.join(directory, "latest.json")
        latest = read_json_object(source)
        skew = 0.0
    else:
        source = str(cache_path)
        latest = (cache or {}).get("latest") if isinstance((cache or {}).get("latest"), dict) else None
        skew = float((cache or {}).get("skew_s") or 0.0)
    interval = float((latest or {}).get("interval_s") or (cache or {}).get("interval_s") or DEFAULT_INTERVAL)
    limit = float(max_age) if max_age else 2 * interval
    verdict = (latest or {}).get("verdict") if isinstance((latest or {}).get("verdict"), dict) else None
    if latest is None or verdict is None:
        where = "the agent's latest.json" if is_local else "the watcher's record"
        return GateResult(host, CODE_NO_VERDICT, "unknown", f"no verdict for {host}: {where} ({source}) is missing",
                          "install the agent (playbooks/watch_agent.yml)" + ("" if is_local else
                                                                             " and run `waa-run watch`"),
                          None, limit, source, None)
    age = now - (float(latest.get("time") or 0) + skew)
    if age > limit:
        return GateResult(host, CODE_STALE, "deadline",
                          f"stale: the latest verdict of {host} ({verdict.get('exit_name')}) is {age:.1f}s old "
                          f"(max age {limit:g}s)",
                          "is the agent running (waa_agent.py status) and, for a remote host, `waa-run watch`?",
                          round(age, 3), limit, source, verdict)
    code = verdict.get("exit_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else CODE_NO_VERDICT
    return GateResult(host, code, str(verdict.get("exit_name") or ""), str(verdict.get("message") or ""),
                      str(verdict.get("hint") or ""), round(age, 3), limit, source, verdict)


class _CallableModule(types.ModuleType):
    """`waa_runner.gate(...)` calls gate() even after `import waa_runner.gate` bound the module to that name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return gate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
