"""Open Inference Protocol v2 (KServe v2) REST bodies, with Triton's binary tensor extension.

Pure: bytes in, bytes out; no sockets. Shared by the daemon's client and the host's endpoint.
A binary body is a JSON header followed by raw little-endian tensors in the order the header lists
them; ``Inference-Header-Content-Length`` says where the JSON ends. Decoding is strict: a request
that is malformed in any way raises ``RequestError`` (the client's mistake, HTTP 400); a response
that is malformed raises ``TransportError`` (the server answered garbage).

Decoded binary tensors are read-only views into the body (no copy).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from edgeoffload.errors import RequestError, TransportError

from .oip_json import json_depth, tensor_from_json

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"
MAX_JSON_DEPTH = 32
MAX_DIMS = 32

DATATYPES: MappingProxyType[str, np.dtype] = MappingProxyType({
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
})
UNSUPPORTED_DATATYPES = frozenset({"BYTES"})
_BY_KIND = {(dt.kind, dt.itemsize): name for name, dt in DATATYPES.items()}
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request. ``requested_outputs`` empty means all outputs."""

    id: str | None
    inputs: tuple[tuple[str, np.ndarray], ...]
    binary_outputs: bool
    requested_outputs: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferResponse:
    """A decoded inference response."""

    model_name: str
    id: str | None
    outputs: dict[str, np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)
    model_version: str | None = None


def datatype_of(dtype: np.dtype | type, name: str = "tensor") -> str:
    """The OIP datatype name for a numpy dtype; RequestError for dtypes the protocol cannot carry."""
    dt = np.dtype(dtype)
    found = _BY_KIND.get((dt.kind, dt.itemsize))
    if found is None:
        raise RequestError(f"{name!r}: numpy dtype {dt} has no Open Inference Protocol datatype "
                           f"(supported: {', '.join(DATATYPES)})")
    return found


def _wire_array(array: np.ndarray, name: str) -> tuple[str, np.ndarray]:
    """The datatype and a C-contiguous little-endian copy-if-needed of ``array``."""
    array = np.asarray(array)
    datatype = datatype_of(array.dtype, name)
    return datatype, np.ascontiguousarray(array, dtype=DATATYPES[datatype])


def _tensor_entries(tensors: Sequence[tuple[str, np.ndarray]], binary: bool) -> tuple[list[dict], list]:
    """JSON entries for tensors, plus the raw buffers to append when binary."""
    entries: list[dict] = []
    buffers: list = []
    for name, array in tensors:
        datatype, wire = _wire_array(array, name)
        entry: dict[str, Any] = {"name": name, "shape": list(wire.shape), "datatype": datatype}
        if binary:
            entry["parameters"] = {"binary_data_size": wire.nbytes}
            buffers.append(memoryview(wire.reshape(-1)).cast("B"))
        else:
            entry["data"] = wire.reshape(-1).tolist()
        entries.append(entry)
    return entries, buffers


_to_json = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps(..., separators=...) makes one a call


def _assemble(header: dict, buffers: list, binary: bool) -> tuple[list, dict[str, str]]:
    """The body as a list of buffers (JSON header, then raw tensors) and the extra HTTP headers."""
    head = _to_json(header).encode()
    if not binary:
        return [head], {"Content-Type": JSON_CONTENT_TYPE}
    return [head, *buffers], {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(head))}


def encode_infer_request_parts(inputs: Sequence[tuple[str, np.ndarray]], *, binary: bool,
                               request_id: str | None = None,
                               binary_outputs: bool = True) -> tuple[list, dict[str, str]]:
    """``encode_infer_request`` with the body as a list of buffers to send as they are (no joined copy).

    The tensor buffers are views of ``inputs`` (or of contiguous copies): send them before changing those.
    """
    entries, buffers = _tensor_entries(inputs, binary)
    header: dict[str, Any] = {}
    if request_id is not None:
        header["id"] = request_id
    if binary and binary_outputs:
        header["parameters"] = {"binary_data_output": True}
    header["inputs"] = entries
    return _assemble(header, buffers, binary)


def encode_infer_request(inputs: Sequence[tuple[str, np.ndarray]], *, binary: bool,
                         request_id: str | None = None,
                         binary_outputs: bool = True) -> tuple[bytes, dict[str, str]]:
    """Body and extra headers of an infer request.

    ``binary_outputs`` asks the server for binary outputs; it only applies when ``binary`` is true,
    since a JSON-only server (MLServer) does not know the extension.
    """
    parts, headers = encode_infer_request_parts(inputs, binary=binary, request_id=request_id,
                                                binary_outputs=binary_outputs)
    return b"".join(parts), headers


