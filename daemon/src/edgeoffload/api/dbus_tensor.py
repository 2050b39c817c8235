"""Tensors as they cross D-Bus: bytes + shape + dtype name, checked against the model before anything runs.

Every check names what was wrong and what the model takes, so a client can fix its request; nothing is
converted silently (a float32 tensor for a uint8 model is refused, not cast).
"""

from __future__ import annotations

import math

import numpy as np

from edgeoffload.errors import RequestError

# numpy names a client may send; tensors are little-endian and C-ordered
DTYPES = {name: np.dtype(name).newbyteorder("<") for name in (
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16", "float32",
    "float64")}
MAX_RANK = 8


def tensor_from_wire(model: str, input_shape: tuple[int, ...], input_dtype: np.dtype, data: bytes,
                     shape: list[int], dtype: str) -> np.ndarray:
    """The request tensor as an array of the model's input shape; RequestError when it does not fit."""
    wire_dtype = DTYPES.get(dtype)
    if wire_dtype is None:
        raise RequestError(f"dtype {dtype[:40]!r} is not one of {', '.join(DTYPES)} (model {model} takes "
                           f"{np.dtype(input_dtype).name})")
    if wire_dtype != np.dtype(input_dtype):
        raise RequestError(f"model {model} takes {np.dtype(input_dtype).name} tensors, got {dtype}: convert "
                           "(and quantise) on the client; nothing is cast silently")
    if len(shape) > MAX_RANK:
        raise RequestError(f"shape has {len(shape)} dimensions; model {model} takes {list(input_shape)}")
    wanted = tuple(int(d) for d in input_shape)
    got = tuple(int(d) for d in shape)
    if got != wanted and not (wanted[:1] == (1,) and got == wanted[1:]):
        raise RequestError(f"model {model} takes shape {list(wanted)}"
                           f"{f' (or {list(wanted[1:])})' if wanted[:1] == (1,) else ''}, got {list(got)}")
    need = math.prod(wanted) * wire_dtype.itemsize
    if len(data) != need:
        raise RequestError(f"tensor has {len(data)} bytes but shape {list(got)} of {dtype} needs {need}: "
                           "send exactly the array's bytes (C order, little-endian)")
    return np.frombuffer(data, dtype=wire_dtype).reshape(wanted)


def tensor_to_wire(array: np.ndarray) -> tuple[bytes, list[int], str]:
    """(bytes, shape, dtype name) of an output array, little-endian and C-ordered."""
    a = np.asarray(array)
    name = a.dtype.name
    if name not in DTYPES:
        raise TypeError(f"output dtype {name} cannot be sent over D-Bus")
    a = np.ascontiguousarray(a, dtype=DTYPES[name])
    return a.tobytes(), [int(d) for d in a.shape], name
