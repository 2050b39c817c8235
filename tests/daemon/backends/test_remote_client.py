"""The daemon's OIP client against scripted servers: keep-alive, reconnects, timeouts, errors, byte counts.

The servers here are raw sockets written for the test, so each can misbehave in one precise way.
The client against the real endpoint is in tests/integration/test_endpoint_http.py.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from support import free_port

from edgeoffload.backends.oip_wire import HEADER_LENGTH, decode_infer_request, encode_infer_response
from edgeoffload.backends.remote import OipClient
from edgeoffload.errors import ConfigError, TransportError

STALL = object()  # answer nothing, keep the connection open
HANG_UP = object()  # close the connection without answering
Respond = Callable[[str, str, dict, bytes], object]


def http_response(status: int, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def echo_oip(method: str, path: str, headers: dict, body: bytes) -> object:
    """A tiny OIP server: health, /v2 with binary tensors, infer returns the inputs times two."""
    if path == "/v2":
        return http_response(200, json.dumps({"name": "fake", "extensions": ["binary_tensor_data"]}).encode())
    if path.startswith("/v2/health"):
        return http_response(200)
    if path.endswith("/infer"):
        request = decode_infer_request(body, headers.get("inference-header-content-length"),
                                       max_tensor_bytes=1 << 20)
        outputs = [(f"{name}_x2", a * 2) for name, a in request.inputs]
        out, extra = encode_infer_response("m", outputs, binary=request.binary_outputs, request_id=request.id,
                                           parameters={"compute_time_ms": 0.25})
        return http_response(200, out, extra)
    return http_response(404, b'{"error": "no route"}')


class RawServer:
    """Accepts connections; for each request calls ``respond(method, path, headers, body)``.

    The answer may be bytes (sent as is), ``STALL`` or ``HANG_UP``; ``close_after`` closes the
    connection right after each answer (without saying so). ``requests`` keeps the raw bytes of each.
    """

    def __init__(self, respond: Respond = echo_oip, *, close_after: bool = False,
                 wrap: Callable[[socket.socket], socket.socket] | None = None):
        self._respond, self._close_after, self._wrap = respond, close_after, wrap
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._wrap is not None:
                conn = self._wrap(conn)
            reader = conn.makefile("rb")
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = reader.read(int(headers.get("content-length", 0)))
                self.requests.append(head + body)
                answer = self._respond(method, path, headers, body)
                if answer is STALL:
                    self._stop.wait(30)
                    return
                if answer is HANG_UP:
                    return
                conn.sendall(answer)
                if self._close_after:
                    return
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for conn in self._open:
            conn.close()


@pytest.fixture
def server_factory():
    servers: list[RawServer] = []

    def make(*args, **kwargs) -> RawServer:
        servers.append(RawServer(*args, **kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


X = np.arange(12, dtype=np.float32).reshape(1, 3, 4)


def test_infer_binary_reuses_one_connection_and_counts_bytes(server_factory):
    server = server_factory()
    with OipClient(server.url) as client:
        for i in range(20):
            result = client.infer("m", [("x", X)], timeout_s=5, request_id=str(i))
            np.testing.assert_array_equal(result.outputs["x_x2"], X * 2)
    assert server.connections == 1
    assert result.binary and result.server_ms == 0.25
    assert result.bytes_sent == len(server.requests[-1])
    assert HEADER_LENGTH.encode() in server.requests[-1]
    out, extra = encode_infer_response("m", [("x_x2", X * 2)], binary=True, request_id="19",
                                       parameters={"compute_time_ms": 0.25})
    assert result.bytes_received == len(http_response(200, out, extra))
    assert result.total_ms > 0


def test_auto_mode_falls_back_to_json_when_the_server_has_no_binary_extension(server_factory):
    def json_only(method, path, headers, body):
        if path == "/v2":
            return http_response(200, b'{"name": "mlserver", "extensions": []}')
        return echo_oip(method, path, headers, body)

    server = server_factory(json_only)
    with OipClient(server.url) as client:
        result = client.infer("m", [("x", X)], timeout_s=5)
    assert not result.binary
    assert b"binary_data" not in server.requests[-1] and b'"data":[0.0,1.0' in server.requests[-1]
    np.testing.assert_array_equal(result.outputs["x_x2"], X * 2)
    with OipClient(server.url, binary="always") as client:
        assert client.infer("m", [("x", X)], timeout_s=5).binary


def test_threads_share_one_client_through_a_pool_of_kept_alive_connections(server_factory):
    server = server_factory()
    client = OipClient(server.url)

    def work(i: int) -> bool:
        x = np.full((2, 2), i, dtype=np.int32)
        return all(np.array_equal(client.infer("m", [("x", x)], timeout_s=5).outputs["x_x2"], x * 2)
                   for _ in range(10))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(8)))
    client.close()
    # Overlapping requests each get a connection (none waits behind another); finished ones are kept
    # alive and reused, so far fewer than one connection per request (80) are opened.
    assert 1 <= server.connections <= 40
    sequential = OipClient(server.url)
    before = server.connections
    for i in range(10):
        sequential.infer("m", [("x", np.full((2, 2), i, dtype=np.int32))], timeout_s=5)
    sequential.close()
    assert server.connections == before + 1


def test_reconnects_once_when_the_kept_alive_connection_was_closed(server_factory):
    server = server_factory(close_after=True)
    with OipClient(server.url) as client:
        assert client.ready(timeout_s=2)
        time.sleep(0.05)  # the server has closed the idle connection by now
        assert client.live(timeout_s=2) > 0
        np.testing.assert_array_equal(client.infer("m", [("x", X)], timeout_s=2).outputs["x_x2"], X * 2)
    assert server.connections == 4  # ready, live, /v2 (auto mode asks once), infer


def test_a_server_that_always_hangs_up_is_not_retried_forever(server_factory):
    calls = []

    def hang_up(*args):
        calls.append(args[1])
        return HANG_UP

    server = server_factory(hang_up)
    with OipClient(server.url, binary="always") as client:
        with pytest.raises(TransportError, match=rf"{server.url}/v2/models/m/infer: POST failed: RemoteDisconnected"):
            client.infer("m", [("x", X)], timeout_s=2)
        assert len(calls) == 1  # a fresh connection is not retried
    assert server.connections == 1


def dribbling_server(stop: threading.Event) -> str:
    """A server that answers a status line and then one header byte every 50 ms, forever."""
    listener = socket.create_server(("127.0.0.1", 0))

    def dribble():
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.05):
                conn.sendall(b"X")

    threading.Thread(target=dribble, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "dribbling"])
def test_timeout_is_total_even_when_the_server_stalls(server_factory, trickle):
    stop = threading.Event()
    url = dribbling_server(stop) if trickle else server_factory(lambda *args: STALL).url
    client = OipClient(url, binary="always")
    start = time.monotonic()
    try:
        with pytest.raises(TransportError, match=rf"{url}/v2/models/m/infer: no complete answer within 0.4 s"):
            client.infer("m", [("x", X)], timeout_s=0.4)
        assert 0.35 < time.monotonic() - start < 1.5
    finally:
        stop.set()
        client.close()


def test_refused_connection():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TransportError, match=rf"{url}/v2/health/live: connection refused"):
        OipClient(url).live(timeout_s=1)


def test_http_errors_carry_the_status_and_the_servers_message(server_factory):
    def bad(method, path, headers, body):
        if path == "/v2/health/live":
            return http_response(503, b"")
        return http_response(400, b'{"error": "input \'x\': shape [1, 3, 4] but model expects [1, 4]"}')

    server = server_factory(bad)
    with OipClient(server.url, binary="always") as client:
        with pytest.raises(TransportError, match=r"/v2/models/m/infer: HTTP 400: input 'x': shape \[1, 3, 4\] but"):
            client.infer("m", [("x", X)], timeout_s=2)
        with pytest.raises(TransportError, match=r"/v2/health/live: not live \(HTTP 503"):
            client.live(timeout_s=2)
        assert client.ready(timeout_s=2) is False
        with pytest.raises(TransportError, match=r"/v2/models/m: HTTP 400"):
            client.model_metadata("m", timeout_s=2)


@pytest.mark.parametrize(("answer", "message"), [
    (http_response(200, b"hello"), r"unusable answer: JSON header is not valid JSON"),
    (http_response(200, b'{"model_name": "m", "outputs": [{"name": "o", "shape": [3], "datatype": "FP32", '
                        b'"data": [1, 2]}]}'), r"unusable answer: output 'o': 'data' has 2 values"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", r"invalid HTTP answer to POST: BadStatusLine"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", r"POST failed|invalid HTTP answer"),
])
def test_garbage_answers_are_transport_errors(server_factory, answer, message):
    def garbage(method, path, headers, body):
        return answer if path.endswith("/infer") else echo_oip(method, path, headers, body)

    server = server_factory(garbage, close_after=True)
    with OipClient(server.url, binary="always") as client:
        with pytest.raises(TransportError, match=message):
            client.infer("m", [("x", X)], timeout_s=2)


def test_metadata_is_cached_and_model_names_are_quoted(server_factory):
    server = server_factory(lambda m, path, h, b: http_response(200, json.dumps({"path": path}).encode()))
    with OipClient(server.url + "/prefix/") as client:
        assert client.server_metadata(timeout_s=2) == {"path": "/prefix/v2"}
        assert client.server_metadata(timeout_s=2) == {"path": "/prefix/v2"}
        assert client.model_metadata("a b/c", timeout_s=2) == {"path": "/prefix/v2/models/a%20b%2Fc"}
    assert len(server.requests) == 2


@pytest.mark.parametrize(("url", "binary", "message"), [
    ("ftp://host", "auto", "must look like http://host:port"),
    ("http://", "auto", "must look like http://host:port"),
    ("http://host:8000", "maybe", "binary mode 'maybe' must be one of auto, always, never"),
])
def test_bad_settings(url, binary, message):
    with pytest.raises(ConfigError, match=message):
        OipClient(url, binary=binary)


def test_https(server_factory, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = server_factory(wrap=lambda s: server_ctx.wrap_socket(s, server_side=True))
    client_ctx = ssl.create_default_context(cafile=str(cert))
    with OipClient(f"https://127.0.0.1:{server.port}", ssl_context=client_ctx) as client:
        for _ in range(3):
            result = client.infer("m", [("x", X)], timeout_s=5)
    np.testing.assert_array_equal(result.outputs["x_x2"], X * 2)
    assert server.connections == 1
