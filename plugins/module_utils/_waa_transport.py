# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One socket exchange under one TOTAL deadline and one byte cap: the transport under HTTP (the
WAA server, noVNC), QMP and the Docker engine's API. Standard library only (runs on the target).

A per-read timeout bounds each wait for data, not the exchange: a peer that trickles a byte every
half second would keep a `socket.settimeout(5)` reader busy forever. Here the deadline is a
monotonic instant fixed when the exchange starts (connect included) and re-applied before every
send and recv as `settimeout(remaining)`; every byte received counts against `max_bytes`.

Private module (its names may change); the stable entry points are waa_health and waa_docker_api.

    Exchange(sock, end, max_bytes, what, idle=None)   .send(data) .recv(n) .close()
    connect_tcp(host, port, end, what) / connect_unix(path, end, what) -> socket
    HTTPResponse(exchange, method)   .status .reason .headers (list) .header(name) .body(cap) .iter_body()
    http_request(connect, method, target, host_header, end, max_bytes, headers=None, body=None) -> HTTPResponse
    http_get(host, port, path, timeout, max_bytes) -> (status, body bytes)
    qmp_session(host, port, commands, timeout, max_bytes=...) -> [reply, ...]
    TransportError, Timeout(TransportError), Idle(Timeout), TooLarge(TransportError)
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import socket
import time

READ_SIZE = 65536
MAX_HEAD = 64 * 1024  # status line + headers
MAX_LINE = 8 * 1024  # one header or chunk-size line
MAX_QMP = 1 << 20  # a QMP session's replies (query-status, screendump) are a few hundred bytes


def monotonic():
    return time.monotonic()


class TransportError(Exception):
    """The exchange failed: refused, reset, closed early, or not the protocol expected."""


class Timeout(TransportError):
    """The exchange's total deadline passed."""


class Idle(Timeout):
    """No byte arrived for the idle timeout (streams only), before the total deadline."""


class TooLarge(TransportError):
    """The peer sent more than the cap allows."""


def mb(size):
    return "%d MB" % (size // (1 << 20)) if size >= 1 << 20 and size % (1 << 20) == 0 else "%d bytes" % size


def describe(err):
    """A short, stable text for a socket error."""
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, (ConnectionResetError, BrokenPipeError)):
        return "connection closed without an answer"
    if isinstance(err, FileNotFoundError):
        return "no such socket"
    if getattr(err, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    return str(err) or type(err).__name__


class Exchange(object):
    """A connected socket, a monotonic `end` and a byte cap. `idle` (streams): a recv that waits
    longer than this raises Idle even though the total deadline is further away."""

    def __init__(self, sock, end, max_bytes, what, idle=None):
        self.sock = sock
        self.end = end
        self.max_bytes = max_bytes
        self.what = what
        self.idle = idle
        self.received = 0

    def _arm(self):
        left = self.end - monotonic()
        if left <= 0:
            raise Timeout("%s: the deadline passed" % self.what)
        if self.idle is not None and self.idle < left:
            self.sock.settimeout(self.idle)
            return True
        self.sock.settimeout(left)
        return False

    def send(self, data):
        self._arm()  # since Python 3.5 the timeout bounds the whole sendall
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise Timeout("%s: the deadline passed while sending" % self.what)
        except (socket.error, OSError) as err:
            raise TransportError("%s: %s" % (self.what, describe(err)))

    def recv(self, size=READ_SIZE):
        """Up to `size` bytes; b"" at the end of the stream. Timeout, Idle or TooLarge otherwise."""
        idle_bound = self._arm()
        try:
            data = self.sock.recv(size)
        except socket.timeout:
            if idle_bound and self.end - monotonic() > 0:
                raise Idle("%s: no data for %ss" % (self.what, self.idle))
            raise Timeout("%s: the deadline passed" % self.what)
        except (socket.error, OSError) as err:
            raise TransportError("%s: %s" % (self.what, describe(err)))
        self.received += len(data)
        if self.max_bytes is not None and self.received > self.max_bytes:
            raise TooLarge("%s: the answer is larger than %s (refused)" % (self.what, mb(self.max_bytes)))
        return data

    def close(self):
        try:
            self.sock.close()
        except (socket.error, OSError):
            pass


def _left(end, what):
    left = end - monotonic()
    if left <= 0:
        raise Timeout("%s: the deadline passed before connecting" % what)
    return left


def connect_tcp(host, port, end, what):
    try:
        return socket.create_connection((host, port), timeout=_left(end, what))
    except socket.timeout:
        raise Timeout("%s: no connection before the deadline" % what)
    except (socket.error, OSError) as err:
        raise TransportError("%s: %s" % (what, describe(err)))


def connect_unix(path, end, what):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_left(end, what))
        sock.connect(path)
        return sock
    except socket.timeout:
        sock.close()
        raise Timeout("%s: no connection before the deadline" % what)
    except (socket.error, OSError) as err:
        sock.close()
        raise TransportError("%s: %s" % (what, describe(err)))
    except Exception:
        sock.close()
        raise


