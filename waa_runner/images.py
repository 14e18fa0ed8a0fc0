"""Local images built without any registry: the Debian base, the WAA emulator, the test host.

No registry is reachable on the machines this project is tested on, so every image starts from a
debootstrap tree imported into the engine. Each image carries a label with the hash of what it was
built from; a build whose inputs did not change is skipped, so a second run costs a `docker
inspect`, not a rebuild.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# What the ensure_* functions report progress to (print, or a ProgressEvent sender).
Log = Callable[[str], object]

CONTENT_LABEL = "io.openadapt.waa.content-hash"
BASE_IMAGE = "waa-base:bookworm"
EMULATOR_IMAGE = "waa-emulator:latest"
TESTHOST_IMAGE = "waa-testhost:bookworm"

_PACKAGE_DIR = Path(__file__).resolve().parent
EMULATOR_CONTEXT = _PACKAGE_DIR / "emulator"
# Only present in a source checkout: the test host is a test fixture, not a shipped feature.
TESTHOST_CONTEXT = _PACKAGE_DIR.parent / "tests" / "images" / "testhost"
FLEETHOST_IMAGE = "waa-fleethost:bookworm"
FLEETHOST_CONTEXT = _PACKAGE_DIR.parent / "tests" / "images" / "fleethost"

_DEBOOTSTRAP_SUITE = "bookworm"
_DEBOOTSTRAP_INCLUDE = "python3,ca-certificates"
_DEBOOTSTRAP_MIRROR = "http://deb.debian.org/debian"


class ImageBuildError(RuntimeError):
    """A build step failed; the message names the step and the tail of its output."""


@dataclass(frozen=True)
class BuildOutcome:
    image: str
    built: bool
    content_hash: str


def _run(argv: list[str], *, stdin: bytes | None = None, what: str) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-15:]
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return proc.stdout.decode(errors="replace")


def image_label(image: str) -> str | None:
    """The content hash an existing image was built from, or None when the image is absent."""
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout.strip() or "null") or {}
    return labels.get(CONTENT_LABEL)


def image_id(image: str) -> str:
    return _run(["docker", "image", "inspect", "--format", "{{.Id}}", image], what=f"inspect {image}").strip()


def hash_context(context: Path, *extra: str) -> str:
    """Hash every file of a build context (path and bytes) plus extra inputs such as a base id."""
    digest = hashlib.sha256()
    for item in extra:
        digest.update(item.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(context)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_base(log: Log = print) -> BuildOutcome:
    wanted = hashlib.sha256(
        f"{_DEBOOTSTRAP_SUITE}|{_DEBOOTSTRAP_INCLUDE}|{_DEBOOTSTRAP_MIRROR}|v1".encode()
    ).hexdigest()[:16]
    if image_label(BASE_IMAGE) == wanted:
        return BuildOutcome(BASE_IMAGE, False, wanted)
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed: run scripts/ensure-docker.sh (as root) first")
    log(f"building {BASE_IMAGE} with debootstrap (about a minute)")
    with tempfile.TemporaryDirectory(prefix="waa-rootfs-") as rootfs:
        _run(
            ["debootstrap", "--variant=minbase", f"--include={_DEBOOTSTRAP_INCLUDE}",
             _DEBOOTSTRAP_SUITE, rootfs, _DEBOOTSTRAP_MIRROR],
            what="debootstrap",
        )
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        proc = subprocess.run(
            ["docker", "import", "--change", f"LABEL {CONTENT_LABEL}={wanted}",
             "--change", 'CMD ["/bin/bash"]', "-", BASE_IMAGE],
            stdin=tar.stdout,
            capture_output=True,
        )
        tar.wait()
        if proc.returncode != 0 or tar.returncode != 0:
            raise ImageBuildError(f"docker import failed: {proc.stderr.decode(errors='replace').strip()}")
    return BuildOutcome(BASE_IMAGE, True, wanted)


def ensure_from_context(image: str, context: Path, log: Log = print,
                        parent: Callable[[Log], BuildOutcome] | None = None) -> BuildOutcome:
    """Build `image` from a Dockerfile context on top of its parent image, unless nothing changed.

    `parent` ensures the image the Dockerfile starts FROM (the base image by default); its id is
    part of the content hash, so a rebuilt parent rebuilds its children.
    """
    if not (context / "Dockerfile").is_file():
        raise ImageBuildError(f"no Dockerfile in {context}")
    parent_image = (parent or ensure_base)(log).image
    wanted = hash_context(context, image_id(parent_image))
    if image_label(image) == wanted:
        return BuildOutcome(image, False, wanted)
    log(f"building {image} from {context}")
    _run(
        ["docker", "build", "--quiet", "--label", f"{CONTENT_LABEL}={wanted}", "-t", image, str(context)],
        what=f"docker build {image}",
    )
    return BuildOutcome(image, True, wanted)


def ensure_emulator(log: Log = print) -> BuildOutcome:
    return ensure_from_context(EMULATOR_IMAGE, EMULATOR_CONTEXT, log)


def ensure_testhost(log: Log = print) -> BuildOutcome:
    if not TESTHOST_CONTEXT.is_dir():
        raise ImageBuildError("the test host image is built only from a source checkout (tests/images/testhost)")
    return ensure_from_context(TESTHOST_IMAGE, TESTHOST_CONTEXT, log)


def ensure_fleethost(log: Log = print) -> BuildOutcome:
    """The test host with the engine preinstalled: fleets of 10-20 hosts skip 20 apt installs."""
    if not FLEETHOST_CONTEXT.is_dir():
        raise ImageBuildError("the fleet host image is built only from a source checkout (tests/images/fleethost)")
    return ensure_from_context(FLEETHOST_IMAGE, FLEETHOST_CONTEXT, log, parent=ensure_testhost)


REGISTRY_IMAGE = "waa-registry:latest"
REGISTRY_CONTEXT = _PACKAGE_DIR.parent / "tests" / "images" / "registry"


def ensure_registry(log: Log = print) -> BuildOutcome:
    """A real registry (Debian's docker-registry) for pull tests."""
    if not REGISTRY_CONTEXT.is_dir():
        raise ImageBuildError("the registry image is built only from a source checkout (tests/images/registry)")
    return ensure_from_context(REGISTRY_IMAGE, REGISTRY_CONTEXT, log)


TARGETS = {"base": ensure_base, "emulator": ensure_emulator, "testhost": ensure_testhost,
           "fleethost": ensure_fleethost, "registry": ensure_registry}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or ["base", "emulator"]
    if names == ["all"]:
        names = list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown image {unknown[0]!r}; choose from: {', '.join(TARGETS)}, all", file=sys.stderr)
        return 2
    try:
        for name in names:
            outcome = TARGETS[name](lambda m: print(m, file=sys.stderr))
            state = "built" if outcome.built else "up to date"
            print(f"{outcome.image}: {state} ({outcome.content_hash})")
    except ImageBuildError as err:
        print(f"image build failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
