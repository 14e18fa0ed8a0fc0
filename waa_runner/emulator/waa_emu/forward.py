"""Port 5000 of the container -> the guest, like the real image's DNAT rule (only with NET_ADMIN)."""
from __future__ import annotations

import socket
import socketserver
import struct
import threading

from .httpbase import QuietTCPServer, serve, state_of
from .state import State


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    try:
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class ForwardHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        settings = state_of(self).settings
        client = self.request
        try:
            upstream = socket.create_connection((settings.guest_addr, settings.guest_port), timeout=3)
        except OSError:  # nothing listens in the guest: reset the client's connection
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        upstream.close()


def container_addresses(fib_trie: str = "/proc/net/fib_trie") -> list[str]:
    """The container's own non-loopback IPv4 addresses: where Docker's published ports arrive."""
    addresses: list[str] = []
    try:
        with open(fib_trie) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return addresses
    for previous, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line:
            address = previous.strip().lstrip("|-+ ").strip()
            if not address.startswith("127.") and address not in addresses:
                addresses.append(address)
    return addresses


def start_forward(state: State, addresses: list[str] | None = None) -> list[QuietTCPServer]:
    addresses = container_addresses() if addresses is None else addresses
    if not addresses:
        state.log.emu("no container address found: the port forward to the guest is missing")
    servers = []
    for address in addresses:
        try:
            servers.append(serve(QuietTCPServer((address, state.settings.guest_port), ForwardHandler, state)))
        except OSError as err:
            state.log.emu(f"cannot forward {address}:{state.settings.guest_port} to the guest: {err}")
    return servers