class HTTPResponse(object):
    """An HTTP/1.x answer read from an Exchange: status line and headers at once, the body on
    demand (Content-Length, chunked, or until the peer closes), always under the exchange's
    deadline and cap."""

    def __init__(self, exchange, method="GET"):
        self.exchange = exchange
        self.what = exchange.what
        self.buffer = bytearray()
        self.eof = False
        while True:
            self._read_head()
            if not 100 <= self.status < 200:
                break
        self.method = method
        self._framing()

    # -- reading ----------------------------------------------------------------------------------
    def _more(self):
        if self.eof:
            return False
        data = self.exchange.recv(READ_SIZE)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _line(self, limit, what):
        start = 0
        while True:
            index = self.buffer.find(b"\n", start)
            if index >= 0:
                line = bytes(self.buffer[:index + 1])
                del self.buffer[:index + 1]
                return line.rstrip(b"\r\n")
            if len(self.buffer) > limit:
                raise TooLarge("%s: %s longer than %d bytes" % (self.what, what, limit))
            start = len(self.buffer)
            if not self._more():
                if not self.buffer and what == "status line":
                    raise TransportError("%s: connection closed without an answer" % self.what)
                raise TransportError("%s: connection closed inside the %s" % (self.what, what))

    def _read_head(self):
        line = self._line(MAX_LINE, "status line")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise TransportError("%s: not an HTTP answer: %r" % (self.what, line[:60]))
        self.version = parts[0].decode("latin-1")
        self.status = int(parts[1])
        self.reason = parts[2].decode("latin-1", "replace") if len(parts) > 2 else ""
        self.headers = []
        size = len(line)
        while True:
            line = self._line(MAX_LINE, "headers")
            size += len(line) + 2
            if size > MAX_HEAD:
                raise TooLarge("%s: headers larger than %d bytes" % (self.what, MAX_HEAD))
            if not line:
                return
            if line[:1] in (b" ", b"\t") and self.headers:  # obsolete line folding
                name, value = self.headers[-1]
                self.headers[-1] = (name, value + " " + line.strip().decode("latin-1"))
                continue
            name, sep, value = line.partition(b":")
            if not sep:
                raise TransportError("%s: malformed header %r" % (self.what, line[:60]))
            self.headers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))

    def header(self, name, default=None):
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default

    def _framing(self):
        self.chunked = False
        self.length = None
        if self.method == "HEAD" or self.status in (204, 304):
            self.length = 0
            return
        if "chunked" in (self.header("Transfer-Encoding") or "").lower():
            self.chunked = True
            return
        length = self.header("Content-Length")
        if length is not None:
            try:
                self.length = int(length.split(",")[0].strip())
            except ValueError:
                raise TransportError("%s: bad Content-Length %r" % (self.what, length[:40]))
            if self.length < 0:
                raise TransportError("%s: bad Content-Length %r" % (self.what, length[:40]))

    def _take(self, limit):
        """Up to `limit` buffered-or-received bytes (at least one unless at EOF)."""
        if not self.buffer:
            self._more()
        piece = bytes(self.buffer[:limit])
        del self.buffer[:limit]
        return piece

    def iter_body(self, max_bytes=None):
        """The body's pieces as they arrive; TooLarge once more than `max_bytes` (None: the
        exchange's cap only)."""
        seen = 0
        for piece in self._pieces():
            seen += len(piece)
            if max_bytes is not None and seen > max_bytes:
                raise TooLarge("%s: the answer is larger than %s (refused)" % (self.what, mb(max_bytes)))
            yield piece

    def _pieces(self):
        if self.chunked:
            while True:
                line = self._line(MAX_LINE, "chunk header")
                try:
                    size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                except ValueError:
                    raise TransportError("%s: bad chunk header %r" % (self.what, line[:40]))
                if size == 0:
                    while self._line(MAX_LINE, "trailers"):
                        pass
                    return
                while size > 0:
                    piece = self._take(min(size, READ_SIZE))
                    if not piece:
                        raise TransportError("%s: connection closed inside the body" % self.what)
                    size -= len(piece)
                    yield piece
                self._line(MAX_LINE, "chunk end")
        elif self.length is not None:
            left = self.length
            while left > 0:
                piece = self._take(min(left, READ_SIZE))
                if not piece:
                    raise TransportError("%s: connection closed inside the body (%d of %d bytes)"
                                         % (self.what, self.length - left, self.length))
                left -= len(piece)
                yield piece
        else:
            while True:
                piece = self._take(READ_SIZE)
                if not piece:
                    return
                yield piece

    def body(self, max_bytes=None):
        out = bytearray()
        for piece in self.iter_body(max_bytes):
            out += piece
        return bytes(out)

    def close(self):
        self.exchange.close()


