"""Port 5000 in the guest: the WAA server's HTTP layer, as Flask 3.0 (debug mode) and Werkzeug
answer: the request parsing (JSON, forms, multipart), jsonify, errors through the server's
errorhandler(Exception) (every error is 500 {"status": "error", "message": ...}), and the faults
server_down and server_hang. The routes themselves are in guest_routes.py and guest_checks.py."""
from __future__ import annotations

import json
import select
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlparse

from .config import TICK_S
from .httpbase import QuietHTTPServer, state_of
from .state import State

MAX_BODY_BYTES = 32 << 20
HTTP_ERRORS: Mapping[int, tuple[str, str]] = MappingProxyType({
    400: ("Bad Request", "The browser (or proxy) sent a request that this server could not understand."),
    404: ("Not Found", "The requested URL was not found on the server. If you entered the URL manually please "
                       "check your spelling and try again."),
    405: ("Method Not Allowed", "The method is not allowed for the requested URL."),
    413: ("Request Entity Too Large", "The data value transmitted exceeds the capacity limit."),
    415: ("Unsupported Media Type", "Did not attempt to load JSON data because the request Content-Type was not "
                                    "'application/json'."),
})


class GuestError(Exception):
    """Raised inside a route: the server's errorhandler(Exception) answers 500 with its message."""


def http_error(status: int, description: str | None = None) -> GuestError:
    """A werkzeug HTTPException as str(): '404 Not Found: The requested URL ...'."""
    name, default = HTTP_ERRORS[status]
    return GuestError(f"{status} {name}: {description or default}")


def jsonify_bytes(payload: Any) -> bytes:
    """Flask 3 jsonify with app.run(debug=True): sorted keys, indent 2, a trailing newline."""
    return (json.dumps(payload, sort_keys=True, indent=2) + "\n").encode()


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def jsonify(payload: Any, status: int = 200) -> Response:
    return Response(status, jsonify_bytes(payload), "application/json")


def text(body: str, status: int = 200) -> Response:
    return Response(status, body.encode(), "text/html; charset=utf-8")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    @property
    def mimetype(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def arg(self, name: str, default: str) -> str:
        return self.query.get(name, [default])[0]

    def json(self) -> Any:
        """Flask 3's request.json: 415 unless the body is sent as JSON, 400 when it is not JSON."""
        if not (self.mimetype == "application/json" or
                (self.mimetype.startswith("application/") and self.mimetype.endswith("+json"))):
            raise http_error(415)
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as err:  # UnicodeDecodeError included
            raise http_error(400, f"Failed to decode JSON object: {err}") from None

    def _multipart(self) -> EmailMessage:
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        message = BytesParser(_class=EmailMessage, policy=HTTP).parsebytes(head + self.body)
        assert isinstance(message, EmailMessage)
        return message

    def form(self) -> dict[str, str]:
        """request.form: urlencoded or multipart fields (files excluded); {} for other bodies."""
        if self.mimetype == "application/x-www-form-urlencoded":
            return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if self.mimetype == "multipart/form-data":
            fields = {}
            for part in self._multipart().iter_parts():
                name = part.get_param("name", header="content-disposition")
                if isinstance(name, str) and part.get_filename() is None:
                    payload = part.get_payload(decode=True)
                    fields[name] = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            return fields
        return {}

    def files(self) -> dict[str, tuple[str, bytes]]:
        """request.files: name -> (filename, bytes)."""
        if self.mimetype != "multipart/form-data":
            return {}
        found = {}
        for part in self._multipart().iter_parts():
            name, filename = part.get_param("name", header="content-disposition"), part.get_filename()
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and filename is not None:
                found[name] = (filename, payload if isinstance(payload, bytes) else b"")
        return found


RouteFunc = Callable[[State, Request], Response]


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    func: RouteFunc


def dispatch(state: State, routes: tuple[Route, ...], request: Request) -> Response:
    """Flask's routing and the server's errorhandler(Exception): every failure is a 500."""
    try:
        matches = [route for route in routes if route.path == request.path]
        if not matches:
            raise http_error(404)
        method = "GET" if request.method == "HEAD" else request.method
        route = next((r for r in matches if method in r.methods), None)
        if route is None:
            raise http_error(405)
        return route.func(state, request)
    except Exception as err:  # @app.errorhandler(Exception) -> jsonify({"status": "error", ...}), 500
        return jsonify({"status": "error", "message": str(err)}, 500)


def wait_while_hung(state: State, sock: socket.socket) -> bool:
    """server_hang: hold the connection without answering. False when the client went away."""
    while state.faults.has("server_hang"):
        try:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable and sock.recv(1, socket.MSG_PEEK) == b"":
                return False
        except OSError:
            return False
    return True


class GuestHandler(BaseHTTPRequestHandler):
    server_version = "Werkzeug/3.0.3"
    sys_version = "Python/3.9.13"
    protocol_version = "HTTP/1.1"
    timeout = 120  # seconds a client may stay silent mid-request or idle between keep-alive requests

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        state = state_of(self)
        if state.faults.has("server_down"):  # the server died: the connection closes without an answer
            self.close_connection = True
            return
        if state.faults.has("server_hang") and not wait_while_hung(state, self.connection):
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            response = jsonify({"status": "error", "message": str(http_error(413))}, 500)
            self.close_connection = True
        else:
            url = urlparse(self.path)
            request = Request(self.command, url.path, parse_qs(url.query), self.headers,
                              self.rfile.read(length) if length else b"")
            response = dispatch(state, getattr(self.server, "routes", ()), request)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = _dispatch


class GuestHTTPServer(QuietHTTPServer):
    def __init__(self, address: tuple[str, int], state: State, routes: tuple[Route, ...]) -> None:
        self.routes = routes
        super().__init__(address, GuestHandler, state)


class GuestServer:
    """The guest's WAA server socket: listening only while the guest server is up."""

    def __init__(self, state: State, routes: tuple[Route, ...]) -> None:
        self.state = state
        self.routes = routes
        self.server: GuestHTTPServer | None = None
        self.failed = False

    def reconcile(self) -> None:
        want = self.state.machine.server_should_listen()
        settings = self.state.settings
        if want and self.server is None and not self.failed:
            try:
                self.server = GuestHTTPServer((settings.guest_addr, settings.guest_port), self.state, self.routes)
            except OSError as err:
                self.failed = True
                self.state.log.emu(f"cannot listen on the guest address {settings.guest_addr}:{settings.guest_port}: "
                                   f"{err} (WAA_EMU_GUEST_ADDR)")
                return
            threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": TICK_S},
                             daemon=True).start()
        elif not want and self.server is not None:
            server, self.server = self.server, None
            server.shutdown()
            server.server_close()
