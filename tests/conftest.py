"""Fixtures shared by every test that needs the real Docker engine or the WAA emulator.

Tests that need the engine FAIL when CI=true and the engine is missing (a CI machine without an
engine is a broken CI machine, not a reason to pass); on a developer machine they skip with the
command that fixes it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import sys

import pytest

# Unit tests import the collection's module_utils as ansible does: through the
# collections/ansible_collections/openadapt/waa link to the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "collections"))

from tests.support.emulator import EmulatorHandle, start_emulator, remove_test_containers, TEST_LABEL

REPO_ROOT = Path(__file__).resolve().parent.parent


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=30)
    return proc.returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if _engine_answers():
        return
    message = "the Docker engine does not answer: run `sudo scripts/ensure-docker.sh`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: tests that need Docker fail instead of skipping)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def emulator_image(docker_engine) -> str:
    from waa_runner import images

    return images.ensure_emulator(lambda m: None).image


@pytest.fixture
def emulator(emulator_image, tmp_path_factory, request):
    """Factory: start an emulator container like the real one; every container is removed after the test."""
    started: list[EmulatorHandle] = []

    def factory(**kwargs) -> EmulatorHandle:
        kwargs.setdefault("storage_dir", tmp_path_factory.mktemp("storage"))
        handle = start_emulator(image=emulator_image, **kwargs)
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        handle.remove()


@pytest.fixture(scope="session", autouse=True)
def _cleanup_test_containers():
    yield
    if _engine_answers():
        remove_test_containers(os.environ.get("WAA_TEST_RUN_ID"))


def unique_name(prefix: str = "waa-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


__all__ = ["REPO_ROOT", "TEST_LABEL", "unique_name"]
