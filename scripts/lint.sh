#!/usr/bin/env bash
# Every static check CI runs, one finding per line as TOOL<TAB>FILE:LINE<TAB>RULE<TAB>MESSAGE:
#
#   scripts/lint.sh            # ansible-lint, mypy, ruff, antsibull-changelog lint
#   scripts/lint.sh --sanity   # and ansible-test sanity (scripts/ansible-test.sh, a few minutes)
#
# Exits 1 when any check found something. tests/integration/test_ecosystem_checks.py runs the same
# tools with the same configuration (.ansible-lint, pyproject.toml, changelogs/config.yaml).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
export PATH="$venv/bin:$PATH" NO_COLOR=1
cd "$repo"
for var in $(env | grep -o '^ANSIBLE_[A-Z_]*'); do unset "$var"; done
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# ansible-lint's Code Climate JSON: one object per finding.
ansible-lint --nocolor -q -f codeclimate 2>/dev/null | "$venv/bin/python" -c '
import json, sys
text = sys.stdin.read().strip()
for item in json.loads(text) if text else []:
    where = item["location"]
    line = where.get("lines", {}).get("begin", where.get("positions", {}).get("begin", {}).get("line", 0))
    line = line.get("line", 0) if isinstance(line, dict) else line
    print("ansible-lint\t%s:%s\t%s\t%s" % (where["path"], line, item["check_name"], " ".join(item["description"].split())))
' >> "$out"
# mypy: FILE:LINE: error: MESSAGE  [code]
mypy 2>/dev/null | sed -nE 's#^([^:]+:[0-9]+): error: (.*)  \[([a-z-]+)\]$#mypy\t\1\t\3\t\2#p' >> "$out"
# ruff concise: FILE:LINE:COL: CODE MESSAGE
ruff check --no-cache --output-format concise . 2>/dev/null \
    | sed -nE 's#^([^:]+:[0-9]+):[0-9]+: ([A-Z]+[0-9]+) (.*)$#ruff\t\1\t\2\t\3#p' >> "$out"
antsibull-changelog lint 2>&1 | sed -nE 's#^([^:]+):([0-9]+):[0-9]+: (.*)$#antsibull-changelog\t\1:\2\tlint\t\3#p' >> "$out"
if [[ ${1:-} == --sanity ]]; then
    # ERROR: FILE:LINE:COL: RULE: MESSAGE
    scripts/ansible-test.sh 2>&1 \
        | sed -nE -e 's#^ERROR: ([^ :]+):([0-9]+):[0-9]+: ([^ :]+): (.*)$#ansible-test-sanity\t\1:\2\t\3\t\4#p' \
                  -e 's#^ERROR: ([^ :]+):([0-9]+):[0-9]+: (.*)$#ansible-test-sanity\t\1:\2\t-\t\3#p' >> "$out"
fi
cat "$out"
echo "$(wc -l < "$out") finding(s)" >&2
[[ ! -s $out ]]
