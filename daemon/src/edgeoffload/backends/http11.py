"""HTTP/1.1 framing shared by the OIP client and the endpoint: header parsing with limits, a lean
response parser (checked against the standard library's at first use), deadline-bound reads and sends.

The client stays on ``http.client`` for connecting, TLS and body reading; this module replaces only the
parts whose cost showed in bench/bench_wire_overhead.py.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import logging
import socket
import ssl
import time
from typing import NamedTuple

logger = logging.getLogger(__name__)


class HttpHeaders:
    """HTTP header fields, looked up case-insensitively; repeated fields are joined with ", "."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str] | None = None):
        self._fields = {k.lower(): v for k, v in (fields or {}).items()}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._fields.get(name.lower(), default)

    def get_all(self, name: str, failobj: object = None) -> list[str] | object:
        """What ``HTTPResponse.getheader()`` asks of its message."""
        value = self._fields.get(name.lower())
        return failobj if value is None else [value]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def items(self):
        return self._fields.items()

    def __repr__(self) -> str:
        return f"HttpHeaders({self._fields!r})"


class HeaderError(ValueError):
    """A header block we refuse; ``status`` is the HTTP status a server answers it with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def read_http_headers(fp, *, max_fields: int = 100, max_line: int = 65536) -> HttpHeaders:
    """Header lines up to the blank line, parsed without the email package (it costs ~15 us a message).

    Obsolete line folding and conflicting Content-Length fields are refused, as RFC 9112 permits.
    Shared by this client and the host's endpoint.
    """
    fields: dict[str, str] = {}
    readline = fp.readline
    for _ in range(max_fields + 1):
        line = readline(max_line + 1)
        if len(line) > max_line:
            raise HeaderError(431, f"header line longer than {max_line} bytes")
        if line in (b"\r\n", b"\n", b""):
            headers = HttpHeaders()
            headers._fields = fields  # already lower-cased
            return headers
        name, colon, value = line.decode("iso-8859-1").partition(":")
        if not colon or not name or name != name.strip():
            raise HeaderError(400, f"malformed header line {line[:80]!r}")
        key, value = name.lower(), value.strip()
        old = fields.get(key)
        if old is None:
            fields[key] = value
        elif key != "content-length":
            fields[key] = f"{old}, {value}"
        elif old != value:
            raise HeaderError(400, "conflicting Content-Length fields")
    raise HeaderError(431, f"more than {max_fields} header fields")


class LeanResponse(http.client.HTTPResponse):
    """``HTTPResponse`` whose begin() parses the status line and headers without the email package.

    Reading the body (Content-Length or chunked) is the stock code, which relies on what begin()
    leaves behind; this begin() sets the same attributes to the same values as the stock one, which
    ``response_class()`` checks against the running interpreter before the client uses it.
    """

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._status_line()
            try:
                headers = read_http_headers(self.fp)
            except HeaderError as exc:
                raise http.client.HTTPException(str(exc)) from None
            if status != 100:
                break
        self.code = self.status = status
        self.reason = reason.strip()
        self.version = 10 if version in ("HTTP/1.0", "HTTP/0.9") else 11
        self.headers = self.msg = headers  # type: ignore[assignment]
        self.chunked = (headers.get("transfer-encoding") or "").lower() == "chunked"
        if self.chunked:
            self.chunk_left = None
        connection = (headers.get("connection") or "").lower()
        self.will_close = "close" in connection if self.version == 11 else not (
            headers.get("keep-alive") or "keep-alive" in connection
            or "keep-alive" in (headers.get("proxy-connection") or "").lower())
        length = headers.get("content-length")
        self.length = int(length) if length and length.isdigit() and not self.chunked else None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True

    def _status_line(self) -> tuple[str, int, str]:
        line = self.fp.readline(65537)
        if not line:
            raise http.client.RemoteDisconnected("remote end closed the connection without a response")
        if len(line) > 65536:
            raise http.client.LineTooLong("status line")
        parts = line.decode("iso-8859-1").split(None, 2)
        version, status = (parts + ["", ""])[:2]
        if not version.startswith("HTTP/") or not (status.isdigit() and 100 <= int(status) <= 999):
            raise http.client.BadStatusLine(repr(line[:80]))
        if not version.startswith("HTTP/1.") and version != "HTTP/0.9":
            raise http.client.UnknownProtocol(version)
        reason = parts[2] if len(parts) > 2 else ""
        return version, int(status), reason


_PROBES = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nX-A: 2\r\n\r\nok",
           b"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
           b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
           b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\nuntil close")


@functools.cache
def response_class() -> type[http.client.HTTPResponse]:
    """``LeanResponse`` (~15 us less per answer) where it leaves a response in exactly the state the
    stock begin() does on this Python, else the stock ``HTTPResponse``."""
    for raw in _PROBES:
        states = []
        for cls in (http.client.HTTPResponse, LeanResponse):
            try:
                response = cls(SocketShim(io.BytesIO(raw)), method="POST")  # type: ignore[arg-type]
                response.begin()
                state = {k: v for k, v in vars(response).items() if k not in ("headers", "msg", "fp")}
                states.append((state, response.getheader("x-a"), response.read()))
            except Exception as exc:  # noqa: BLE001 - any surprise means: do not second-guess http.client
                states.append((type(exc).__name__, str(exc)))
        if states[0] != states[1]:
            logger.debug("http.client's HTTPResponse changed (%s vs %s); using it as is", *states)
            return http.client.HTTPResponse
    return LeanResponse


class Answer(NamedTuple):
    status: int
    headers: HttpHeaders
    body: bytes


class DeadlineReader(io.RawIOBase):
    """Reads a response from ``sock`` (set once connected), never waiting past ``deadline``; counts bytes."""

    def __init__(self, deadline: float):
        self.sock: socket.socket | None = None
        self.deadline = deadline
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.sock is None:
            raise TimeoutError("timed out")
        settimeout_by(self.sock, self.deadline)
        n = self.sock.recv_into(buffer)
        self.count += n
        return n


class SocketShim:
    """What ``HTTPResponse`` needs of a socket (``makefile``), here over a ``DeadlineReader``."""

    def __init__(self, reader: io.RawIOBase | io.BytesIO):
        self._reader = reader

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self._reader)


def error_text(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace") or "(empty body)"
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return value["error"]
    return body[:200].decode("utf-8", "replace")


def send_parts(sock: socket.socket, parts: list, deadline: float) -> int:
    """Send ``parts`` (bytes-like, each of itemsize 1) by ``deadline``: one sendmsg, no joined copy,
    where the socket has it (TLS sockets have not; IOV_MAX is at least 1024)."""
    total = sum(len(part) for part in parts)
    if isinstance(sock, ssl.SSLSocket) or not hasattr(sock, "sendmsg") or len(parts) > 512:
        settimeout_by(sock, deadline)
        sock.sendall(b"".join(parts))
        return total
    views = [memoryview(part) for part in parts]
    while views:
        settimeout_by(sock, deadline)
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if views:
            views[0] = views[0][sent:]
    return total


def settimeout_by(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(remaining)
