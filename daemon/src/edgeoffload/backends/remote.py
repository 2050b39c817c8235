"""The daemon's Open Inference Protocol v2 client (REST, binary tensors when the server has them).

A small pool of kept-alive connections (HTTP or HTTPS), so one client may be shared by threads and a
health probe never waits behind a request. Every call takes a total timeout; nothing waits past it. Anything that goes wrong on the
wire, and any answer we cannot use, raises ``TransportError`` naming the URL and what happened.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import numpy as np

from edgeoffload.backends.http11 import (
    Answer, DeadlineReader, SocketShim, error_text, response_class, send_parts,
)
from edgeoffload.backends.oip_wire import HEADER_LENGTH, decode_infer_response, encode_infer_request_parts
from edgeoffload.errors import ConfigError, TransportError

logger = logging.getLogger(__name__)

BINARY_MODES = ("auto", "always", "never")
_BINARY_ALIASES = {"binary": "always", "json": "never"}


@dataclass(frozen=True)
class RemoteResult:
    """One remote inference: outputs by name and what it cost on the wire."""

    outputs: dict[str, np.ndarray]
    bytes_sent: int
    bytes_received: int
    total_ms: float
    server_ms: float | None
    binary: bool


MAX_IDLE_CONNECTIONS = 4  # kept-alive connections per endpoint; more are opened while requests overlap


class OipClient:
    """An Open Inference Protocol v2 REST client for one endpoint URL (``http://host:port[/prefix]``).

    ``binary``: "auto" (binary tensors iff the server lists ``binary_tensor_data``), "always" or
    "never" (JSON only; MLServer); "binary" and "json" are accepted as aliases.
    """

    def __init__(self, url: str, *, binary: str = "auto", ssl_context: ssl.SSLContext | None = None):
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ConfigError(f"offload URL {url!r} must look like http://host:port or https://host:port")
        binary = _BINARY_ALIASES.get(binary, binary)
        if binary not in BINARY_MODES:
            raise ConfigError(f"binary mode {binary!r} must be one of {', '.join(BINARY_MODES)}")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, port
        self._prefix = quote(parts.path.rstrip("/"), safe="/%")
        self._binary_mode = binary
        self._ssl_context = ssl_context
        self.response_class = response_class()
        self._lock = threading.Lock()  # guards the idle pool only; requests run in parallel
        self._idle: list[http.client.HTTPConnection] = []
        self._closed = False
        self._host_header = parts.netloc.rpartition("@")[2]
        self._metadata: dict | None = None

    # -- public API -------------------------------------------------------------------------------

    def live(self, timeout_s: float) -> float:
        """Round-trip time of GET /v2/health/live in ms; TransportError unless the server says 200."""
        start = time.perf_counter()
        answer = self._call("GET", "/v2/health/live", timeout_s)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        if answer.status != 200:
            raise TransportError(f"{self.url}/v2/health/live: not live (HTTP {answer.status}: "
                                 f"{error_text(answer.body)})")
        return elapsed_ms

    def ready(self, timeout_s: float) -> bool:
        """Whether GET /v2/health/ready answers 200."""
        return self._call("GET", "/v2/health/ready", timeout_s).status == 200

    def server_metadata(self, timeout_s: float) -> dict:
        """GET /v2, fetched once and cached."""
        if self._metadata is None:
            self._metadata = self._json("/v2", timeout_s)
        return self._metadata

    def model_metadata(self, name: str, timeout_s: float) -> dict:
        """GET /v2/models/{name}."""
        return self._json(f"/v2/models/{quote(name, safe='')}", timeout_s)

    def uses_binary(self, timeout_s: float) -> bool:
        """Whether infer sends binary tensors (in auto mode this asks the server once)."""
        if self._binary_mode != "auto":
            return self._binary_mode == "always"
        extensions = self.server_metadata(timeout_s).get("extensions", [])
        return isinstance(extensions, list) and "binary_tensor_data" in extensions

    def infer(self, model: str, inputs: Sequence[tuple[str, np.ndarray]], *, timeout_s: float,
              request_id: str | None = None) -> RemoteResult:
        """POST /v2/models/{model}/infer."""
        deadline = time.monotonic() + _positive(timeout_s)
        binary = self.uses_binary(timeout_s)  # asks /v2 once in auto mode, within the same deadline
        if deadline <= time.monotonic():
            raise TransportError(f"{self.url}: no complete answer within {timeout_s:g} s (asking for /v2)")
        start = time.perf_counter()
        body, headers = encode_infer_request_parts(inputs, binary=binary, request_id=request_id)
        path = f"/v2/models/{quote(model, safe='')}/infer"
        answer, sent, received = self._exchange("POST", path, body, headers, deadline, timeout_s)
        if answer.status != 200:
            raise TransportError(f"{self.url}{path}: HTTP {answer.status}: {error_text(answer.body)}")
        try:
            response = decode_infer_response(answer.body, answer.headers.get(HEADER_LENGTH))
        except TransportError as exc:
            raise TransportError(f"{self.url}{path}: unusable answer: {exc}") from None
        total_ms = (time.perf_counter() - start) * 1e3
        server_ms = response.parameters.get("compute_time_ms")
        if not isinstance(server_ms, (int, float)) or isinstance(server_ms, bool):
            server_ms = None
        return RemoteResult(response.outputs, sent, received, total_ms,
                            float(server_ms) if server_ms is not None else None, binary)

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for conn in idle:
            _close_quietly(conn)

    def __enter__(self) -> OipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def _json(self, path: str, timeout_s: float) -> dict:
        answer = self._call("GET", path, timeout_s)
        if answer.status != 200:
            raise TransportError(f"{self.url}{path}: HTTP {answer.status}: {error_text(answer.body)}")
        try:
            value = json.loads(answer.body)
        except ValueError as exc:
            raise TransportError(f"{self.url}{path}: answer is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise TransportError(f"{self.url}{path}: answer is not a JSON object")
        return value

    def _call(self, method: str, path: str, timeout_s: float) -> Answer:
        return self._exchange(method, path, None, {}, time.monotonic() + _positive(timeout_s), timeout_s)[0]

    def _exchange(self, method: str, path: str, body: list | None, headers: dict[str, str],
                  deadline: float, timeout_s: float) -> tuple[Answer, int, int]:
        """One request and its answer by ``deadline`` on a kept-alive connection from the pool (a new one
        when none is idle), reconnecting once if a kept-alive connection turns out to be closed;
        ``timeout_s`` is what the caller asked for (for messages)."""
        for attempt in (1, 2):
            reader = DeadlineReader(deadline)
            conn, reused = None, False
            try:
                conn, reused = self._checkout(deadline, fresh=attempt == 2)
                answer, sent, keep = self._once(conn, reader, method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    _close_quietly(conn)
                if attempt == 1 and reused and reader.count == 0 and _looks_closed(exc):
                    logger.debug("%s: kept-alive connection was closed (%s); reconnecting", self.url, exc)
                    continue
                raise self._failure(method, path, exc, timeout_s) from exc
            except BaseException:
                if conn is not None:
                    _close_quietly(conn)  # the connection's state is unknown now
                raise
            self._checkin(conn, keep)
            return answer, sent, reader.count
        raise AssertionError("unreachable")  # pragma: no cover

    def _checkout(self, deadline: float, *, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        if not fresh:
            with self._lock:
                if self._idle:
                    return self._idle.pop(), True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out before connecting")
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=remaining, context=self._ssl_context)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=remaining)
        conn.connect()  # sets TCP_NODELAY; for HTTPS also the TLS handshake
        return conn, False

    def _checkin(self, conn: http.client.HTTPConnection, keep: bool) -> None:
        with self._lock:
            if keep and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        _close_quietly(conn)

    def _once(self, conn: http.client.HTTPConnection, reader: DeadlineReader, method: str, path: str,
              body: list | None, headers: dict[str, str]) -> tuple[Answer, int, bool]:
        """Send the request line, headers and body buffers in one syscall; read the answer via ``reader``.

        http.client's request() would validate and write headers and body separately (and copy the
        body); written here it is one send of the buffers as they are and an exact byte count.
        Connecting and reading the body (Content-Length or chunked) stay with http.client.
        """
        sock = reader.sock = conn.sock
        fields = "".join([f"{key}: {value}\r\n" for key, value in headers.items()])
        length = sum(len(part) for part in body) if body is not None else None
        head = (f"{method} {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n{fields}"
                + ("" if length is None else f"Content-Length: {length}\r\n") + "\r\n").encode("latin-1")
        sent = send_parts(sock, [head, *body] if body else [head], reader.deadline)
        response = self.response_class(SocketShim(reader), method=method)  # type: ignore[arg-type]
        response.begin()
        payload = response.read()
        return Answer(response.status, response.headers, payload), sent, not response.will_close

    def _failure(self, method: str, path: str, exc: BaseException, timeout_s: float) -> TransportError:
        where = f"{self.url}{path}"
        if isinstance(exc, TimeoutError):
            return TransportError(f"{where}: no complete answer within {timeout_s:g} s ({method})")
        if isinstance(exc, ConnectionRefusedError):
            return TransportError(f"{where}: connection refused; is the endpoint running on that port?")
        if isinstance(exc, socket.gaierror):
            return TransportError(f"{where}: cannot resolve host {self._host!r}: {exc}")
        if isinstance(exc, http.client.HTTPException) and not isinstance(exc, ConnectionError):
            return TransportError(f"{where}: invalid HTTP answer to {method}: {type(exc).__name__}: {exc}")
        return TransportError(f"{where}: {method} failed: {type(exc).__name__}: {exc}")


def _close_quietly(conn: http.client.HTTPConnection) -> None:
    try:
        conn.close()
    except OSError:
        pass


def _looks_closed(exc: BaseException) -> bool:
    return isinstance(exc, (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError))


def _positive(timeout_s: float) -> float:
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")
    return float(timeout_s)
