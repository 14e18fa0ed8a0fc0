#!/usr/bin/env bash
# Install azure.azcollection's own Python requirements (its requirements.txt, inside the
# collection that the `ansible` package ships) into the project's virtual environment.
# Idempotent: when every requirement is already installed at a matching version it does nothing.
# One missing requirement disables every module of the collection, so all of them are checked.
#   scripts/install-azure-deps.sh            uses $WAA_VENV or ./.venv
#   PYTHON=/path/to/python scripts/install-azure-deps.sh
# About 3 minutes and 1.5 GB on a fresh venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="${WAA_VENV:-$ROOT/.venv}"
PY="${PYTHON:-$VENV/bin/python}"

say() { printf 'install-azure-deps: %s\n' "$*" >&2; }

[ -x "$PY" ] || { say "no python at $PY (run scripts/bootstrap.sh first)"; exit 2; }

req=$("$PY" - <<'PYEOF'
import importlib.util, os, sys
spec = importlib.util.find_spec("ansible_collections.azure.azcollection")
if spec is None or not spec.submodule_search_locations:
    sys.exit("azure.azcollection is not installed in this environment (it ships with the `ansible` package)")
print(os.path.join(list(spec.submodule_search_locations)[0], "requirements.txt"))
PYEOF
)
[ -f "$req" ] || { say "missing $req"; exit 2; }

# Exit 0 when every requirement is satisfied, 1 otherwise (printing the first few that are not).
satisfied() {
  "$PY" - "$req" <<'PYEOF'
import sys
from importlib import metadata
from packaging.requirements import Requirement
missing = []
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    r = Requirement(line)
    if r.marker is not None and not r.marker.evaluate():
        continue
    try:
        version = metadata.version(r.name)
    except metadata.PackageNotFoundError:
        missing.append(f"{r.name} (absent)")
        continue
    if r.specifier and not r.specifier.contains(version, prereleases=True):
        missing.append(f"{r.name} {version} (wants {r.specifier})")
if missing:
    print("unsatisfied: " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""), file=sys.stderr)
    sys.exit(1)
PYEOF
}

# The collection's module_utils set HAS_AZURE when every import they need works.
importable() {
  "$PY" - <<'PYEOF'
import sys
from ansible_collections.azure.azcollection.plugins.module_utils import azure_rm_common as c
if not (c.HAS_AZURE and c.HAS_AZURE_CLI_CORE):
    sys.exit("azure.azcollection cannot import its SDKs: %s %s" % (c.HAS_AZURE_EXC, c.HAS_AZURE_CLI_CORE_EXC))
PYEOF
}

if satisfied 2>/dev/null && importable 2>/dev/null; then
  say "already installed ($req)"
  exit 0
fi
satisfied || true
started=$(date +%s)
say "installing from $req (about 3 min, 1.5 GB)"
"$PY" -m pip install -q --disable-pip-version-check -r "$req"
satisfied
importable
say "done in $(( $(date +%s) - started ))s"
