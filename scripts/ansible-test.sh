#!/usr/bin/env bash
# Run `ansible-test sanity` on this collection, offline from anything but the package index:
#
#   scripts/ansible-test.sh [extra ansible-test sanity arguments, e.g. --test pep8]
#
# ansible-test only runs from a tree laid out as ansible_collections/NAMESPACE/NAME, so this copies
# what the galaxy tarball ships (plus tests/sanity/) into a temporary tree of that shape. The repo's
# own Python package (waa_runner), tests and benchmarks are not collection content: mypy and ruff
# check those (scripts/lint.sh).
#
# It runs with --venv: each sanity test gets the virtual environment ansible-test pins. ansible-test
# bootstraps pip in those environments with a get-pip script it downloads from a CI file host that
# this project's machines cannot reach; the documented workaround is a cached script at
# ~/.ansible/test/cache/get_pip_<version>.py. We put a small one there that runs pip from its
# wheel (fetched from the package index with pip itself), so only the package index is needed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
python=$venv/bin/python
export PATH="$venv/bin:$PATH"

pip_version=$("$python" - <<'PY'
import re
from pathlib import Path
import ansible_test
source = (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", source).group(1))
PY
)
cache=$HOME/.ansible/test/cache
shim=$cache/get_pip_${pip_version//./_}.py
if [[ ! -s $shim ]]; then
    mkdir -p "$cache"
    "$python" -m pip download -q --no-deps --only-binary=:all: -d "$cache" "pip==$pip_version"
    wheel=$(ls "$cache"/pip-"$pip_version"-*.whl)
    cat > "$shim.tmp" <<PY
"""Stand-in for get-pip.py (written by openadapt.waa's scripts/ansible-test.sh): run pip from its
wheel to install the requested packages into the running Python."""
import sys

sys.path.insert(0, "$wheel")
from pip._internal.cli.main import main  # noqa: E402

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--no-cache-dir"] + args))
PY
    mv "$shim.tmp" "$shim"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/openadapt/waa
mkdir -p "$dest"
items=()
for item in galaxy.yml meta plugins roles playbooks inventory docs changelogs README.md LICENSE CHANGELOG.rst \
            requirements.txt bindep.txt tests/sanity; do
    [[ -e $repo/$item ]] && items+=("$item")
done
tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' --exclude=.plugin-cache.yaml -cf - "${items[@]}" | tar -C "$dest" -xf -

cd "$dest"
ansible-test sanity --venv --python 3.11 --color no "$@"
