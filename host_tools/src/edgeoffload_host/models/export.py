"""Turn a trained core model into artifacts: the uint8-input Keras model, float and int8 .tflite files,
their evaluation on the held-out split (through the daemon's own TFLite session) and their manifests.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import logging
import os
import platform
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgeoffload.backends.modelfile import (
    Evaluation,
    Manifest,
    MethodStep,
    TensorInfo,
    Tensors,
    publish_new_file,
    sha256_file,
)
from edgeoffload.backends.tflite import TfliteSession, import_interpreter_module
from edgeoffload.errors import ModelError
from edgeoffload_host.models.zoo import import_keras

log = logging.getLogger(__name__)

IO_TYPES = ("uint8", "int8")
EVAL_THREADS = os.cpu_count() or 1
_VERSIONED = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy", "ai-edge-litert",
              "scikit-learn", "edgeoffload", "edgeoffload-host")


def wrap_uint8(core: Any) -> Any:
    """The request-tensor form of a core model: Input(uint8) → cast(float32) → core."""
    tf, keras = import_keras()
    shape = tuple(core.input_shape[1:])
    pixels = keras.Input(shape, dtype="uint8", name="image")
    return keras.Model(pixels, core(tf.cast(pixels, tf.float32)), name=f"{core.name}_uint8")


def convert_float(wrapped: Any) -> bytes:
    tf, _ = import_keras()
    return tf.lite.TFLiteConverter.from_keras_model(wrapped).convert()


def representative_images(images: np.ndarray, count: int) -> np.ndarray:
    """Calibration images as float32 pixels; the first holds a 0 and a 255 so that the input range is
    exactly 0..255 and the uint8 input quantization is scale 1, zero point 0 (the request tensor as is)."""
    if len(images) == 0:
        raise ModelError("no images to calibrate the int8 model with")
    chosen = images[:count].astype(np.float32).copy()
    chosen[0, 0, 0, 0], chosen[0, -1, -1, -1] = 0.0, 255.0
    return chosen


def convert_int8(core: Any, calibration: np.ndarray, io_type: str = "uint8") -> bytes:
    """Full-integer int8 post-training quantization with a representative dataset, io_type I/O."""
    if io_type not in IO_TYPES:
        raise ModelError(f"io type {io_type!r} is not one of {', '.join(IO_TYPES)}")
    tf, _ = import_keras()

    def representative() -> Iterator[list[np.ndarray]]:
        for image in calibration:
            yield [image[np.newaxis]]

    converter = tf.lite.TFLiteConverter.from_keras_model(core)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = getattr(tf, io_type)
    converter.inference_output_type = getattr(tf, io_type)
    with warnings.catch_warnings():
        # "Statistics for quantized inputs were expected": not needed, the calibration data gives the range
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs", category=UserWarning)
        return converter.convert()


def evaluate_tflite(content: bytes, name: str, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a .tflite on uint8 images, run as the daemon runs it."""
    session = TfliteSession(content, threads=EVAL_THREADS, name=name)
    hits = sum(int(np.argmax(session.run(x)) == y) for x, y in zip(images, labels, strict=True))
    return hits / len(labels)


def evaluate_keras(core: Any, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> float:
    scores = core.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def tflite_tensors(content: bytes, name: str) -> Tensors:
    session = TfliteSession(content, threads=1, name=name)
    return Tensors((_tensor_info(session.input_spec),), (_tensor_info(session.output_spec),))


def tflite_tensor_types(content: bytes) -> dict[str, int]:
    """How many tensors of each type the .tflite holds (weights, activations, inputs and outputs)."""
    interpreter = import_interpreter_module().Interpreter(model_content=content)
    counts = Counter(np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details())
    return dict(sorted(counts.items()))


def keras_tensors(wrapped: Any) -> Tensors:
    def info(tensor: Any) -> TensorInfo:
        shape = tuple(1 if d is None else int(d) for d in tensor.shape)
        return TensorInfo(tensor.name, shape, tensor.dtype.name)

    return Tensors(tuple(info(t) for t in wrapped.inputs), tuple(info(t) for t in wrapped.outputs))


def _tensor_info(spec: Any) -> TensorInfo:
    quant = None
    if spec.quantization is not None:
        quant = {"scale": spec.quantization[0], "zero_point": spec.quantization[1]}
    return TensorInfo(spec.name, spec.shape, spec.dtype.name, quant)


def without_optimizer(core: Any) -> Any:
    """An uncompiled copy with the same weights: the saved model then holds no optimizer state (3× smaller)."""
    _, keras = import_keras()
    clone = keras.models.clone_model(core)
    clone.set_weights(core.get_weights())
    return clone


def save_keras(model: Any, path: Path) -> None:
    """Save a Keras model under a new name only (never replacing a file), via a temporary file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp, overwrite=True)
        publish_new_file(Path(tmp), path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def gzip_size(path: Path) -> int:
    """Compressed size (what pruning and clustering change; the .tflite size itself does not)."""
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def make_manifest(path: Path, *, name: str, fmt: str, parameters: int, depth: int, source: dict[str, Any],
                  method: list[MethodStep], seed: int, tensors: Tensors, evaluation: Evaluation) -> Manifest:
    """The manifest of an artifact already written at path (hash and sizes are read from the file)."""
    return Manifest(
        name=name, file=path.name, sha256=sha256_file(path), size_bytes=path.stat().st_size,
        gzip_size_bytes=gzip_size(path), format=fmt, parameters=parameters, depth=depth, source=source,
        method=tuple(method), seed=seed, versions=library_versions(), tensors=tensors, evaluation=evaluation,
        created_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
