# The two things a user does first (see README.md). Both run as root on a fresh Debian/Ubuntu
# machine and install what they need: the Docker engine, .venv, the local images.
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: up test unit bench clean-test-containers

# Set up this machine and bring it to "WAA ready" against the emulator.
up:
	scripts/bootstrap.sh
	$(VENV)/bin/waa-run up --local --emulator

# Set up everything the tests need and run them all (CI runs exactly this through .ci/run).
test:
	scripts/bootstrap.sh --test
	CI=$${CI:-false} $(VENV)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Unit tests only: no Docker, seconds.
unit:
	$(VENV)/bin/python -m pytest -q tests/unit

# Benchmarks print figures and ratios (see docs/performance.md); they assert nothing.
bench:
	@for script in benchmarks/*.py; do echo "== $$script"; $(VENV)/bin/python $$script || exit 1; done

clean-test-containers:
	-docker ps -aq --filter label=io.openadapt.waa.test | xargs -r docker rm -f -v