def http_request(connect, method, target, host_header, end, max_bytes, headers=None, body=None, what=None,
                 idle=None):
    """Send one request on a new connection (`connect(end)` -> socket) and read the head of the
    answer; the caller reads the body and closes. `Connection: close` is always sent."""
    what = what or target
    sock = connect(end)
    # The body cap is checked on the body (iter_body); this one also bounds headers and chunk
    # framing, with room for the read-ahead, so a body over its cap is named by the body's cap.
    exchange = Exchange(sock, end, None if max_bytes is None else max_bytes + MAX_HEAD + 4 * READ_SIZE, what,
                        idle=idle)
    try:
        lines = ["%s %s HTTP/1.1" % (method, target), "Host: %s" % host_header, "Connection: close",
                 "Accept-Encoding: identity"]
        for name, value in (headers or {}).items():
            lines.append("%s: %s" % (name, value))
        payload = body or b""
        if payload or method in ("POST", "PUT"):
            lines.append("Content-Length: %d" % len(payload))
        exchange.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        return HTTPResponse(exchange, method)
    except Exception:
        exchange.close()
        raise


def http_get(host, port, path, timeout, max_bytes):
    """(status, body bytes) of `GET path` on host:port, all of it within `timeout` seconds."""
    end = monotonic() + timeout
    what = "%s:%s%s" % (host, port, path)
    response = http_request(lambda end_: connect_tcp(host, port, end_, what), "GET", path,
                            "%s:%s" % (host, port), end, max_bytes, what=what)
    try:
        return response.status, response.body(max_bytes)
    finally:
        response.close()


def open_get(host, port, path, timeout, max_bytes):
    """The HTTPResponse of `GET path` (head read), for callers that stream the body; close it."""
    end = monotonic() + timeout
    what = "%s:%s%s" % (host, port, path)
    return http_request(lambda end_: connect_tcp(host, port, end_, what), "GET", path,
                        "%s:%s" % (host, port), end, max_bytes, what=what)


class _QMPReader(object):
    def __init__(self, exchange):
        self.exchange = exchange
        self.buffer = ""
        self.decoder = json.JSONDecoder()

    def next(self):
        while True:
            stripped = self.buffer.lstrip()
            if stripped:
                try:
                    document, end = self.decoder.raw_decode(stripped)
                except RecursionError:
                    raise TransportError("%s: sent JSON nested too deep" % self.exchange.what)
                except ValueError:
                    if not stripped.startswith("{"):  # every QMP message is an object: this is garbage
                        raise TransportError("%s: sent something that is not JSON: %r"
                                             % (self.exchange.what, stripped[:60]))
                else:
                    self.buffer = stripped[end:]
                    if not isinstance(document, dict):
                        raise TransportError("%s: sent %r" % (self.exchange.what, document))
                    return document
            chunk = self.exchange.recv(READ_SIZE)
            if not chunk:
                raise TransportError("%s: connection closed" % self.exchange.what)
            self.buffer += chunk.decode("utf-8", "replace")


def qmp_session(host, port, commands, timeout, max_bytes=MAX_QMP):
    """Run QMP commands after the capabilities handshake, all within `timeout` seconds (connect,
    greeting, every reply); returns the replies in order. Events in between are skipped."""
    what = "QMP %s:%s" % (host, port)
    end = monotonic() + timeout
    exchange = Exchange(connect_tcp(host, port, end, what), end, max_bytes, what)
    reader = _QMPReader(exchange)
    try:
        greeting = reader.next()
        if "QMP" not in greeting:
            raise TransportError("%s: unexpected greeting %r" % (what, greeting))
        replies = []
        for command in [{"execute": "qmp_capabilities"}] + list(commands):
            exchange.send(json.dumps(command).encode("utf-8") + b"\r\n")
            reply = reader.next()
            while "event" in reply:
                reply = reader.next()
            replies.append(reply)
        return replies[1:]
    finally:
        exchange.close()
