"""The real endpoint over loopback with the tiny models: the daemon's client, raw HTTP clients and abuse.

After every refused request the server must still answer a good one.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgeoffload.backends.oip_wire import HEADER_LENGTH, decode_infer_response, encode_infer_request
from edgeoffload.backends.remote import OipClient
from edgeoffload.errors import TransportError
from edgeoffload_host.serve.http import start_server
from tinymodels import run_directly

READ_TIMEOUT_S = 1.0
MAX_REQUEST_BYTES = 1 << 20


@pytest.fixture(scope="module")
def endpoint(tiny_models, tmp_path_factory):
    models = tmp_path_factory.mktemp("served")
    for path in tiny_models.values():
        shutil.copy(path, models / path.name)
    server = start_server(models, workers=2, threads=1, max_request_bytes=MAX_REQUEST_BYTES,
                          read_timeout_s=READ_TIMEOUT_S)
    yield server
    server.close()


@pytest.fixture(scope="module")
def names(endpoint) -> dict[str, str]:
    """Input name per model."""
    return {m: endpoint.repository.get(m).runtime.inputs[0].name for m in endpoint.repository.names}




def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 16, 16, 3), dtype=np.uint8)


def raw(endpoint, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request on a fresh http.client connection: (status, decoded JSON or raw body, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data) if data else None, response
        except ValueError:
            return response.status, data, response
    finally:
        conn.close()


def raw_socket(endpoint, payload: bytes, *, shut: bool = False, timeout: float = 5.0) -> bytes:
    """Send bytes on a fresh socket and read until the server closes (or answers one response)."""
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=timeout) as s:
        s.sendall(payload)
        if shut:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return data
            if not chunk:
                return data
            data += chunk


def still_serves(endpoint, names, tiny_models) -> None:
    x = images(1, seed=42)[0]
    with OipClient(endpoint.url) as client:
        result = client.infer("tiny_q_16", [(names["tiny_q_16"], x)], timeout_s=5)
    np.testing.assert_array_equal(result.outputs["StatefulPartitionedCall:0"], run_directly(tiny_models["q"], x))


def test_health_and_metadata(endpoint):
    with OipClient(endpoint.url) as client:
        assert client.live(timeout_s=2) > 0
        assert client.ready(timeout_s=2)
        meta = client.server_metadata(timeout_s=2)
        assert "binary_tensor_data" in meta["extensions"] and meta["name"] and meta["version"]
        model = client.model_metadata("tiny_16", timeout_s=2)
    assert model["platform"] == "tflite_cpu" and model["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert raw(endpoint, "GET", "/v2/models/tiny_16/versions/1")[1] == model
    assert raw(endpoint, "GET", "/v2/models/tiny_16/ready")[0] == 200
    assert raw(endpoint, "GET", "/v2/models/tiny_16/versions/1/ready")[0] == 200


@pytest.mark.parametrize("mode", ["always", "never"])
@pytest.mark.parametrize("kind", ["float", "q"])
def test_infer_matches_the_interpreter(endpoint, names, tiny_models, mode, kind):
    model = tiny_models[kind].stem
    with OipClient(endpoint.url, binary=mode) as client:
        for x in images(3, seed=len(mode)):
            result = client.infer(model, [(names[model], x)], timeout_s=5, request_id="abc")
            want = run_directly(tiny_models[kind], x)
            got = result.outputs["StatefulPartitionedCall:0"]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
    assert result.binary == (mode == "always")
    assert result.server_ms is not None and 0 < result.server_ms < result.total_ms


def test_binary_answer_only_when_asked_and_requested_outputs(endpoint, names):
    x = images(1)[0]
    body, headers = encode_infer_request([(names["tiny_16"], x)], binary=True, binary_outputs=False)
    status, answer, response = raw(endpoint, "POST", "/v2/models/tiny_16/infer", body, headers)
    assert status == 200 and response.getheader(HEADER_LENGTH) is None
    assert answer["model_name"] == "tiny_16" and len(answer["outputs"][0]["data"]) == 10
    assert answer["parameters"]["compute_time_ms"] > 0
    header = {"inputs": [{"name": names["tiny_16"], "shape": [1, 16, 16, 3], "datatype": "UINT8",
                          "data": x.ravel().tolist()}],
              "outputs": [{"name": "StatefulPartitionedCall:0", "parameters": {"binary_data": True}}]}
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=5)
    conn.request("POST", "/v2/models/tiny_16/infer", body=json.dumps(header))
    response = conn.getresponse()
    decoded = decode_infer_response(response.read(), response.getheader(HEADER_LENGTH))
    assert response.getheader(HEADER_LENGTH) is not None
    assert decoded.outputs["StatefulPartitionedCall:0"].shape == (1, 10)
    conn.close()
    header["outputs"] = [{"name": "logits"}]
    status, answer, _ = raw(endpoint, "POST", "/v2/models/tiny_16/infer", json.dumps(header).encode())
    assert status == 400 and "requested output 'logits' is not an output of model 'tiny_16'" in answer["error"]


def _infer_body(names, model="tiny_16", x=None, **kwargs):
    x = images(1)[0] if x is None else x
    return encode_infer_request([(names[model], x)], binary=True, **kwargs)


def bad_requests(names):
    """(method, path, body, headers, status, message) for raw http.client requests."""
    body, headers = _infer_body(names)
    length = int(headers[HEADER_LENGTH])
    name = names["tiny_16"]
    return [
        ("POST", "/v2/models/tiny_16/infer", body, {**headers, HEADER_LENGTH: str(len(body) + 10)}, 400,
         f"Inference-Header-Content-Length {len(body) + 10} is larger than the body"),
        ("POST", "/v2/models/tiny_16/infer", body, {**headers, HEADER_LENGTH: "12abc"}, 400, "is not an integer"),
        ("POST", "/v2/models/tiny_16/infer", body[:-68], headers, 400,
         f"input '{name}': binary_data_size 768 but only 700 bytes remain"),
        ("POST", "/v2/models/tiny_16/infer", body + b"\0", headers, 400, "1 trailing bytes after the last binary"),
        ("POST", "/v2/models/tiny_16/infer", *_infer_body(names, x=np.zeros((1, 8, 8, 3), np.uint8)), 400,
         f"input '{name}': shape [1, 8, 8, 3] but model 'tiny_16' expects [1, 16, 16, 3]"),
        ("POST", "/v2/models/tiny_16/infer", *_infer_body(names, x=np.zeros((1, 16, 16, 3), np.float32)),
         400, f"input '{name}': datatype FP32 but model 'tiny_16' expects UINT8"),
        ("POST", "/v2/models/tiny_16/infer", *_infer_body(names, x=np.zeros((3, 16, 16, 3), np.uint8)),
         400, f"input '{name}': batch size 3 is not supported"),
        ("POST", "/v2/models/nope/infer", body, headers, 404, "unknown model 'nope' (served: tiny_16, tiny_q_16)"),
        ("GET", "/v2/models/nope", None, {}, 404, "unknown model 'nope'"),
        ("GET", "/v2/models/tiny_16/versions/7", None, {}, 404, "model 'tiny_16' has no version '7'"),
        ("GET", "/v3/anything", None, {}, 404, "no route '/v3/anything'"),
        ("GET", "/v2/models/tiny_16/infer", None, {}, 405, "GET is not allowed on /v2/models/tiny_16/infer"),
        ("POST", "/v2/models/tiny_16", b"{}", {}, 405, "POST is not allowed"),
        ("DELETE", "/v2/health/live", None, {}, 405, "DELETE is not allowed"),
        ("BREW", "/v2", None, {}, 405, "BREW is not allowed"),
        ("POST", "/v2/models/tiny_16/infer", b'{"inputs": ' + b"[" * 40 + b"]" * 40 + b"}", {}, 400,
         "nested deeper than 32 levels"),
        ("POST", "/v2/models/tiny_16/infer", b"\x89PNG\r\n\x1a\n\0\0garbage", {}, 400, "not valid JSON"),
        ("POST", "/v2/models/tiny_16/infer", body[length:], {HEADER_LENGTH: "0"}, 400, "not valid JSON"),
    ]


@pytest.mark.parametrize("case", range(18))
def test_bad_requests_get_4xx_with_a_message_and_the_server_carries_on(endpoint, names, tiny_models, case):
    method, path, body, headers, status, message = bad_requests(names)[case]
    got_status, answer, _ = raw(endpoint, method, path, body, headers)
    assert (got_status, message in answer["error"]) == (status, True), answer
    still_serves(endpoint, names, tiny_models)


def _post_head(length: int | None, extra: str = "") -> bytes:
    cl = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"POST /v2/models/tiny_16/infer HTTP/1.1\r\nHost: x\r\n{cl}{extra}\r\n".encode()


def _status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


def test_oversize_request_is_refused_before_the_body_is_read(endpoint, names, tiny_models):
    start = time.monotonic()
    status, error = _status_and_error(raw_socket(endpoint, _post_head(MAX_REQUEST_BYTES + 1)))
    assert (status, time.monotonic() - start < READ_TIMEOUT_S) == (413, True)
    assert error == f"request body of {MAX_REQUEST_BYTES + 1} bytes exceeds the limit of {MAX_REQUEST_BYTES} bytes"
    status, _ = _status_and_error(raw_socket(endpoint, _post_head(10**12, "Expect: 100-continue\r\n")))
    assert status == 413
    still_serves(endpoint, names, tiny_models)


@pytest.mark.parametrize(("head", "status", "message"), [
    (_post_head(None), 411, "Content-Length is required"),
    (_post_head(None, "Transfer-Encoding: chunked\r\n"), 411, "chunked uploads are not supported"),
    (_post_head(None, "Content-Length: -5\r\n"), 400, "Content-Length '-5' is not a non-negative integer"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n", 400, "bad request line"),
    (b"GET /v2 HTTP/2.0\r\n\r\n", 400, "bad request line"),
    (b"GET /v2 HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header line"),
    (b"GET /v2 HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431, "more than 100 header fields"),
])
def test_broken_http_framing(endpoint, names, tiny_models, head, status, message):
    got_status, error = _status_and_error(raw_socket(endpoint, head))
    assert got_status == status and message in error
    still_serves(endpoint, names, tiny_models)


def test_a_client_that_stalls_mid_body_gets_408(endpoint, names, tiny_models):
    body, headers = _infer_body(names)
    head = _post_head(len(body) + 100, f"{HEADER_LENGTH}: {headers[HEADER_LENGTH]}\r\n")
    start = time.monotonic()
    answer = raw_socket(endpoint, head + body, timeout=READ_TIMEOUT_S * 5)
    status, error = _status_and_error(answer)
    assert status == 408 and f"got {len(body)} of {len(body) + 100} bytes" in error
    assert READ_TIMEOUT_S * 0.9 < time.monotonic() - start < READ_TIMEOUT_S * 4
    still_serves(endpoint, names, tiny_models)


def test_an_exception_in_a_model_run_is_a_500_and_the_server_carries_on(endpoint, names, tiny_models,
                                                                        monkeypatch):
    runtime = endpoint.repository.get("tiny_16").runtime

    def explode(inputs):
        raise RuntimeError("delegate fell over")

    monkeypatch.setattr(runtime, "run", explode)
    status, answer, _ = raw(endpoint, "POST", "/v2/models/tiny_16/infer", *_infer_body(names))
    assert status == 500 and "delegate fell over" in answer["error"]
    with OipClient(endpoint.url) as client:
        with pytest.raises(TransportError, match="HTTP 500: internal error: delegate fell over"):
            client.infer("tiny_16", [(names["tiny_16"], images(1)[0])], timeout_s=5)
    still_serves(endpoint, names, tiny_models)


def test_concurrent_clients_all_get_their_own_answers(endpoint, names, tiny_models):
    xs = images(32, seed=7)
    expected = [run_directly(tiny_models["float"], x) for x in xs]

    def one(i: int) -> bool:
        with OipClient(endpoint.url, binary="always" if i % 2 else "never") as client:
            got = client.infer("tiny_16", [(names["tiny_16"], xs[i])], timeout_s=10).outputs
        return np.array_equal(got["StatefulPartitionedCall:0"], expected[i])

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(one, range(len(xs))))


def test_the_client_keeps_one_connection_alive(endpoint, names):
    before = endpoint.connections_accepted
    x = images(1)[0]
    with OipClient(endpoint.url) as client:
        client.live(timeout_s=2)
        for _ in range(25):
            client.infer("tiny_q_16", [(names["tiny_q_16"], x)], timeout_s=5)
    assert endpoint.connections_accepted - before == 1


def test_the_client_reconnects_after_the_server_closed_an_idle_connection(endpoint, names):
    x = images(1)[0]
    with OipClient(endpoint.url) as client:
        client.infer("tiny_q_16", [(names["tiny_q_16"], x)], timeout_s=5)
        before = endpoint.connections_accepted
        time.sleep(READ_TIMEOUT_S + 0.3)  # the server drops idle keep-alive connections after its read timeout
        client.infer("tiny_q_16", [(names["tiny_q_16"], x)], timeout_s=5)
    assert endpoint.connections_accepted - before == 1


def test_http_1_0_clients_are_answered_and_closed(endpoint):
    answer = raw_socket(endpoint, b"GET /v2/health/live HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer
