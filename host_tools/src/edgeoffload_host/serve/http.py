"""The Open Inference Protocol v2 REST endpoint (JSON and binary tensors) on the standard library.

HTTP/1.1 keep-alive, one thread per connection. Every client mistake is a 4xx with
``{"error": "..."}``; only a failure inside a model run is a 500, and the server keeps serving.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from edgeoffload import __version__
from edgeoffload.backends.oip_wire import HEADER_LENGTH, JSON_CONTENT_TYPE, decode_infer_request, encode_infer_response
from edgeoffload.backends.http11 import HeaderError, read_http_headers
from edgeoffload.errors import RequestError
from edgeoffload_host.serve.repository import MODEL_VERSION, ModelRepository, ServedModel

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
DEFAULT_READ_TIMEOUT_S = 30.0
SERVER_NAME = "edgeoffload"
EXTENSIONS = ["binary_tensor_data"]

_MODEL_ROUTE = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?/?")
_FIXED_ROUTES = {"/v2": "server", "/v2/": "server", "/v2/health/live": "live", "/v2/health/ready": "ready"}
_JSON = {"Content-Type": JSON_CONTENT_TYPE}


class HttpError(Exception):
    """An answer other than 200, with the message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str, *, close: bool = False, headers: dict | None = None):
        super().__init__(message)
        self.status, self.close, self.headers = status, close, headers or {}


