"""The JSON form of an Open Inference Protocol tensor: values checked against the datatype, nesting measured.

Pure, shared by the wire decoder (oip_wire): `fail(message)` builds the exception the caller raises
(RequestError for a request, TransportError for a response).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np


def json_depth(text: bytes, cheap_below: int) -> int:
    """How deeply the (valid) JSON text nests arrays and objects.

    Counting brackets is enough (and cheap) when there are at most `cheap_below` openers: the count is
    then returned, an upper bound of the depth that is below the limit the caller checks."""
    opens = text.count(b"[") + text.count(b"{")
    if opens <= cheap_below:
        return opens
    codes = np.frombuffer(re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', text, flags=re.S), np.uint8)
    steps = (np.isin(codes, (0x5B, 0x7B)).astype(np.int32)
             - np.isin(codes, (0x5D, 0x7D)).astype(np.int32))
    return int(np.cumsum(steps).max(initial=0))


def tensor_from_json(data: Any, where: str, datatype: str, dtype: np.dtype, shape: tuple[int, ...],
                     count: int, fail, may_hold_bools: bool) -> np.ndarray:
    """A tensor from a flat row-major JSON list, with every value checked against the datatype.

    numpy finds the values' common type in C; a per-value look is needed only when the JSON text
    holds ``true``/``false`` (numpy would read them as 1/0) or numpy falls back to objects.
    """
    if not isinstance(data, list):
        raise fail(f"{where}: 'data' must be a flat list of values in row-major order")
    if len(data) != count:
        raise fail(f"{where}: 'data' has {len(data)} values but shape {list(shape)} needs {count}")
    if not data:
        return np.empty(shape, dtype)
    try:
        found = np.array(data)
    except (ValueError, OverflowError):
        found = np.array(data, dtype=object)
    if found.ndim != 1:
        raise fail(f"{where}: 'data' must be a flat list of values in row-major order")
    allowed = _ALLOWED_TYPES[dtype.kind]
    kind = found.dtype.kind
    if kind == "O" or kind not in _FITTING_KINDS[dtype.kind] or (may_hold_bools and dtype.kind != "b"):
        bad = next((v for v in data if type(v) not in allowed), _ALL_FIT)
        if bad is not _ALL_FIT:
            raise fail(f"{where}: {datatype} data must be {_KIND_WORDS[dtype.kind]}, found {bad!r}")
        if kind not in _FITTING_KINDS[dtype.kind]:  # integers beyond int64 that numpy made floats
            found = np.array(data, dtype=object)
    if dtype.kind == "b":
        return found.astype(dtype).reshape(shape)
    if dtype.kind in "iu":
        return _fit_integers(found, where, datatype, dtype, fail).reshape(shape)
    return _fit_floats(found, where, datatype, dtype, fail).reshape(shape)


_ALL_FIT = object()
_KIND_WORDS = {"b": "true or false", "i": "integers", "u": "integers", "f": "numbers"}
_ALLOWED_TYPES = {"b": (bool,), "i": (int,), "u": (int,), "f": (int, float)}
_FITTING_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def _fit_integers(found: np.ndarray, where: str, datatype: str, dtype: np.dtype, fail) -> np.ndarray:
    info = np.iinfo(dtype)
    low, high = found.min(), found.max()
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise fail(f"{where}: value {bad} does not fit {datatype} [{info.min}, {info.max}]")
    return found.astype(dtype)


def _fit_floats(found: np.ndarray, where: str, datatype: str, dtype: np.dtype, fail) -> np.ndarray:
    try:
        wide = found.astype(np.float64)
    except OverflowError:
        raise fail(f"{where}: an integer value is too large for {datatype}") from None
    if dtype.itemsize < 8:
        finite = wide[np.isfinite(wide)]
        limit = float(np.finfo(dtype).max)
        if finite.size and float(np.abs(finite).max()) > limit:
            raise fail(f"{where}: a value exceeds the {datatype} range (±{limit:g})")
    return wide.astype(dtype)
