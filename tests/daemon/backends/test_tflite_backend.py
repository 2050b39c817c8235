"""TFLite sessions and the CPU/NPU backends on real interpreters and the tiny models."""

from __future__ import annotations

import ctypes.util
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from edgeoffload.backends.modelfile import load_model_file
from edgeoffload.backends.npu import NpuBackend
from edgeoffload.backends.tflite import (
    CpuBackend,
    TfliteSession,
    import_interpreter_module,
    runtime_version,
)
from edgeoffload.errors import BackendError, ModelError, RequestError


@dataclass
class Target:
    """Stands in for the config dataclasses: only the attributes the backends read."""

    name: str = "cpu4"
    threads: int = 2
    delegate: str = "/usr/lib/libvx_delegate.so"
    delegate_options: dict[str, str] = field(default_factory=dict)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 16, 16, 3), dtype=np.uint8)


def _plain_run(path: Path, x: np.ndarray) -> np.ndarray:
    """The reference: a bare interpreter, no adaptation."""
    interpreter = import_interpreter_module().Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _session(path: Path, name: str = "m") -> TfliteSession:
    return TfliteSession(path.read_bytes(), threads=1, name=name)


def test_runtime_version_names_the_module():
    assert runtime_version().split()[0] in {"tflite_runtime", "ai_edge_litert"}


def test_float_session_matches_a_plain_interpreter(tiny_models):
    session = _session(tiny_models["float"])
    assert session.input_spec.shape == (1, 16, 16, 3) and session.input_spec.dtype == np.uint8
    assert session.input_spec.quantization is None
    for x in _images(3):
        out = session.run(x)
        assert out.dtype == np.float32 and out.shape == (1, 10)
        np.testing.assert_array_equal(out, _plain_run(tiny_models["float"], x))


def test_quantized_session_dequantizes_the_output(tiny_models):
    session = _session(tiny_models["q"])
    assert session.input_spec.quantization == (1.0, 0)
    scale, zero_point = session.output_spec.quantization
    assert session.output_spec.dtype == np.uint8
    for x in _images(3):
        raw = _plain_run(tiny_models["q"], x)
        out = session.run(x)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, (raw.astype(np.float32) - zero_point) * scale)
        assert abs(out.sum() - 1.0) < 0.05  # softmax scores survive dequantization


def test_request_without_batch_dimension_is_accepted(tiny_models):
    session = _session(tiny_models["float"])
    x = _images(1)[0]
    np.testing.assert_array_equal(session.run(x[0]), session.run(x))


@pytest.mark.parametrize(("x", "message"), [
    (np.zeros((1, 8, 8, 3), np.uint8), r"model m: request tensor shape \[1, 8, 8, 3\] does not match the "
                                       r"model's input shape \[1, 16, 16, 3\] \(or \[16, 16, 3\] without"),
    (np.zeros((2, 16, 16, 3), np.uint8), r"shape \[2, 16, 16, 3\] does not match"),
    (np.zeros((1, 16, 16, 3), np.float32), r"model m: request tensor dtype float32 is not accepted: the model "
                                           r"expects uint8 \(uint8 input\)"),
    (np.zeros((1, 16, 16, 3), np.int64), r"dtype int64 is not accepted"),
    ([[0]], r"model m: request tensor must be a numpy array, got list"),
])
def test_bad_requests_name_expected_and_given(tiny_models, x, message):
    with pytest.raises(RequestError, match=message):
        _session(tiny_models["q"]).run(x)


def test_corrupted_model_bytes_are_a_model_error(tiny_models):
    content = bytearray(tiny_models["float"].read_bytes())
    content[8:] = b"\xff" * (len(content) - 8)
    with pytest.raises(ModelError, match=r"model broken: the TFLite runtime cannot load it: .*rebuild it"):
        TfliteSession(bytes(content), threads=1, name="broken")