def _json_body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = False  # a second server on a busy port must fail, not share it

    def __init__(self, address: tuple[str, int], repository: ModelRepository, *,
                 max_request_bytes: int, read_timeout_s: float):
        self.repository = repository
        self.max_request_bytes = max_request_bytes
        self.read_timeout_s = read_timeout_s
        self.connections_accepted = 0
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        self.connections_accepted += 1
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        """socketserver prints tracebacks to stderr; here a peer that vanished is routine (debug)."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            logger.debug("connection from %s ended: %s", client_address, sys.exc_info()[1])
        else:
            logger.exception("connection from %s failed", client_address)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._live_lock:
            (self._live.add if alive else self._live.discard)(conn)

    def drop_connections(self) -> None:
        """Unblock every handler thread (used at shutdown)."""
        with self._live_lock:
            live = list(self._live)
        for conn in live:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"{SERVER_NAME}/{__version__}"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.read_timeout_s
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def parse_request(self) -> bool:
        """The base class's parse_request without the email package (most of its per-request cost)."""
        self.command, self.request_version, self.close_connection = None, "HTTP/0.9", True
        self.requestline = line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if not words:
            return False
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(400, f"bad request line {line[:100]!r}; expected 'METHOD /path HTTP/1.1'")
            return False
        self.command, self.path, self.request_version = words
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = read_http_headers(self.rfile)  # type: ignore[assignment]
        except HeaderError as exc:
            self.send_error(exc.status, str(exc))
            return False
        connection = (self.headers.get("Connection") or "").lower()
        self.close_connection = "close" in connection or (
            self.request_version == "HTTP/1.0" and "keep-alive" not in connection)
        if (self.headers.get("Expect") or "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def handle_expect_100(self) -> bool:
        """Refuse an oversize body before the client sends it."""
        length = self.headers.get("Content-Length") or ""
        if length.strip().isdigit() and int(length) > self.server.max_request_bytes:
            self.close_connection = True
            self._reply(413, _json_body({"error": f"request body of {int(length)} bytes exceeds the limit of "
                                                  f"{self.server.max_request_bytes} bytes"}), _JSON)
            return False
        self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        self._dispatch("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def __getattr__(self, name: str):
        # Every other method reaches the router too, so an odd method is a 405 / 404 and never a 501.
        if name.startswith("do_"):
            return lambda: self._dispatch(name[3:])
        raise AttributeError(name)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if logger.isEnabledFor(logging.DEBUG):  # the base class formats its arguments first
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("%s " + format, self.address_string(), *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors from the base class's request-line and header parsing, as JSON and never a 5xx."""
        status = 400 if code >= 500 else code
        self.close_connection = True
        self._reply(status, _json_body({"error": message or HTTPStatus(code).phrase}), _JSON)

    def _dispatch(self, method: str) -> None:
        try:
            status, body, headers = self._route(method)
        except HttpError as exc:
            if exc.close:
                self.close_connection = True
            status, body, headers = exc.status, _json_body({"error": str(exc)}), {**_JSON, **exc.headers}
        except RequestError as exc:
            status, body, headers = 400, _json_body({"error": str(exc)}), _JSON
        except Exception as exc:  # a bug or a model failure: answer, log, keep serving
            logger.exception("%s %s failed", method, self.path)
            status, body, headers = 500, _json_body({"error": f"internal error: {exc}"}), _JSON
        self._reply(status, b"" if method == "HEAD" else body, headers)

    def _route(self, method: str) -> tuple[int, bytes, dict[str, str]]:
        path = unquote(self.path.split("?", 1)[0])
        kind = _FIXED_ROUTES.get(path)
        match = None if kind else _MODEL_ROUTE.fullmatch(path)
        if kind is None and match is None:
            self._drain_get_body()
            raise HttpError(404, f"no route {path!r}; see /v2, /v2/health/*, /v2/models/{{model}}[/infer]")
        allowed = "POST" if match is not None and match.group(3) == "/infer" else "GET"
        if method != allowed:
            self._drain_get_body()
            raise HttpError(405, f"{method} is not allowed on {path} (use {allowed})", headers={"Allow": allowed})
        if allowed == "POST":
            body = self._read_body()  # first, so that an error answer leaves the stream in sync
            return self._infer(self._model(match), body)
        self._drain_get_body()
        if kind == "server":
            return 200, _json_body({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}), _JSON
        if kind in ("live", "ready"):
            return 200, b"", {}
        model = self._model(match)
        if match.group(3) == "/ready":
            return 200, b"", {}
        return 200, _json_body(model.metadata()), _JSON

    def _model(self, match: re.Match) -> ServedModel:
        name, version = match.group(1), match.group(2)
        model = self.server.repository.get(name)
        if model is None:
            known = ", ".join(self.server.repository.names) or "none"
            raise HttpError(404, f"unknown model {name!r} (served: {known})")
        if version is not None and version != MODEL_VERSION:
            raise HttpError(404, f"model {name!r} has no version {version!r} (versions: {MODEL_VERSION})")
        return model

    def _drain_get_body(self) -> None:
        """A body on a non-POST request is not read: close after answering so the stream stays in sync."""
        length = self.headers.get("Content-Length")
        if (length not in (None, "0")) or self.headers.get("Transfer-Encoding"):
            self.close_connection = True

    def _read_body(self) -> bytearray:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, "chunked uploads are not supported; send Content-Length", close=True)
        text = self.headers.get("Content-Length")
        if text is None:
            raise HttpError(411, "Content-Length is required", close=True)
        if not text.strip().isdigit():
            raise HttpError(400, f"Content-Length {text!r} is not a non-negative integer", close=True)
        length = int(text)
        limit = self.server.max_request_bytes
        if length > limit:
            raise HttpError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes", close=True)
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytearray:
        body = bytearray(length)
        view = memoryview(body)
        got = 0
        while got < length:
            try:
                n = self.rfile.readinto1(view[got:])  # one recv at a time: counts what came
            except TimeoutError:
                raise HttpError(408, f"client stopped sending the body: got {got} of {length} bytes, "
                                     f"then nothing for {self.server.read_timeout_s:g} s", close=True) from None
            if not n:
                raise HttpError(400, f"connection closed after {got} of {length} body bytes", close=True)
            got += n
        return body

    def _infer(self, model: ServedModel, body: bytearray) -> tuple[int, bytes, dict[str, str]]:
        request = decode_infer_request(body, self.headers.get(HEADER_LENGTH),
                                       max_tensor_bytes=self.server.max_request_bytes)
        ordered = model.order_inputs(request.inputs)
        names = model.output_names()
        for name in request.requested_outputs:
            if name not in names:
                raise RequestError(f"requested output {name!r} is not an output of model {model.name!r} "
                                   f"(outputs: {', '.join(names)})")
        outputs, compute_ms = model.runtime.run(ordered)
        if request.requested_outputs:
            by_name = dict(outputs)
            outputs = [(name, by_name[name]) for name in request.requested_outputs]
        body_out, headers = encode_infer_response(model.name, outputs, binary=request.binary_outputs,
                                                  request_id=request.id,
                                                  parameters={"compute_time_ms": compute_ms},
                                                  model_version=MODEL_VERSION)
        return 200, body_out, headers

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """Status line, headers and body in a single write."""
        fields = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
        if self.close_connection:
            fields += "Connection: close\r\n"
        elif self.request_version == "HTTP/1.0":
            fields += "Connection: keep-alive\r\n"
        head = (f"HTTP/1.1 {status} {_phrase(status)}\r\nServer: {self.server_version}\r\n"
                f"Content-Length: {len(body)}\r\n{fields}\r\n").encode("latin-1")
        try:
            self.wfile.write(head + body)
        except OSError as exc:
            logger.debug("could not answer %s: %s", self.client_address, exc)
            self.close_connection = True
        self.log_request(status, len(body))


_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def _phrase(status: int) -> str:
    return _PHRASES.get(status, "Unknown")


@dataclass
class RunningServer:
    """An endpoint served on a background thread; ``close()`` stops it and its connections."""

    url: str
    host: str
    port: int
    repository: ModelRepository
    _server: _Server
    _thread: threading.Thread

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (a keep-alive client makes one)."""
        return self._server.connections_accepted

    def close(self) -> None:
        self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.repository.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_repository(repository: ModelRepository, host: str = "127.0.0.1", port: int = 0, *,
                     max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                     read_timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> RunningServer:
    """Serve an already scanned repository on a background thread."""
    server = _Server((host, port), repository, max_request_bytes=max_request_bytes, read_timeout_s=read_timeout_s)
    bound_host, bound_port = server.server_address[:2]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name=f"oip-serve-{bound_port}", daemon=True)
    thread.start()
    url_host = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    return RunningServer(f"http://{url_host}:{bound_port}", str(bound_host), int(bound_port), repository,
                         server, thread)


def start_server(models_dir: Path | str, host: str = "127.0.0.1", port: int = 0, workers: int = 2,
                 threads: int = 1, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 read_timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> RunningServer:
    """Scan ``models_dir`` and serve it; ModelError for a bad directory, OSError if the port is taken."""
    repository = ModelRepository.scan(models_dir, workers=workers, threads=threads)
    try:
        return serve_repository(repository, host, port, max_request_bytes=max_request_bytes,
                                read_timeout_s=read_timeout_s)
    except BaseException:
        repository.close()
        raise