def encode_infer_response(model_name: str, outputs: Sequence[tuple[str, np.ndarray]], *, binary: bool,
                          request_id: str | None, parameters: dict | None,
                          model_version: str | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and extra headers of an infer response."""
    entries, buffers = _tensor_entries(outputs, binary)
    header: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        header["model_version"] = model_version
    if request_id is not None:
        header["id"] = request_id
    if parameters:
        header["parameters"] = parameters
    header["outputs"] = entries
    parts, headers = _assemble(header, buffers, binary)
    return b"".join(parts), headers


class _Decoder:
    """Walks one body; ``err`` is the exception class to raise, ``role`` names tensors in messages."""

    def __init__(self, body: bytes | bytearray, header_length: str | None, err: type[Exception], role: str,
                 max_tensor_bytes: int):
        self.err, self.role, self.max_tensor_bytes = err, role, max_tensor_bytes
        self.body = body
        self.may_hold_bools = False
        self.header, self.offset = self._split(header_length)

    def fail(self, message: str) -> Exception:
        return self.err(message)

    def _split(self, header_length: str | None) -> tuple[dict, int | None]:
        body = self.body
        if header_length is None:
            return self._parse_json(body), None
        text = header_length.strip()
        if not _INTEGER.fullmatch(text):
            raise self.fail(f"{HEADER_LENGTH} {header_length!r} is not an integer")
        length = int(text)
        if length < 0:
            raise self.fail(f"{HEADER_LENGTH} {length} is negative")
        if length > len(body):
            raise self.fail(f"{HEADER_LENGTH} {length} is larger than the body ({len(body)} bytes)")
        return self._parse_json(body[:length]), length

    def _parse_json(self, text: bytes) -> dict:
        try:
            value = json.loads(text)
        except RecursionError:
            raise self.fail(f"JSON header is nested deeper than {MAX_JSON_DEPTH} levels") from None
        except ValueError as exc:
            raise self.fail(f"JSON header is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise self.fail(f"JSON header must be an object, not {type(value).__name__}")
        self.may_hold_bools = b"true" in text or b"false" in text
        if json_depth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise self.fail(f"JSON header is nested deeper than {MAX_JSON_DEPTH} levels")
        return value

    def tensors(self, key: str, max_count: int) -> list[tuple[str, np.ndarray]]:
        entries = self.header.get(key)
        if not isinstance(entries, list) or (key == "inputs" and not entries):
            raise self.fail(f"'{key}' must be a non-empty list of tensors")
        if len(entries) > max_count:
            raise self.fail(f"too many {key}: {len(entries)} (at most {max_count})")
        seen: set[str] = set()
        tensors = []
        for index, entry in enumerate(entries):
            name, array = self._tensor(entry, index)
            if name in seen:
                raise self.fail(f"{self.role} {name!r} appears more than once")
            seen.add(name)
            tensors.append((name, array))
        if self.offset is not None and self.offset != len(self.body):
            raise self.fail(f"{len(self.body) - self.offset} trailing bytes after the last binary tensor")
        return tensors

    def _tensor(self, entry: Any, index: int) -> tuple[str, np.ndarray]:
        if not isinstance(entry, dict):
            raise self.fail(f"{self.role} #{index} must be an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(f"{self.role} #{index}: 'name' must be a non-empty string")
        where = f"{self.role} {name!r}"
        datatype = entry.get("datatype")
        if isinstance(datatype, str) and datatype in UNSUPPORTED_DATATYPES:
            raise self.fail(f"{where}: datatype {datatype} is not supported (numeric tensors only)")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise self.fail(f"{where}: unknown datatype {datatype!r} (known: {', '.join(DATATYPES)})")
        dtype = DATATYPES[datatype]
        params = entry.get("parameters", {})
        if not isinstance(params, dict):
            raise self.fail(f"{where}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            shape, count = self._shape(entry.get("shape"), where, dtype.itemsize)
            return name, self._from_binary(size, where, dtype, shape, count)
        if "data" not in entry:
            raise self.fail(f"{where}: needs 'data' or parameters.binary_data_size")
        shape, count = self._shape(entry.get("shape"), where, dtype.itemsize)
        return name, tensor_from_json(entry["data"], where, datatype, dtype, shape, count, self.fail,
                                self.may_hold_bools)

    def _shape(self, shape: Any, where: str, itemsize: int) -> tuple[tuple[int, ...], int]:
        if not isinstance(shape, list) or len(shape) > MAX_DIMS:
            raise self.fail(f"{where}: 'shape' must be a list of at most {MAX_DIMS} integers")
        for dim in shape:
            if type(dim) is not int:
                raise self.fail(f"{where}: shape {shape} must hold integers, not {dim!r}")
            if dim < 0:
                raise self.fail(f"{where}: shape {shape} has a negative dimension")
        limit = self.max_tensor_bytes // itemsize
        count = 0 if 0 in shape else 1
        for dim in shape if count else ():
            count *= dim
            if count > limit:
                raise self.fail(f"{where}: shape {shape} is larger than the limit of "
                                f"{self.max_tensor_bytes} bytes per tensor")
        return tuple(shape), count

    def _from_binary(self, size: Any, where: str, dtype: np.dtype, shape: tuple[int, ...],
                     count: int) -> np.ndarray:
        if self.offset is None:
            raise self.fail(f"{where}: binary_data_size given but there is no {HEADER_LENGTH} header")
        if type(size) is not int or size < 0:
            raise self.fail(f"{where}: binary_data_size must be a non-negative integer, not {size!r}")
        expected = count * dtype.itemsize
        if size != expected:
            raise self.fail(f"{where}: binary_data_size {size} does not match shape {list(shape)} "
                            f"({count} x {dtype.itemsize} bytes = {expected})")
        remaining = len(self.body) - self.offset
        if size > remaining:
            raise self.fail(f"{where}: binary_data_size {size} but only {remaining} bytes remain in the body")
        if count == 0:
            return np.empty(shape, dtype)
        array = np.frombuffer(self.body, dtype=dtype, count=count, offset=self.offset).reshape(shape)
        self.offset += size
        if dtype.kind == "b" and bool((array.view(np.uint8) > 1).any()):
            raise self.fail(f"{where}: BOOL bytes must be 0 or 1")
        return array


def _optional_str(header: dict, key: str, fail) -> str | None:
    value = header.get(key)
    if value is not None and not isinstance(value, str):
        raise fail(f"'{key}' must be a string")
    return value


def _parameters(holder: dict, where: str, fail) -> dict[str, Any]:
    params = holder.get("parameters", {})
    if not isinstance(params, dict):
        raise fail(f"{where}'parameters' must be an object")
    return params


def _bytes_like(body: bytes | bytearray | memoryview) -> bytes | bytearray:
    return body.tobytes() if isinstance(body, memoryview) else body


def decode_infer_request(body: bytes, header_length: str | None, *, max_tensor_bytes: int,
                         max_inputs: int = 64) -> InferRequest:
    """Parse an infer request body; RequestError names the input and the problem."""
    decoder = _Decoder(_bytes_like(body), header_length, RequestError, "input", max_tensor_bytes)
    header = decoder.header
    request_id = _optional_str(header, "id", decoder.fail)
    parameters = _parameters(header, "", decoder.fail)
    binary_outputs = parameters.get("binary_data_output") is True
    requested = header.get("outputs", [])
    if not isinstance(requested, list):
        raise decoder.fail("'outputs' must be a list of {\"name\": ...} objects")
    names = []
    for index, out in enumerate(requested):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise decoder.fail(f"outputs #{index} must be an object with a string 'name'")
        if _parameters(out, f"output {out['name']!r}: ", decoder.fail).get("binary_data") is True:
            binary_outputs = True
        names.append(out["name"])
    inputs = decoder.tensors("inputs", max_inputs)
    return InferRequest(request_id, tuple(inputs), binary_outputs, tuple(names), parameters)


def decode_infer_response(body: bytes, header_length: str | None) -> InferResponse:
    """Parse an infer response body; TransportError when the server answered garbage."""
    body = _bytes_like(body)
    # Every element takes at least one byte of body (binary) or two (JSON): a bound that cannot bite.
    decoder = _Decoder(body, header_length, TransportError, "output", max(len(body), 1) * 8)
    header = decoder.header
    model_name = header.get("model_name")
    if not isinstance(model_name, str):
        raise decoder.fail("response has no string 'model_name'")
    outputs = decoder.tensors("outputs", 1 << 16)
    return InferResponse(model_name, _optional_str(header, "id", decoder.fail), dict(outputs),
                         _parameters(header, "", decoder.fail),
                         _optional_str(header, "model_version", decoder.fail))
