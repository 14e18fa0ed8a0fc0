"""pytest fixtures for the Azure double. Import them into a test module (or a conftest):

    from tests.azure_double.fixture import azure_deps, azure_double_server, azure_double, azure_env  # noqa: F401

* ``azure_deps``          (session) azure.azcollection's Python requirements are importable, else skip
                          (fail when CI=true) naming scripts/install-azure-deps.sh.
* ``azure_double_server`` (session) one running AzureDouble (loopback proxy + token endpoint + test CA).
* ``azure_double``        (function) that double with a fresh, empty ArmState for this test:
                          seed it with ``azure_double.state.add_vm(...)``, read ``.state.calls``.
* ``azure_env``           (function) environment for ansible-inventory / ansible-playbook processes:
                          os.environ without Azure credentials or proxies, plus the double's
                          HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, IDENTITY_ENDPOINT, IDENTITY_HEADER,
                          AZURE_SUBSCRIPTION_ID, ANSIBLE_AZURE_AUTH_SOURCE=msi, AZURE_CONFIG_DIR and
                          ANSIBLE_COLLECTIONS_PATH=<repo>/collections.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from .server import AzureDouble

REPO_ROOT = Path(__file__).resolve().parents[2]


def ansible_bin(tool: str) -> str:
    """ansible-playbook / ansible-inventory of the Python running the tests (the project's venv)."""
    import sys

    candidate = Path(sys.executable).parent / tool
    return str(candidate) if candidate.exists() else tool


def run_ansible(tool: str, args: Sequence[str], env: dict[str, str], timeout: float = 600,
                check: bool = False) -> subprocess.CompletedProcess:
    """Run ansible-playbook/ansible-inventory from the repository root (as users do)."""
    proc = subprocess.run([ansible_bin(tool), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} -> rc {proc.returncode}\n"
                             f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def azure_deps() -> None:
    from waa_runner.api import azure_sdks_missing  # the check waa-run itself makes before an Azure run

    message = azure_sdks_missing()
    if message is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: Azure tests fail instead of skipping)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def azure_double_server(azure_deps, tmp_path_factory) -> Iterator[AzureDouble]:
    double = AzureDouble(tmp_path_factory.mktemp("azure-double")).start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def azure_double(azure_double_server: AzureDouble) -> Iterator[AzureDouble]:
    azure_double_server.reset()
    yield azure_double_server
    # a test that made a client reach for anything but the double fails loudly here
    refused = list(azure_double_server.state.refused)
    assert not refused, f"clients tried to reach something other than the Azure double: {refused}"


@pytest.fixture
def azure_env(azure_double: AzureDouble) -> dict[str, str]:
    return azure_double.client_env(
        ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"),
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        ANSIBLE_NOCOLOR="true",
        ANSIBLE_FORCE_COLOR="false",
        PYTHONWARNINGS="ignore",
    )
