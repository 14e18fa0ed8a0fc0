"""A real container registry on this machine, and a TCP proxy in front of it that stalls.

No registry on the internet is reachable from the machines this project is tested on, and a
fake HTTP server would not exercise the engine's real pull. So pull tests run Debian's
`docker-registry` (the distribution project's server, image `waa-registry:latest`, built by
`python -m waa_runner.images registry`) in a container published on 127.0.0.1:<port>. The host's
engine treats loopback registries as insecure by default, so plain HTTP works without any
daemon.json change. With `credentials=(user, password)` the registry requires HTTP basic auth
(htpasswd, bcrypt), the way an Azure Container Registry requires a token.

`StallingProxy` forwards 127.0.0.1:<its port> to a registry, but for the first `stalls` blob
downloads it stops forwarding the response after `after` bytes and holds the connection open
sending nothing: the way a pull from Docker Hub in a cloud region stalls for good. With
`slow_start_s` it also answers nothing for that long after the first request (a registry slow
to respond).

With `record=True` the proxy keeps what clients send (capped) and `credentials_seen()` lists the
HTTP basic credentials in their Authorization headers: a registry's own log of who sent which
password, to prove a password reached only its registry.

Every container made here is named `waa-registry-*` and labelled `io.openadapt.waa.test=registry`.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.emulator import TEST_LABEL, docker, poll_until

REGISTRY_IMAGE = "waa-registry:latest"
_CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
"""
_AUTH = """auth:
  htpasswd:
    realm: waa-test-registry
    path: /etc/docker/registry/htpasswd
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def registry_status(port: int, host: str = "127.0.0.1") -> int | None:
    """HTTP status of GET /v2/ (200 open, 401 with auth), or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/v2/", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ValueError):
        return None


def htpasswd_line(user: str, password: str) -> str:
    """`user:$2b$...`: the registry's htpasswd accepts bcrypt only (glibc's libcrypt makes it)."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # removed in Python 3.13; libcrypt below does the same

        return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}"
    except ImportError:
        import ctypes
        import secrets

        libcrypt = ctypes.CDLL("libcrypt.so.1")
        libcrypt.crypt.restype = ctypes.c_char_p
        alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        salt = "$2b$10$" + "".join(secrets.choice(alphabet) for _ in range(22))
        return f"{user}:{libcrypt.crypt(password.encode(), salt.encode()).decode()}"


@dataclass
class LocalRegistry:
    name: str
    port: int
    credentials: tuple[str, str] | None = None
    network: str | None = None
    alias: str | None = None
    config_dir: Path | None = None
    pushed: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        """host:port as the host's engine reaches it."""
        return f"127.0.0.1:{self.port}"

    def reference(self, repository: str, tag: str = "latest") -> str:
        return f"{self.address}/{repository}:{tag}"

    def answers(self) -> bool:
        return registry_status(self.port) == (401 if self.credentials else 200)

    def wait_ready(self, deadline_s: float = 30) -> None:
        poll_until(self.answers, deadline_s=deadline_s, what=f"registry {self.name} on {self.address}", interval_s=0.2)

    def stop(self) -> None:
        docker("stop", "-t", "2", self.name)

    def start(self) -> None:
        docker("start", self.name)

    def push(self, image: str, repository: str, tag: str = "latest") -> str:
        """Push a local image as <repository>:<tag>; returns its digest (sha256:...)."""
        target = self.reference(repository, tag)
        docker("tag", image, target)
        env = None
        config = None
        if self.credentials:
            # A private client config: the password never lands in ~/.docker/config.json.
            config = tempfile.mkdtemp(prefix="waa-registry-client-")
            env = {**os.environ, "DOCKER_CONFIG": config}
            user, password = self.credentials
            login = subprocess.run(["docker", "login", "-u", user, "--password-stdin", self.address],
                                   input=password, capture_output=True, text=True, env=env, timeout=60)
            if login.returncode != 0:
                raise RuntimeError(f"docker login {self.address} failed: {login.stderr.strip()}")
        try:
            proc = subprocess.run(["docker", "push", target], capture_output=True, text=True, env=env, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"docker push {target} failed: {proc.stderr.strip()}")
        finally:
            if config:
                shutil.rmtree(config, ignore_errors=True)
        digests = [d for d in json.loads(docker("image", "inspect", target).stdout)[0]["RepoDigests"]
                   if d.startswith(f"{self.address}/{repository}@")]
        self.pushed.append(target)
        # Drop the name and the digest reference the push made: a later pull of this reference must
        # not find the image locally through them (it stays under `image`).
        docker("rmi", target, *digests, check=False)
        return digests[0].split("@", 1)[1]

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)
        if self.config_dir:
            shutil.rmtree(self.config_dir, ignore_errors=True)


