"""The Ansible and Python ecosystem's own checks, run the way their users run them:

ansible-test sanity (scripts/ansible-test.sh: a copy laid out as ansible_collections/openadapt/waa,
--venv, Python 3.11), ansible-lint with the production profile (.ansible-lint), ansible-doc on every
module, role, filter and test, mypy (strict where pyproject.toml says so), ruff, and
antsibull-changelog lint.

A failing check prints its findings one per line (tool, file:line, rule, message), nothing else.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(NO_COLOR="1", PY_COLORS="0", **extra)
    return env


def run(argv: list[str], timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, env=clean_env(**env), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def report(tool: str, proc: subprocess.CompletedProcess[str], findings: list[str]) -> str:
    shown = findings or (proc.stdout + proc.stderr).strip().splitlines()[-40:]
    return f"{tool} exited {proc.returncode} with {len(findings)} finding(s):\n" + "\n".join(shown)


@pytest.mark.slow
def test_ansible_test_sanity_passes():
    proc = run([str(REPO / "scripts" / "ansible-test.sh")], timeout=1800)
    findings = [line[len("ERROR: "):] for line in proc.stdout.splitlines() + proc.stderr.splitlines()
                if line.startswith("ERROR: ") and not line.startswith(("ERROR: Found ", "ERROR: Command "))]
    assert proc.returncode == 0, report("ansible-test sanity", proc, findings)
    assert "Running sanity test \"validate-modules\"" in proc.stdout


def test_ansible_lint_production_profile_passes():
    proc = run([str(BIN / "ansible-lint"), "--nocolor", "-q", "-f", "codeclimate"])
    findings = []
    for item in json.loads(proc.stdout) if proc.stdout.strip() else []:
        where = item["location"]
        line = where.get("lines", {}).get("begin") or where.get("positions", {}).get("begin", {}).get("line", 0)
        line = line.get("line", 0) if isinstance(line, dict) else line
        findings.append(f"{where['path']}:{line}: {item['check_name']}: {' '.join(item['description'].split())[:300]}")
    assert proc.returncode == 0, report("ansible-lint", proc, findings)


def test_mypy_passes():
    proc = run([str(BIN / "mypy")])
    findings = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert proc.returncode == 0, report("mypy", proc, findings)


def test_ruff_passes():
    proc = run([str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise", "."])
    findings = [line for line in proc.stdout.splitlines() if re.match(r"^\S+:\d+:\d+: ", line)]
    assert proc.returncode == 0, report("ruff", proc, findings)


def test_changelog_fragments_lint():
    proc = run([str(BIN / "antsibull-changelog"), "lint"])
    assert proc.returncode == 0 and not proc.stdout.strip(), report("antsibull-changelog lint", proc,
                                                                    proc.stdout.splitlines())


# ------------------------------------------------------------------------------------- ansible-doc
def _plugin_names(kind: str) -> list[str]:
    """Every filter or test the collection's plugin files provide (what a playbook can call)."""
    names: list[str] = []
    for path in sorted((REPO / "plugins" / kind).glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_waa_{kind}_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        provider = module.FilterModule() if kind == "filter" else module.TestModule()
        names += sorted(provider.filters() if kind == "filter" else provider.tests())
    return names


MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
ROLES = sorted(p.parent.parent.name for p in (REPO / "roles").glob("*/meta/argument_specs.yml"))


def _ansible_doc(kind: str, names: list[str]) -> dict[str, Any]:
    proc = run([str(BIN / "ansible-doc"), "-t", kind, "--json", *[f"openadapt.waa.{n}" for n in names]])
    assert proc.returncode == 0 and "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, \
        f"ansible-doc -t {kind}: {proc.stderr.strip()[-3000:]}"
    return dict(json.loads(proc.stdout))


@pytest.mark.parametrize("kind", ["module", "role", "filter", "test"])
def test_ansible_doc_renders_every_plugin_and_role(kind):
    names = {"module": MODULES, "role": ROLES}.get(kind) or _plugin_names(kind)
    assert names
    docs = _ansible_doc(kind, names)
    missing = sorted(set(f"openadapt.waa.{n}" for n in names) - set(docs))
    assert not missing, f"ansible-doc -t {kind} has no documentation for: {', '.join(missing)}"
    text = run([str(BIN / "ansible-doc"), "-t", kind, *[f"openadapt.waa.{n}" for n in names]])
    assert text.returncode == 0, text.stderr[-3000:]


def _undescribed(options: dict[str, Any], where: str) -> list[str]:
    found: list[str] = []
    for name, spec in (options or {}).items():
        spec = spec or {}
        if not spec.get("description"):
            found.append(f"{where}.{name}")
        found += _undescribed(spec.get("options") or {}, f"{where}.{name}")
    return found


def test_every_role_option_and_sub_option_is_described():
    undescribed: list[str] = []
    for role in ROLES:
        specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
        for entry, spec in (specs.get("argument_specs") or {}).items():
            undescribed += _undescribed(spec.get("options") or {}, f"roles/{role}/meta/argument_specs.yml:{entry}")
    assert not undescribed, "options without a description:\n" + "\n".join(undescribed)
