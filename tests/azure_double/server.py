"""The Azure double's network side: one loopback port that is at once

* an HTTP CONNECT proxy (clients use it through HTTPS_PROXY): CONNECT management.azure.com:443 is
  answered by the double itself, which terminates TLS with a certificate from its test CA and then
  serves ARM on that connection; every other CONNECT target, and any absolute-URI (forward-proxy)
  request, is refused with 403 and remembered in `state.refused`. Nothing is ever forwarded.
* a managed-identity token endpoint, App Service flavour (IDENTITY_ENDPOINT + IDENTITY_HEADER),
  at http://127.0.0.1:PORT/token (clients reach it directly: NO_PROXY covers 127.0.0.1).
"""
from __future__ import annotations

import json
import os
import secrets
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping

from . import arm
from .ca import ARM_HOST, TestCA, generate
from .state import ArmState

# Variables that would let a client pick other credentials, another cloud or another proxy: the
# client environment the double hands out never carries them.
SCRUBBED_PREFIXES = ("AZURE_", "ANSIBLE_AZURE_", "ARM_")
SCRUBBED_NAMES = ("MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
                  "IDENTITY_SERVER_THUMBPRINT", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                  "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                  "SSL_CERT_FILE", "SSL_CERT_DIR")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    double: "AzureDouble"

    def handle_error(self, request, client_address) -> None:  # noqa: D401 - quiet: clients hang up
        pass


class _JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection frees its thread after this

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass

    def _send(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""


class _ArmHandler(_JsonHandler):
    """ARM requests on a TLS connection the proxy terminated."""

    def _any(self) -> None:
        double = self.server.double  # type: ignore[attr-defined]
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(400, {"error": {"code": "InvalidRequestContent", "message": "body is not JSON"}})
            return
        path, query = arm.parse_target(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        resp = arm.handle(double.state, arm.Request(self.command, path, query, body, headers))
        self._send(resp.status, resp.body, resp.headers)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _any


class _FrontHandler(_JsonHandler):
    """What arrives on the loopback port in clear: CONNECT, token requests, anything else refused."""

    def do_CONNECT(self) -> None:
        double = self.server.double  # type: ignore[attr-defined]
        host, _, port = self.path.rpartition(":")
        if host.lower() != ARM_HOST or port != "443":
            with double.state.lock:
                double.state.refused.append(f"CONNECT {self.path}")
            self._send(403, {"error": {"code": "RefusedByTestProxy",
                                       "message": f"the Azure double only answers {ARM_HOST}:443"}})
            self.close_connection = True
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        try:
            tls = double.tls_context.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        try:
            _ArmHandler(tls, self.client_address, self.server)
        except (ssl.SSLError, OSError, ConnectionError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass
        self.close_connection = True

    def _refuse_absolute(self) -> bool:
        if self.path.startswith(("http://", "https://")):
            double = self.server.double  # type: ignore[attr-defined]
            with double.state.lock:
                double.state.refused.append(f"{self.command} {self.path}")
            self._read_body()
            self._send(403, {"error": {"code": "RefusedByTestProxy", "message": "the Azure double forwards nothing"}})
            return True
        return False

    def do_GET(self) -> None:
        if self._refuse_absolute():
            return
        path, query = arm.parse_target(self.path)
        if path.rstrip("/") == "/token":
            self._token(query)
            return
        self._send(404, {"error": {"code": "NotFound", "message": path}})

    def _token(self, query: dict[str, str]) -> None:
        double = self.server.double  # type: ignore[attr-defined]
        if self.headers.get("X-IDENTITY-HEADER") != double.identity_header:
            self._send(401, {"error": {"code": "Unauthorized", "message": "X-IDENTITY-HEADER missing or wrong"}})
            return
        resource = query.get("resource") or ""
        with double.state.lock:
            double.state.token_requests += 1
        self._send(200, {"access_token": "double-" + secrets.token_hex(16), "token_type": "Bearer",
                         "expires_on": str(int(time.time()) + 3600), "resource": resource,
                         "client_id": query.get("client_id", "00000000-0000-4000-8000-0000000c11e7")})

    def _other(self) -> None:
        if self._refuse_absolute():
            return
        self._read_body()
        self._send(404, {"error": {"code": "NotFound", "message": self.path}})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _other


class AzureDouble:
    """A local Azure Resource Manager: start() it, give clients env(), inspect/seed `state`."""

    def __init__(self, workdir: Path, state: ArmState | None = None):
        self.workdir = Path(workdir)
        self.state = state or ArmState()
        self.identity_header = secrets.token_hex(12)
        self.ca: TestCA = generate(self.workdir / "ca")
        self.tls_context = self.ca.server_context()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # the Azure CLI's config dir for clients: empty, so no real login is ever picked up
        self.azure_config_dir = self.workdir / "azure-config"
        self.azure_config_dir.mkdir(parents=True, exist_ok=True)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> "AzureDouble":
        server = _Server(("127.0.0.1", 0), _FrontHandler)
        server.double = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="azure-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "AzureDouble":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def reset(self, **state_kwargs: Any) -> ArmState:
        """A fresh, empty world (same port, CA and identity header)."""
        self.state = ArmState(**state_kwargs)
        return self.state

    # -------------------------------------------------------------- client configuration
    @property
    def port(self) -> int:
        assert self._server is not None, "start() the double first"
        return self._server.server_address[1]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def env(self) -> dict[str, str]:
        """The variables a client needs to talk to the double (and only to it)."""
        return {
            "HTTPS_PROXY": self.proxy_url,
            "https_proxy": self.proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": str(self.ca.ca_cert),
            "IDENTITY_ENDPOINT": self.token_url,
            "IDENTITY_HEADER": self.identity_header,
            "AZURE_SUBSCRIPTION_ID": self.state.subscription_id,
            "ANSIBLE_AZURE_AUTH_SOURCE": "msi",
            "AZURE_CONFIG_DIR": str(self.azure_config_dir),
        }

    def client_env(self, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
        """`base` (default os.environ) without any Azure credential, cloud or proxy setting, plus env()."""
        src = dict(os.environ if base is None else base)
        clean = {k: v for k, v in src.items()
                 if not k.startswith(SCRUBBED_PREFIXES) and k not in SCRUBBED_NAMES}
        clean.update(self.env())
        clean.update(extra)
        return clean

    # -------------------------------------------------------------- a raw client, for unit tests
    def request(self, method: str, path: str, body: Any = None, api_version: str | None = "2024-07-01",
                token: str | None = "Bearer test", timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        """One ARM request through the proxy, TLS and all (stdlib only)."""
        import http.client

        sep = "&" if "?" in path else "?"
        target = path + (f"{sep}api-version={api_version}" if api_version else "")
        ctx = ssl.create_default_context(cafile=str(self.ca.ca_cert))
        # dial the proxy; CONNECT to the ARM host; TLS (SNI and name check) for the ARM host
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        conn.set_tunnel(ARM_HOST, 443)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        data = None if body is None else json.dumps(body).encode()
        try:
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, (json.loads(raw) if raw else None)
        finally:
            conn.close()