def test_concurrent_runs_from_threads_are_correct(tiny_models):
    session = _session(tiny_models["q"])
    images = _images(8, seed=1)
    expected = [session.run(x) for x in images]
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(40):
            j = (i + k) % len(images)
            if not np.array_equal(session.run(images[j]), expected[j]):
                errors.append(f"thread {k} image {j}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_cpu_backend_loads_and_runs_verified_models(tiny_models):
    backend = CpuBackend(Target())
    assert (backend.available, backend.unavailable_reason) == (False, "not opened")
    backend.open()
    assert backend.available and backend.unavailable_reason is None and backend.kind == "local"
    assert backend.runtime_version == runtime_version()
    model = load_model_file(tiny_models["q"])
    backend.load(model)
    assert backend.loaded("tiny_q_16") and not backend.loaded("tiny_16")
    assert backend.input_spec("tiny_q_16").shape == (1, 16, 16, 3)
    x = _images(1)[0]
    np.testing.assert_array_equal(backend.run("tiny_q_16", x), _session(tiny_models["q"]).run(x))
    with pytest.raises(RequestError, match=r"target cpu4: model 'nope' is not loaded \(loaded: tiny_q_16\)"):
        backend.run("nope", x)
    backend.close()
    assert not backend.available and not backend.loaded("tiny_q_16")


def test_unavailable_backend_refuses_to_load(tiny_models):
    with pytest.raises(BackendError, match=r"target cpu4: cannot load model tiny_16: target unavailable "
                                           r"\(not opened\)"):
        CpuBackend(Target()).load(load_model_file(tiny_models["float"]))


def test_npu_with_absent_delegate_is_unavailable(tmp_path, tiny_models):
    npu = NpuBackend(Target(name="npu", delegate=str(tmp_path / "libvx_delegate.so")))
    npu.open()
    assert not npu.available
    assert npu.unavailable_reason == (f"delegate {tmp_path / 'libvx_delegate.so'} not found: install "
                                      "tensorflow-lite-vx-delegate (BSP) or set the target's delegate path")
    with pytest.raises(BackendError, match=r"target npu: cannot load model tiny_16: target unavailable "
                                           r"\(delegate .* not found"):
        npu.load(load_model_file(tiny_models["float"]))


def _not_a_delegate(tmp_path: Path) -> list[str]:
    text = tmp_path / "libvx_delegate.so"
    text.write_text("not a shared library\n")
    paths = [str(text)]
    libm = ctypes.util.find_library("m")  # a real shared library without tflite_plugin_create_delegate
    if libm:
        paths.append(libm if os.path.isabs(libm) else _resolve_lib(libm))
    return [p for p in paths if p]


def _resolve_lib(soname: str) -> str:
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib", "/lib"):
        if os.path.isfile(os.path.join(d, soname)):
            return os.path.join(d, soname)
    return ""


def test_npu_with_a_file_that_is_not_a_delegate_is_unavailable(tmp_path):
    for path in _not_a_delegate(tmp_path):
        npu = NpuBackend(Target(name="npu", delegate=path))
        npu.open()
        assert not npu.available
        assert npu.unavailable_reason.startswith(f"delegate {path} failed to load: ")
        assert "\n" not in npu.unavailable_reason


def test_npu_cache_dir_sets_the_driver_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("VIV_VX_ENABLE_CACHE_GRAPH_BINARY", raising=False)
    monkeypatch.delenv("VIV_VX_CACHE_BINARY_GRAPH_DIR", raising=False)
    fake = tmp_path / "libvx_delegate.so"
    fake.write_text("not a shared library\n")
    NpuBackend(Target(name="npu", delegate=str(fake)), cache_dir=tmp_path / "cache").open()
    assert os.environ["VIV_VX_ENABLE_CACHE_GRAPH_BINARY"] == "1"
    assert os.environ["VIV_VX_CACHE_BINARY_GRAPH_DIR"] == str(tmp_path / "cache")
    assert (tmp_path / "cache").is_dir()


@pytest.mark.npu
def test_npu_runs_the_int8_model_close_to_the_cpu(tiny_models, tmp_path):
    npu = NpuBackend(Target(name="npu"), cache_dir=tmp_path / "cache")
    npu.open()
    assert npu.available, npu.unavailable_reason
    model = load_model_file(tiny_models["q"])
    npu.load(model)
    cpu = _session(tiny_models["q"])
    for x in _images(4):
        np.testing.assert_allclose(npu.run("tiny_q_16", x), cpu.run(x), atol=2 * cpu.output_spec.quantization[0])


def test_quantize_maps_uint8_pixels_onto_an_int8_input():
    from edgeoffload.backends.tflite import _quantize

    pixels = np.array([0, 1, 128, 255], np.uint8)
    assert _quantize(pixels, (1.0, -128), np.dtype(np.int8)).tolist() == [-128, -127, 0, 127]
    assert _quantize(pixels, (2.0, 0), np.dtype(np.uint8)).tolist() == [0, 0, 64, 128]  # round half to even
