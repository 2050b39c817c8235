"""Model runtimes for the endpoint: TFLite on the CPU (a pool of interpreters), Keras on a GPU.

TensorFlow is imported only by ``KerasGpuRuntime``, which the repository builds only when a GPU is
there and a ``.keras`` file sits beside the ``.tflite``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeoffload.backends.oip_wire import datatype_of
from edgeoffload.errors import ModelError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the endpoint advertises it (shape includes the batch dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Runtime(Protocol):
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, inputs: Sequence[np.ndarray]) -> tuple[list[tuple[str, np.ndarray]], float]:
        """Outputs in model order and the compute time in ms; inputs are in ``self.inputs`` order."""

    def close(self) -> None: ...


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - a dependency of edgeoffload-host
        raise ModelError(f"cannot import ai_edge_litert ({exc}); install it: pip install ai-edge-litert") from exc
    return Interpreter


def _specs(details: list[dict]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(d["name"], datatype_of(d["dtype"], d["name"]), tuple(int(x) for x in d["shape"]))
                 for d in details)


class TfliteRuntime:
    """A pool of ``workers`` interpreters so that concurrent requests never share one."""

    platform = "tflite_cpu"

    def __init__(self, path: Path, *, workers: int = 2, threads: int = 1):
        if workers < 1 or threads < 1:
            raise ModelError(f"{path}: workers and threads must be at least 1 (got {workers}, {threads})")
        interpreter_class = _interpreter_class()
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(workers):
            try:
                interpreter = interpreter_class(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"{path}: not a loadable TFLite model: {exc}") from exc
            self._pool.put(interpreter)
        first = self._pool.get()
        self._pool.put(first)
        self._input_indices = [d["index"] for d in first.get_input_details()]
        self._output_indices = [d["index"] for d in first.get_output_details()]
        try:
            self.inputs = _specs(first.get_input_details())
            self.outputs = _specs(first.get_output_details())
        except Exception as exc:  # a datatype the protocol cannot carry (strings, complex)
            raise ModelError(f"{path}: {exc}") from exc

    def run(self, inputs: Sequence[np.ndarray]) -> tuple[list[tuple[str, np.ndarray]], float]:
        """The compute time is invoke() alone: copying tensors in and out is the endpoint's overhead."""
        interpreter = self._pool.get()  # SimpleQueue: one C call, no Python-level lock or condition
        try:
            for index, array in zip(self._input_indices, inputs):
                interpreter.set_tensor(index, array)
            start = time.perf_counter()
            interpreter.invoke()
            compute_ms = (time.perf_counter() - start) * 1e3
            outputs = [(spec.name, interpreter.get_tensor(index))
                       for spec, index in zip(self.outputs, self._output_indices)]
            return outputs, compute_ms
        finally:
            self._pool.put(interpreter)

    def close(self) -> None:
        while not self._pool.empty():
            self._pool.get()


class KerasGpuRuntime:
    """The Keras twin of a .tflite model, run by TensorFlow on the GPU.

    It advertises the .tflite model's tensor names and shapes (so clients need not care which path
    serves them) and the Keras model's output datatypes.
    """

    platform = "tensorflow_gpu"

    def __init__(self, keras_path: Path, like: TfliteRuntime):
        try:
            import tf_keras as keras  # `edgeoffload-host build` saves with tf_keras (Keras 2 format)
        except ImportError:  # only on the GPU path: TensorFlow is never imported on the CPU path
            import tensorflow as tf
            keras = tf.keras
        try:
            self._model = keras.models.load_model(str(keras_path), compile=False)
        except Exception as exc:
            raise ModelError(f"{keras_path}: cannot load the Keras model: {exc}") from exc
        keras_inputs, keras_outputs = list(self._model.inputs), list(self._model.outputs)
        if len(keras_inputs) != len(like.inputs) or len(keras_outputs) != len(like.outputs):
            raise ModelError(f"{keras_path}: has {len(keras_inputs)} inputs / {len(keras_outputs)} outputs, "
                             f"its .tflite twin {len(like.inputs)} / {len(like.outputs)}")
        self._input_dtypes = [np.dtype(getattr(t.dtype, "name", t.dtype)) for t in keras_inputs]
        self.inputs = like.inputs
        self.outputs = tuple(
            TensorSpec(spec.name, datatype_of(np.dtype(getattr(t.dtype, "name", t.dtype)), spec.name), spec.shape)
            for spec, t in zip(like.outputs, keras_outputs))
        self._lock = threading.Lock()

    def run(self, inputs: Sequence[np.ndarray]) -> tuple[list[tuple[str, np.ndarray]], float]:
        cast = [np.asarray(a, dtype=dt) for a, dt in zip(inputs, self._input_dtypes)]
        with self._lock:
            start = time.perf_counter()
            result = self._model(cast if len(cast) > 1 else cast[0], training=False)
            values = list(result.values()) if isinstance(result, dict) else (
                list(result) if isinstance(result, (list, tuple)) else [result])
            arrays = [np.asarray(v) for v in values]
            compute_ms = (time.perf_counter() - start) * 1e3
        return [(spec.name, a) for spec, a in zip(self.outputs, arrays)], compute_ms

    def close(self) -> None:
        self._model = None
