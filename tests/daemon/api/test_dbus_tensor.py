"""Tensors crossing D-Bus: every wrong request is refused with a message that says what the model takes."""

import numpy as np
import pytest

from edgeoffload.api.dbus_tensor import MAX_RANK, tensor_from_wire, tensor_to_wire
from edgeoffload.errors import RequestError

SHAPE = (1, 4, 4, 3)


def wire(shape=(4, 4, 3), dtype="uint8", n=None):
    data = np.arange(48, dtype=np.uint8).tobytes() if n is None else b"\0" * n
    return tensor_from_wire("m", SHAPE, np.dtype("uint8"), data, list(shape), dtype)


def test_a_right_tensor_comes_back_in_the_models_shape_with_or_without_the_batch():
    for shape in (SHAPE, SHAPE[1:]):
        x = wire(shape)
        assert x.shape == SHAPE and x.dtype == np.uint8
        assert x.reshape(-1).tolist() == list(range(48))


@pytest.mark.parametrize("shape, dtype, n, message", [
    ((4, 4, 3), "float32", None, "model m takes uint8 tensors, got float32: convert (and quantise) on the client"),
    ((4, 4, 3), "complex64", None, "dtype 'complex64' is not one of bool, uint8"),
    ((4, 4, 3), "<u1", None, "dtype '<u1' is not one of"),
    ((3, 4, 4), "uint8", None, "model m takes shape [1, 4, 4, 3] (or [4, 4, 3]), got [3, 4, 4]"),
    ((2, 4, 4, 3), "uint8", None, "got [2, 4, 4, 3]"),
    ((1,) * (MAX_RANK + 1), "uint8", None, "shape has 9 dimensions; model m takes [1, 4, 4, 3]"),
    ((4, 4, 3), "uint8", 47, "tensor has 47 bytes but shape [4, 4, 3] of uint8 needs 48"),
    ((4, 4, 3), "uint8", 1 << 20, "tensor has 1048576 bytes but shape [4, 4, 3] of uint8 needs 48"),
    ((4, 4, 3), "uint8", 0, "tensor has 0 bytes"),
])
def test_wrong_requests_are_refused_with_what_the_model_takes(shape, dtype, n, message):
    with pytest.raises(RequestError) as e:
        wire(shape, dtype, n)
    assert message in str(e.value)


def test_absurd_dimensions_do_not_allocate_or_overflow():
    with pytest.raises(RequestError, match=r"got \[18446744073709551615, 4, 3\]"):
        wire((2**64 - 1, 4, 3))


def test_float_model_takes_little_endian_float32():
    x = np.linspace(0, 1, 48, dtype="<f4")
    out = tensor_from_wire("f", SHAPE, np.dtype("float32"), x.tobytes(), list(SHAPE), "float32")
    assert np.array_equal(out.reshape(-1), x)


def test_outputs_go_out_as_bytes_shape_and_a_numpy_name():
    y = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    data, shape, dtype = tensor_to_wire(y)
    assert (shape, dtype) == ([2, 3], "float32")
    assert np.frombuffer(data, "<f4").reshape(2, 3).tolist() == y.tolist()
    with pytest.raises(TypeError, match="object"):
        tensor_to_wire(np.array([object()]))
