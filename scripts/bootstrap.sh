#!/usr/bin/env bash
# Everything a fresh Debian/Ubuntu machine needs to run waa-run and the tests, idempotently:
# the Docker engine (scripts/ensure-docker.sh), a virtual environment in .venv with this package
# installed normally (not editable, as a user would), and the local images.
#   scripts/bootstrap.sh            engine + venv + package + base and emulator images
#   scripts/bootstrap.sh --test     also the test and azure extras, azure.azcollection's Python
#                                   requirements (scripts/install-azure-deps.sh) and the test images
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="${WAA_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
WITH_TESTS=false
[ "${1:-}" = "--test" ] && WITH_TESTS=true

say() { printf 'bootstrap: %s\n' "$*" >&2; }

bash scripts/ensure-docker.sh

if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  say "installing python3-venv"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }

extras=""
$WITH_TESTS && extras="[test,azure]"
say "installing openadapt-waa$extras into $VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
rm -rf build  # setuptools reuses a stale build/lib, which can put deleted files back into the install
"$VENV/bin/python" -m pip install -q ".$extras"

$WITH_TESTS && WAA_VENV="$VENV" bash scripts/install-azure-deps.sh
# A real Prometheus server for the metrics tests of `waa-run watch --metrics-port`.
if $WITH_TESTS && ! command -v prometheus >/dev/null 2>&1; then
  say "installing prometheus (Debian) for the metrics tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

targets="base emulator"
$WITH_TESTS && targets="all"
say "building local images ($targets); unchanged images are not rebuilt"
"$VENV/bin/python" -m waa_runner.images $targets
say "ready: $VENV/bin/waa-run"
