"""The Open Inference Protocol codec: round trips for every datatype, and every malformed body refused."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgeoffload.backends.oip_wire import (DATATYPES, HEADER_LENGTH, datatype_of, decode_infer_request,
                                           decode_infer_response, encode_infer_request, encode_infer_response)
from edgeoffload.errors import RequestError, TransportError

LIMIT = 1 << 20


def sample(datatype: str) -> np.ndarray:
    dtype = DATATYPES[datatype]
    if dtype.kind == "b":
        return np.array([[True, False, True], [False, False, True]])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 0, 1], [7, info.max - 1, info.max]], dtype=dtype)
    info = np.finfo(dtype)
    return np.array([[-info.max, -1.5, 0.0], [info.tiny, 3.25, info.max]], dtype=dtype)


def decode(body: bytes, headers: dict[str, str], limit: int = LIMIT, **kwargs):
    return decode_infer_request(body, headers.get(HEADER_LENGTH), max_tensor_bytes=limit, **kwargs)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_request_round_trip_every_datatype(datatype, binary):
    x = sample(datatype)
    body, headers = encode_infer_request([("x", x), ("scalar", x[:1, :1])], binary=binary, request_id="r1")
    assert headers["Content-Type"] == ("application/octet-stream" if binary else "application/json")
    assert (HEADER_LENGTH in headers) == binary
    request = decode(body, headers)
    assert request.id == "r1"
    assert request.binary_outputs == binary
    (name, got), (name2, got2) = request.inputs
    assert (name, name2) == ("x", "scalar")
    assert got.dtype == DATATYPES[datatype] and got.shape == (2, 3)
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(got2, x[:1, :1])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_response_round_trip_every_datatype(datatype, binary):
    x = sample(datatype)
    body, headers = encode_infer_response("m", [("out", x)], binary=binary, request_id="7",
                                          parameters={"compute_time_ms": 1.5}, model_version="1")
    response = decode_infer_response(body, headers.get(HEADER_LENGTH))
    assert (response.model_name, response.id, response.model_version) == ("m", "7", "1")
    assert response.parameters == {"compute_time_ms": 1.5}
    np.testing.assert_array_equal(response.outputs["out"], x)
    assert response.outputs["out"].dtype == DATATYPES[datatype]


def test_json_data_is_flat_row_major_and_binary_is_little_endian():
    x = np.arange(6, dtype=">i4").reshape(2, 3)  # big-endian in memory
    body, _ = encode_infer_request([("x", x)], binary=False)
    entry = json.loads(body)["inputs"][0]
    assert entry == {"name": "x", "shape": [2, 3], "datatype": "INT32", "data": [0, 1, 2, 3, 4, 5]}
    body, headers = encode_infer_request([("x", x)], binary=True)
    assert body[int(headers[HEADER_LENGTH]):] == np.arange(6, dtype="<i4").tobytes()


def test_nan_and_infinity_survive_for_floats():
    x = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    for binary in (True, False):
        body, headers = encode_infer_request([("x", x)], binary=binary)
        np.testing.assert_array_equal(decode(body, headers).inputs[0][1], x)


def test_binary_outputs_are_asked_for_per_request_or_per_output():
    header = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}],
              "outputs": [{"name": "a", "parameters": {"binary_data": True}}, {"name": "b"}]}
    request = decode(json.dumps(header).encode(), {})
    assert request.binary_outputs and request.requested_outputs == ("a", "b")
    body, _ = encode_infer_request([("x", np.int8([1]))], binary=False)
    assert not decode(body, {}).binary_outputs


def test_numpy_dtypes_without_a_datatype_are_refused():
    with pytest.raises(RequestError, match=r"'s': numpy dtype <U1 has no Open Inference Protocol datatype"):
        encode_infer_request([("s", np.array(["a"]))], binary=True)
    assert datatype_of(np.dtype(">f8")) == "FP64"


def test_zero_sized_tensors():
    x = np.zeros((0, 3), dtype=np.float32)
    for binary in (True, False):
        body, headers = encode_infer_request([("x", x)], binary=binary)
        assert decode(body, headers).inputs[0][1].shape == (0, 3)


def _json_request(entry: dict, **extra) -> bytes:
    return json.dumps({"inputs": [entry], **extra}).encode()


def _binary_request(entry: dict, payload: bytes, header_length: int | None = None) -> tuple[bytes, str]:
    head = json.dumps({"inputs": [entry]}).encode()
    return head + payload, str(len(head) if header_length is None else header_length)


U8 = {"name": "img", "shape": [1, 4], "datatype": "UINT8"}


@pytest.mark.parametrize(("entry", "message"), [
    ({**U8, "data": [1, 2, 3]}, "input 'img': 'data' has 3 values but shape [1, 4] needs 4"),
    ({**U8, "data": [1, 2, 3, 256]}, "input 'img': value 256 does not fit UINT8 [0, 255]"),
    ({**U8, "data": [1, 2, 3, -1]}, "input 'img': value -1 does not fit UINT8 [0, 255]"),
    ({**U8, "data": [1, 2, 3, 4.5]}, "input 'img': UINT8 data must be integers, found 4.5"),
    ({**U8, "data": [1, 2, 3, True]}, "input 'img': UINT8 data must be integers, found True"),
    ({**U8, "data": [1, 2, 3, "4"]}, "input 'img': UINT8 data must be integers, found '4'"),
    ({**U8, "data": [1, 2, 3, None]}, "input 'img': UINT8 data must be integers, found None"),
    ({**U8, "data": [[1, 2], [3, 4]], "shape": [2]}, "input 'img': 'data' must be a flat list"),
    ({**U8, "data": "1234"}, "input 'img': 'data' must be a flat list"),
    ({**U8, "datatype": "INT32", "data": [1, 2, 3, float("nan")]}, "INT32 data must be integers, found nan"),
    ({**U8, "datatype": "BOOL", "data": [True, False, 1, 0]}, "input 'img': BOOL data must be true or false"),
    ({**U8, "datatype": "FP16", "data": [1, 2, 3, 1e6]}, "input 'img': a value exceeds the FP16 range"),
    ({**U8, "datatype": "FP32", "data": [1, 2, 3, 1e39]}, "input 'img': a value exceeds the FP32 range"),
    ({**U8, "datatype": "FP32", "data": [1, 2, 3, None]}, "FP32 data must be numbers, found None"),
    ({**U8, "datatype": "COMPLEX64", "data": [1, 2, 3, 4]}, "input 'img': unknown datatype 'COMPLEX64'"),
    ({**U8, "datatype": "BYTES", "data": ["a", "b", "c", "d"]}, "input 'img': datatype BYTES is not supported"),
    ({**U8, "shape": [1, -4], "data": []}, "input 'img': shape [1, -4] has a negative dimension"),
    ({**U8, "shape": [1, 4.0], "data": [1, 2, 3, 4]}, "input 'img': shape [1, 4.0] must hold integers"),
    ({**U8, "shape": "1x4", "data": [1, 2, 3, 4]}, "input 'img': 'shape' must be a list"),
    ({**U8, "shape": [2**40, 2**40, 2**40], "data": []}, "input 'img': shape .* is larger than the limit"),
    ({**U8, "shape": [1] * 40, "data": [1]}, "input 'img': 'shape' must be a list of at most 32"),
    ({"shape": [1], "datatype": "UINT8", "data": [1]}, "input #0: 'name' must be a non-empty string"),
    ({**U8}, "input 'img': needs 'data' or parameters.binary_data_size"),
    ({**U8, "data": [1, 2, 3, 4], "parameters": []}, "input 'img': 'parameters' must be an object"),
    ({**U8, "parameters": {"binary_data_size": 4}}, "binary_data_size given but there is no "
                                                     "Inference-Header-Content-Length header"),
    ({**U8, "datatype": ["UINT8"], "data": [1, 2, 3, 4]}, "input 'img': unknown datatype ['UINT8']"),
])
def test_malformed_json_inputs_name_the_input_and_the_problem(entry, message):
    if "larger than the limit" not in message:
        message = re.escape(message)
    with pytest.raises(RequestError, match=message):
        decode_infer_request(_json_request(entry), None, max_tensor_bytes=LIMIT)


def test_a_large_shape_is_refused_before_anything_is_allocated():
    entry = {**U8, "shape": [65536, 65536], "parameters": {"binary_data_size": 2**32}}
    body, length = _binary_request(entry, b"")
    with pytest.raises(RequestError, match=r"shape \[65536, 65536\] is larger than the limit of 1048576 bytes"):
        decode_infer_request(body, length, max_tensor_bytes=LIMIT)


@pytest.mark.parametrize(("size", "payload", "length", "message"), [
    (4, b"\x01\x02\x03\x04\x05", None, "1 trailing bytes after the last binary tensor"),
    (4, b"\x01\x02", None, "input 'img': binary_data_size 4 but only 2 bytes remain in the body"),
    (3, b"\x01\x02\x03", None, r"input 'img': binary_data_size 3 does not match shape \[1, 4\] \(4 x 1 bytes = 4\)"),
    (-4, b"", None, "input 'img': binary_data_size must be a non-negative integer, not -4"),
    ("4", b"\x01\x02\x03\x04", None, "binary_data_size must be a non-negative integer, not '4'"),
    (4, b"\x01\x02\x03\x04", "abc", "Inference-Header-Content-Length 'abc' is not an integer"),
    (4, b"\x01\x02\x03\x04", "-3", "Inference-Header-Content-Length -3 is negative"),
    (4, b"\x01\x02\x03\x04", "100000", r"Inference-Header-Content-Length 100000 is larger than the body \(\d+ bytes\)"),
    (4, b"\x01\x02\x03\x04", "20", "JSON header is not valid JSON"),
])
def test_malformed_binary_bodies(size, payload, length, message):
    body, header_length = _binary_request({**U8, "parameters": {"binary_data_size": size}}, payload)
    with pytest.raises(RequestError, match=message):
        decode_infer_request(body, header_length if length is None else length, max_tensor_bytes=LIMIT)


def test_binary_bool_bytes_must_be_zero_or_one():
    body, length = _binary_request({"name": "b", "shape": [2], "datatype": "BOOL",
                                    "parameters": {"binary_data_size": 2}}, b"\x01\x02")
    with pytest.raises(RequestError, match="input 'b': BOOL bytes must be 0 or 1"):
        decode_infer_request(body, length, max_tensor_bytes=LIMIT)


@pytest.mark.parametrize(("body", "message"), [
    (b"\xff\xfe garbage", "JSON header is not valid JSON"),
    (b"", "JSON header is not valid JSON"),
    (b"[1, 2]", "JSON header must be an object, not list"),
    (b'{"inputs": []}', "'inputs' must be a non-empty list of tensors"),
    (b'{"inputs": {"name": "x"}}', "'inputs' must be a non-empty list of tensors"),
    (b'{"inputs": [7]}', "input #0 must be an object"),
    (b'{"id": 5, "inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}]}', "'id' must be a string"),
    (b'{"outputs": 3, "inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}]}', "'outputs' must be"),
    (b'{"parameters": 3, "inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}]}',
     "'parameters' must be an object"),
    (b'{"x": ' + b"[" * 33 + b"]" * 33 + b"}", "JSON header is nested deeper than 32 levels"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 32 levels|not valid JSON"),
])
def test_malformed_headers(body, message):
    with pytest.raises(RequestError, match=message):
        decode_infer_request(body, None, max_tensor_bytes=LIMIT)


def test_nesting_of_exactly_32_levels_and_brackets_inside_strings_are_fine():
    inputs = [{"name": "[[[[" * 20, "shape": [1], "datatype": "INT8", "data": [1]}]
    body = json.dumps({"inputs": inputs, "parameters": {"deep": json.loads("[" * 30 + "]" * 30)}}).encode()
    assert decode_infer_request(body, None, max_tensor_bytes=LIMIT).inputs[0][0] == "[[[[" * 20


def test_duplicate_input_names_are_refused():
    body, headers = encode_infer_request([("x", np.int8([1])), ("x", np.int8([2]))], binary=True)
    with pytest.raises(RequestError, match="input 'x' appears more than once"):
        decode(body, headers)


def test_too_many_inputs_are_refused():
    body, headers = encode_infer_request([(f"x{i}", np.int8([i])) for i in range(5)], binary=True)
    with pytest.raises(RequestError, match=r"too many inputs: 5 \(at most 4\)"):
        decode(body, headers, max_inputs=4)


def test_per_tensor_byte_limit():
    body, headers = encode_infer_request([("x", np.zeros(300, np.float32))], binary=True)
    with pytest.raises(RequestError, match=r"input 'x': shape \[300\] is larger than the limit of 1000 bytes"):
        decode(body, headers, limit=1000)


@pytest.mark.parametrize(("body", "length", "message"), [
    (b"<html>502 Bad Gateway</html>", None, "not valid JSON"),
    (b'{"outputs": []}', None, "no string 'model_name'"),
    (b'{"model_name": "m", "outputs": [{"name": "o", "shape": [2], "datatype": "FP32", "data": [1]}]}', None,
     "output 'o': 'data' has 1 values but shape \\[2\\] needs 2"),
    (b'{"model_name": "m", "outputs": [{"name": "o", "shape": [1], "datatype": "FP32",'
     b' "parameters": {"binary_data_size": 4}}]}\x00\x00', "999", "larger than the body"),
])
def test_garbage_responses_are_transport_errors(body, length, message):
    with pytest.raises(TransportError, match=message):
        decode_infer_response(body, length)
