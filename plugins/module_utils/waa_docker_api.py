# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small Docker Engine API client over the engine's Unix socket, standard library only.

The health probe and the image module run on the target host, where neither the Docker SDK nor
`requests` may be installed, and must never hang or balloon: every call runs under a TOTAL
deadline (`timeout`: connect, status line, headers and body together; a socket that trickles one
byte every half second cannot stretch it) and reads at most `max_bytes` of body (DockerUnavailable
past it). Streams have an idle timeout so a stalled pull is noticed, and an optional total
`deadline`. The exchange itself is module_utils/_waa_transport.py.

Public API (what roles' modules call)::

    client = DockerClient("/var/run/docker.sock")        # or "unix:///var/run/docker.sock"
    client.request(method, path, query=None, headers=None, body=None, timeout=10, max_bytes=MAX_BODY)
        -> (status, headers dict, body bytes)             # raises DockerUnavailable only
    client.get_json(path, query=None, timeout=10, max_bytes=MAX_BODY)   # DockerAPIError on status >= 400
    client.ping(timeout=5) -> "OK"                        # GET /_ping
    client.version(timeout=5) -> dict                     # GET /version
    client.inspect_container(name, timeout=10, max_bytes=MAX_INSPECT) -> dict or None (missing)
    client.container_logs(name, tail=20, since=None, timeout=10, max_bytes=MAX_LOGS) -> str (demuxed)
    client.get_archive(name, path, timeout=10, max_bytes=MAX_ARCHIVE) -> bytes   # one file of the container
    client.stream_json(method, path, query=None, headers=None, body=None, timeout=30, idle_timeout=60,
                       deadline=None) -> iterator of JSON documents   # StreamIdle when nothing arrives

Paths are API paths without the version prefix ("/images/create"); API_PREFIX is added.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import codecs
import io
import json
import struct
import tarfile

try:
    from urllib.parse import quote, urlencode
except ImportError:  # pragma: no cover - Python 2 is not supported on targets, this keeps imports safe
    from urllib import quote, urlencode  # type: ignore

from ansible_collections.openadapt.waa.plugins.module_utils import _waa_transport as transport

DEFAULT_SOCKET = "/var/run/docker.sock"
API_PREFIX = "/v1.41"  # engine 20.10; newer engines answer it too

MAX_DOCUMENT = 1 << 20  # a streamed document larger than this is garbage, not JSON
MAX_BODY = 16 << 20  # any one answer read whole (image and container inspects are a few KB)
MAX_INSPECT = 4 << 20  # a container's inspect document is a few KB; 4 MB is garbage
MAX_LOGS = 1 << 20  # the last few hundred log lines
MAX_ARCHIVE = (8 << 20) + (64 << 10)  # one screendump PNG (8 MB) and its tar headers
MAX_ERROR_BODY = 64 << 10


class DockerUnavailable(Exception):
    """The engine's socket is missing, refuses, does not answer in time, or sends too much."""


class DockerAPIError(Exception):
    """The engine answered with an error status (`status`, `message`)."""

    def __init__(self, status, message):
        super(DockerAPIError, self).__init__("%s: %s" % (status, message))
        self.status = status
        self.message = message


class StreamIdle(Exception):
    """A streaming response sent no byte for its idle timeout (e.g. a stalled pull)."""

    def __init__(self, idle_timeout, documents=0):
        super(StreamIdle, self).__init__("no data from the engine for %ss (after %d messages)"
                                         % (idle_timeout, documents))
        self.idle_timeout = idle_timeout
        self.documents = documents


def socket_path_of(docker_host):
    """`unix:///var/run/docker.sock` or a plain path -> the path."""
    if not docker_host:
        return DEFAULT_SOCKET
    if docker_host.startswith("unix://"):
        return docker_host[len("unix://"):] or DEFAULT_SOCKET
    return docker_host


def json_body(body):
    """The decoded JSON document; ValueError when it is not JSON (or nested too deep to decode)."""
    if not body:
        return None
    try:
        return json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except RecursionError:
        raise ValueError("the JSON document is nested too deep")


def _error_message(body):
    try:
        return (json_body(body) or {}).get("message") or body.decode("utf-8", "replace").strip()
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace").strip()


def _timeout_text(err):
    text = str(err)
    return text.split(": ", 1)[1] if ": " in text else text


class DockerClient(object):
    def __init__(self, socket_path=DEFAULT_SOCKET):
        self.socket_path = socket_path_of(socket_path)

    def _unavailable(self, err, what="engine"):
        if isinstance(err, transport.Timeout):
            reason = "no complete answer within the deadline (%s)" % _timeout_text(err)
        elif isinstance(err, transport.TransportError):
            reason = _timeout_text(err)
        else:
            reason = str(err) or type(err).__name__
        return DockerUnavailable("%s at %s: %s" % (what, self.socket_path, reason))

    def _open(self, method, path, query=None, headers=None, body=None, timeout=10, max_bytes=MAX_BODY,
              idle=None):
        url = API_PREFIX + path
        if query:
            url += "?" + urlencode([(k, v) for k, v in query.items() if v is not None])
        payload = None
        all_headers = {}
        if body is not None:
            if isinstance(body, bytes):
                payload = body
            else:
                payload = json.dumps(body).encode("utf-8")
                all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        end = transport.monotonic() + timeout
        what = "%s %s" % (method, path)
        try:
            return transport.http_request(
                lambda end_: transport.connect_unix(self.socket_path, end_, what), method, url, "docker", end,
                max_bytes, headers=all_headers, body=payload, what=what, idle=idle)
        except transport.TransportError as err:
            raise self._unavailable(err)

    def request(self, method, path, query=None, headers=None, body=None, timeout=10, max_bytes=MAX_BODY):
        """One call within `timeout` seconds in total; returns (status, headers, body bytes).
        Raises DockerUnavailable only (also for a body larger than `max_bytes`)."""
        response = self._open(method, path, query, headers, body, timeout, max_bytes)
        try:
            data = response.body(max_bytes if response.status < 400 else min(max_bytes, MAX_ERROR_BODY))
            return response.status, dict(response.headers), data
        except transport.TransportError as err:
            raise self._unavailable(err)
        finally:
            response.close()

    def get_json(self, path, query=None, timeout=10, max_bytes=MAX_BODY):
        status, _headers, body = self.request("GET", path, query=query, timeout=timeout, max_bytes=max_bytes)
        if status >= 400:
            raise DockerAPIError(status, _error_message(body))
        return json_body(body)

    def ping(self, timeout=5):
        status, _headers, body = self.request("GET", "/_ping", timeout=timeout, max_bytes=MAX_ERROR_BODY)
        if status != 200:
            raise DockerAPIError(status, _error_message(body))
        return body.decode("utf-8", "replace").strip()

    def version(self, timeout=5):
        return self.get_json("/version", timeout=timeout, max_bytes=MAX_ERROR_BODY)

    def _inspect(self, path, timeout, max_bytes):
        """An inspect document, or None when the engine has no such object (404)."""
        status, _headers, body = self.request("GET", path, timeout=timeout, max_bytes=max_bytes)
        if status == 404:
            return None
        if status >= 400:
            raise DockerAPIError(status, _error_message(body))
        return json_body(body)

    def inspect_container(self, name, timeout=10, max_bytes=MAX_INSPECT):
        """The container's inspect document, or None when it does not exist."""
        return self._inspect("/containers/%s/json" % quote(name, safe=""), timeout, max_bytes)

    def start_container(self, name, timeout=30):
        """Start an existing container; True when it was started, False when it already ran (304)."""
        status, _headers, body = self.request("POST", "/containers/%s/start" % quote(name, safe=""), timeout=timeout,
                                              max_bytes=MAX_ERROR_BODY)
        if status == 304:
            return False
        if status >= 400:
            raise DockerAPIError(status, _error_message(body))
        return True

    def inspect_image(self, reference, timeout=10, max_bytes=MAX_INSPECT):
        """The image's inspect document, or None when the engine has no image of that reference."""
        return self._inspect("/images/%s/json" % quote(reference, safe=""), timeout, max_bytes)

    def container_logs(self, name, tail=20, since=None, timeout=10, max_bytes=MAX_LOGS):
        """The last `tail` lines of stdout and stderr as text (the multiplexed stream demuxed).

        `since` (UNIX seconds) drops lines of the container's earlier runs.
        """
        query = {"stdout": 1, "stderr": 1, "tail": tail if tail is not None else "all"}
        if since:
            query["since"] = int(since)
        status, headers, body = self.request(
            "GET", "/containers/%s/logs" % quote(name, safe=""), query=query, timeout=timeout, max_bytes=max_bytes)
        if status >= 400:
            raise DockerAPIError(status, _error_message(body))
        content_type = dict((k.lower(), v) for k, v in headers.items()).get("content-type", "")
        if "multiplexed" in content_type or looks_multiplexed(body):
            return demux(body)
        return body.decode("utf-8", "replace")

    def get_archive(self, name, path, timeout=10, max_bytes=MAX_ARCHIVE):
        """The bytes of one file inside a container (GET /containers/{name}/archive returns a tar)."""
        status, _headers, body = self.request(
            "GET", "/containers/%s/archive" % quote(name, safe=""), query={"path": path}, timeout=timeout,
            max_bytes=max_bytes)
        if status >= 400:
            raise DockerAPIError(status, _error_message(body))
        try:
            with tarfile.open(fileobj=io.BytesIO(body)) as archive:
                for member in archive.getmembers():
                    if member.isfile():
                        handle = archive.extractfile(member)
                        if handle is not None:
                            return handle.read()
        except (tarfile.TarError, EOFError) as err:
            raise DockerAPIError(status, "the archive of %s in %s is not a tar: %s" % (path, name, err))
        raise DockerAPIError(404, "no regular file at %s in %s" % (path, name))

    get_archive_file = get_archive  # the name the first callers used

    def stream_json(self, method, path, query=None, headers=None, body=None, timeout=30, idle_timeout=60,
                    deadline=None):
        """Yield the JSON documents of a streaming response (e.g. a pull's progress messages).

        Works with chunked, length-delimited and close-delimited bodies, newline-separated or
        concatenated documents, and documents or UTF-8 characters split across chunks.
        `timeout` bounds connecting and the response headers (in total); after that, StreamIdle is
        raised when no byte arrives for `idle_timeout` seconds, and DockerUnavailable when the
        whole stream outlives `deadline` seconds (None: no total bound, a pull may take long).
        DockerAPIError for an error status, DockerUnavailable when the socket fails or the stream
        breaks off inside a document.
        """
        response = self._open(method, path, query, headers, body, timeout, None)
        documents = 0
        try:
            if response.status >= 400:
                try:
                    raise DockerAPIError(response.status, _error_message(response.body(MAX_ERROR_BODY)))
                except transport.TransportError as err:
                    raise DockerAPIError(response.status, "(error body unreadable: %s)" % err)
            exchange = response.exchange
            exchange.end = transport.monotonic() + deadline if deadline is not None else float("inf")
            exchange.idle = idle_timeout
            text = codecs.getincrementaldecoder("utf-8")("replace")
            decoder = json.JSONDecoder()
            buffer = ""
            pieces = response.iter_body()
            while True:
                try:
                    chunk = next(pieces, b"")
                except transport.Idle:
                    raise StreamIdle(idle_timeout, documents)
                except transport.TransportError as err:
                    raise self._unavailable(err, "stream from engine")
                buffer += text.decode(chunk, final=not chunk)
                while True:
                    stripped = buffer.lstrip()
                    if not stripped:
                        buffer = ""
                        break
                    try:
                        document, end = decoder.raw_decode(stripped)
                    except RecursionError:
                        raise DockerUnavailable("stream from engine at %s: JSON nested too deep" % self.socket_path)
                    except ValueError:
                        buffer = stripped
                        if len(buffer) > MAX_DOCUMENT:
                            raise DockerUnavailable("stream from engine at %s: %d bytes that are not JSON: %r"
                                                    % (self.socket_path, len(buffer), buffer[:100]))
                        break
                    buffer = stripped[end:]
                    documents += 1
                    yield document
                if not chunk:
                    if buffer.strip():
                        raise DockerUnavailable("stream from engine at %s ended inside a JSON document: %r"
                                                % (self.socket_path, buffer[:100]))
                    return
        finally:
            response.close()


def looks_multiplexed(body):
    """Docker's multiplexed stream starts with a frame header: stream 0-2, three zero bytes."""
    return len(body) >= 8 and body[0:1] in (b"\x00", b"\x01", b"\x02") and body[1:4] == b"\x00\x00\x00"


_looks_multiplexed = looks_multiplexed


def demux(body):
    """Docker's multiplexed log stream: 8-byte frame headers (stream, 0, 0, 0, size) + payload."""
    out = []
    offset = 0
    while offset + 8 <= len(body):
        if body[offset:offset + 1] not in (b"\x00", b"\x01", b"\x02") or body[offset + 1:offset + 4] != b"\x00\x00\x00":
            out.append(body[offset:])  # not a frame header: keep the rest as it is
            break
        size = struct.unpack(">I", body[offset + 4:offset + 8])[0]
        out.append(body[offset + 8:offset + 8 + size])
        offset += 8 + size
    return b"".join(out).decode("utf-8", "replace")
