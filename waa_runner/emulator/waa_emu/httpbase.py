"""The one quiet server base: threaded, reusable address, no tracebacks on stderr, and the
emulator's State on the server so every handler reads it as `self.server.state`."""
from __future__ import annotations

import socketserver
import threading
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .state import State

S = TypeVar("S", bound=socketserver.BaseServer)


class _Quiet:
    daemon_threads = True
    allow_reuse_address = True
    state: "State"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that goes away mid-answer is normal; the real servers do not log it either


class QuietHTTPServer(_Quiet, ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], handler: Any, state: "State") -> None:
        self.state = state
        super().__init__(address, handler)


class QuietTCPServer(_Quiet, socketserver.ThreadingTCPServer):
    def __init__(self, address: tuple[str, int], handler: Any, state: "State") -> None:
        self.state = state
        super().__init__(address, handler)


def serve(server: S, poll_interval: float = 0.2) -> S:
    """Run a server in a daemon thread; stop it with server.shutdown() and server.server_close()."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True).start()
    return server


def state_of(handler: socketserver.BaseRequestHandler) -> "State":
    server = handler.server
    assert isinstance(server, _Quiet), "emulator handlers run only under the quiet servers"
    return server.state