def start_registry(*, name: str | None = None, port: int | None = None, credentials: tuple[str, str] | None = None,
                   network: str | None = None, alias: str | None = None) -> LocalRegistry:
    """Start a registry on 127.0.0.1:<port> (a free one by default), optionally on a Docker network
    under an alias (how test hosts on that network reach it), optionally with basic auth."""
    from waa_runner import images

    images.ensure_registry(lambda message: None)
    registry = LocalRegistry(name=name or f"waa-registry-{uuid.uuid4().hex[:8]}", port=port or free_port(),
                             credentials=credentials, network=network, alias=alias)
    argv = ["run", "-d", "--name", registry.name, "--label", f"{TEST_LABEL}=registry",
            "-p", f"127.0.0.1:{registry.port}:5000"]
    if network:
        argv += ["--network", network]
        if alias:
            argv += ["--network-alias", alias]
    if credentials:
        registry.config_dir = Path(tempfile.mkdtemp(prefix="waa-registry-config-"))
        (registry.config_dir / "config.yml").write_text(_CONFIG + _AUTH)
        (registry.config_dir / "htpasswd").write_text(htpasswd_line(*credentials) + "\n")
        argv += ["-v", f"{registry.config_dir}:/etc/docker/registry:ro"]
    docker(*argv, REGISTRY_IMAGE)
    try:
        registry.wait_ready()
    except AssertionError:
        logs = docker("logs", registry.name, check=False)
        registry.remove()
        raise AssertionError(f"registry {registry.name} did not answer: {logs.stdout}{logs.stderr}") from None
    return registry


class StallingProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<upstream_port>. The first `stalls` responses to a blob GET
    stop after `after` bytes and then send nothing while the connection stays open (up to
    `hold_s`). With `slow_start_s`, requests that arrive within that many seconds of the first
    one wait until then. Records when each stall began and when every later blob request came in, so a
    test can measure how fast a client noticed the stall."""

    RECORD_CAP = 4 << 20

    def __init__(self, upstream_port: int, stalls: int = 1, after: int = 256 * 1024, hold_s: float = 120,
                 slow_start_s: float = 0, record: bool = False) -> None:
        self.upstream_port = upstream_port
        self.record = record
        self.received = bytearray()  # what clients sent, when recording (requests only: small)
        # requests in the first slow_start_s seconds after the first one wait until then (a slow registry)
        self.slow_start_s = slow_start_s
        self.slow_until: float | None = None
        self.stalls = stalls
        self.after = after
        self.hold_s = hold_s
        self.stalled = 0
        self.stall_started: list[float] = []
        self.blob_requests: list[float] = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "StallingProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            upstream.settimeout(None)
            first = client.recv(65536)
        except OSError:
            client.close()
            return
        with self.lock:
            if self.slow_until is None:
                self.slow_until = time.monotonic() + self.slow_start_s
        wait = self.slow_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        blob = first.startswith(b"GET ") and b"/blobs/sha256:" in first.split(b"\r\n", 1)[0]
        if blob:
            with self.lock:
                self.blob_requests.append(time.monotonic())
        self._keep(first)
        upstream.sendall(first)
        threading.Thread(target=self._pipe, args=(client, upstream, None, self._keep), daemon=True).start()
        self._pipe(upstream, client, self.after if blob else None)

    def _take_stall(self) -> bool:
        with self.lock:
            if self.stalled < self.stalls:
                self.stalled += 1
                self.stall_started.append(time.monotonic())
                return True
            return False

    def _keep(self, data: bytes) -> None:
        if self.record:
            with self.lock:
                self.received += data[: max(0, self.RECORD_CAP - len(self.received))]

    def credentials_seen(self) -> list[tuple[str, str]]:
        """(user, password) of every `Authorization: Basic` header clients sent through the proxy."""
        import base64
        import re

        with self.lock:
            text = bytes(self.received)
        seen = []
        for match in re.finditer(rb"(?im)^authorization:\s*basic\s+([A-Za-z0-9+/=]+)\s*$", text):
            user, _, password = base64.b64decode(match.group(1)).decode("utf-8", "replace").partition(":")
            seen.append((user, password))
        return seen

    def _pipe(self, source: socket.socket, target: socket.socket, limit: int | None,
              keep=None) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if keep is not None:
                    keep(data)
                if limit is not None and sent + len(data) > limit and self._take_stall():
                    target.sendall(data[: max(0, limit - sent)])
                    deadline = time.monotonic() + self.hold_s
                    while self.open and time.monotonic() < deadline:  # hold the connection, send nothing
                        time.sleep(0.2)
                    break
                target.sendall(data)
                sent += len(data)
                if limit is not None and sent > limit:
                    limit = None  # this response was not one to stall
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.open = False
        try:
            self.listener.close()
        except OSError:
            pass
