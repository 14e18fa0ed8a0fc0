# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small Docker Engine API client over the engine's Unix socket, standard library only.

The health probe and the image module run on the target host, where neither the Docker SDK nor
`requests` may be installed, and must never hang: every call has a timeout, and streams have an
idle timeout so a stalled pull is noticed.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import socket
import struct
import tarfile
import time

try:
    from http.client import HTTPConnection, HTTPException
    from urllib.parse import quote, urlencode
except ImportError:  # pragma: no cover - Python 2 is not supported on targets, this keeps imports safe
    from httplib import HTTPConnection, HTTPException  # type: ignore
    from urllib import quote, urlencode  # type: ignore

DEFAULT_SOCKET = "/var/run/docker.sock"
API_PREFIX = "/v1.41"  # engine 20.10; newer engines answer it too


class DockerUnavailable(Exception):
    """The engine's socket is missing, refuses, or does not answer in time."""


class DockerAPIError(Exception):
    """The engine answered with an error status."""

    def __init__(self, status, message):
        super(DockerAPIError, self).__init__("%s: %s" % (status, message))
        self.status = status
        self.message = message


class StreamIdle(Exception):
    """A streaming response sent nothing for its idle timeout."""


class _UnixHTTPConnection(HTTPConnection):
    def __init__(self, socket_path, timeout):
        HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def json_body(body):
    if not body:
        return None
    return json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)


def _error_message(body):
    try:
        return (json_body(body) or {}).get("message") or body.decode("utf-8", "replace")
    except ValueError:
        return body.decode("utf-8", "replace")


class DockerClient(object):
    def __init__(self, socket_path=DEFAULT_SOCKET):
        self.socket_path = socket_path

    def _open(self, method, path, query=None, headers=None, body=None, timeout=10):
        url = API_PREFIX + path
        if query:
            url += "?" + urlencode(dict((k, v) for k, v in query.items() if v is not None))
        payload = None
        all_headers = {"Host": "docker"}
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        conn = _UnixHTTPConnection(self.socket_path, timeout)
        try:
            conn.request(method, url, body=payload, headers=all_headers)
            return conn, conn.getresponse()
        except (socket.error, socket.timeout, HTTPException, OSError) as err:
            conn.close()
            raise DockerUnavailable("engine at %s: %s" % (self.socket_path, err))

    def request(self, method, path, query=None, headers=None, body=None, timeout=10):
        """One call; returns (status, headers, body bytes). Raises DockerUnavailable only."""
        conn, response = self._open(method, path, query, headers, body, timeout)
        try:
            data = response.read()
            return response.status, dict(response.getheaders()), data
        except (socket.error, socket.timeout, HTTPException, OSError) as err:
            raise DockerUnavailable("engine at %s: %s" % (self.socket_path, err))
        finally:
            conn.close()

    def get_json(self, path, query=None, timeout=10):
        status, _headers, body = self.request("GET", path, query=query, timeout=timeout)
        if status >= 400:
            raise DockerAPIError(status, _error_message(body))
        return json_body(body)

    def ping(self, timeout=5):
        status, _headers, body = self.request("GET", "/_ping", timeout=timeout)
        if status != 200:
            raise DockerAPIError(status, _error_message(body))
        return body.decode("utf-8", "replace").strip()

    def version(self, timeout=5):
        return self.get_json("/version", timeout=timeout)

    def inspect_container(self, name, timeout=10):
        """The container's inspect document, or None when it does not exist."""
        status, _headers, body = self.request("GET", "/containers/%s/json" % quote(name, safe=""), timeout=timeout)
        if status == 404:
            return None
        if status >= 400:
            raise DockerAPIError(status, _error_message(body))
        return json_body(body)

    def container_logs(self, name, tail=20, timeout=10):
        """The last `tail` lines of stdout and stderr, as text (the multiplexed stream demuxed)."""
        status, headers, body = self.request(
            "GET", "/containers/%s/logs" % quote(name, safe=""),
            query={"stdout": 1, "stderr": 1, "tail": tail}, timeout=timeout)
        if status >= 400:
            raise DockerAPIError(status, _error_message(body))
        content_type = headers.get("Content-Type", headers.get("content-type", ""))
        if "multiplexed" in content_type or _looks_multiplexed(body):
            return demux(body)
        return body.decode("utf-8", "replace")

    def get_archive_file(self, name, path, timeout=10):
        """The bytes of one file inside a container (the archive endpoint returns a tar)."""
        status, _headers, body = self.request(
            "GET", "/containers/%s/archive" % quote(name, safe=""), query={"path": path}, timeout=timeout)
        if status >= 400:
            raise DockerAPIError(status, _error_message(body))
        with tarfile.open(fileobj=io.BytesIO(body)) as archive:
            for member in archive.getmembers():
                if member.isfile():
                    return archive.extractfile(member).read()
        raise DockerAPIError(404, "no file at %s in %s" % (path, name))

    def stream_json(self, method, path, query=None, headers=None, timeout=30, idle_timeout=60):
        """Yield the JSON documents of a streaming response (e.g. a pull's progress messages).

        Raises StreamIdle when no byte arrives for idle_timeout seconds, DockerAPIError for an
        error status, DockerUnavailable when the socket fails.
        """
        conn, response = self._open(method, path, query, headers, None, timeout)
        try:
            if response.status >= 400:
                raise DockerAPIError(response.status, _error_message(response.read()))
            conn.sock.settimeout(idle_timeout)
            decoder = json.JSONDecoder()
            buffer = ""
            while True:
                try:
                    chunk = response.read1(65536) if hasattr(response, "read1") else response.read(4096)
                except socket.timeout:
                    raise StreamIdle("no data for %ss" % idle_timeout)
                except (socket.error, HTTPException, OSError) as err:
                    raise DockerUnavailable("stream from %s broke: %s" % (self.socket_path, err))
                if not chunk:
                    break
                buffer += chunk.decode("utf-8", "replace")
                while True:
                    stripped = buffer.lstrip()
                    if not stripped:
                        buffer = ""
                        break
                    try:
                        document, end = decoder.raw_decode(stripped)
                    except ValueError:
                        buffer = stripped
                        break
                    buffer = stripped[end:]
                    yield document
        finally:
            conn.close()


def _looks_multiplexed(body):
    return len(body) >= 8 and body[0:1] in (b"\x00", b"\x01", b"\x02") and body[1:4] == b"\x00\x00\x00"


def demux(body):
    """Docker's multiplexed log stream: 8-byte frame headers (stream, 0, 0, 0, size) + payload."""
    out = []
    offset = 0
    while offset + 8 <= len(body):
        size = struct.unpack(">I", body[offset + 4:offset + 8])[0]
        out.append(body[offset + 8:offset + 8 + size])
        offset += 8 + size
    return b"".join(out).decode("utf-8", "replace")


def monotonic():
    return time.monotonic() if hasattr(time, "monotonic") else time.time()
