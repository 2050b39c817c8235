"""The models an endpoint serves: every ``*.tflite`` in one directory, named by its file stem.

A ``<file>.manifest.json`` beside a model with a ``sha256`` key is checked before the model is
served; a mismatch, or a file that is not a model, is logged and skipped while the others are served.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeoffload.backends.modelfile import manifest_path_for, sha256_file
from edgeoffload.backends.oip_wire import datatype_of
from edgeoffload.errors import ModelError, RequestError
from edgeoffload_host.serve.runtime import KerasGpuRuntime, Runtime, TfliteRuntime

logger = logging.getLogger(__name__)

MODEL_VERSION = "1"
MAX_BATCH = 1


@dataclass
class ServedModel:
    name: str
    path: Path
    runtime: Runtime

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "versions": [MODEL_VERSION], "platform": self.runtime.platform,
                "inputs": [s.to_json() for s in self.runtime.inputs],
                "outputs": [s.to_json() for s in self.runtime.outputs]}

    def order_inputs(self, inputs: Sequence[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        """The request's tensors in model order, checked against the metadata (RequestError if not)."""
        given = dict(inputs)
        expected = {s.name for s in self.runtime.inputs}
        for name in given:
            if name not in expected:
                raise RequestError(f"input {name!r} is not an input of model {self.name!r} "
                                   f"(inputs: {', '.join(sorted(expected))})")
        ordered = []
        for spec in self.runtime.inputs:
            if spec.name not in given:
                raise RequestError(f"input {spec.name!r} of model {self.name!r} is missing")
            array = given[spec.name]
            _check_tensor(self.name, spec.name, array, spec.datatype, spec.shape)
            ordered.append(array)
        return ordered

    def output_names(self) -> list[str]:
        return [s.name for s in self.runtime.outputs]


def _check_tensor(model: str, name: str, array: np.ndarray, datatype: str, shape: tuple[int, ...]) -> None:
    got = datatype_of(array.dtype, name)
    if got != datatype:
        raise RequestError(f"input {name!r}: datatype {got} but model {model!r} expects {datatype}")
    if array.ndim != len(shape) or array.shape[1:] != shape[1:]:
        raise RequestError(f"input {name!r}: shape {list(array.shape)} but model {model!r} expects {list(shape)}")
    if not 1 <= array.shape[0] <= MAX_BATCH:
        raise RequestError(f"input {name!r}: batch size {array.shape[0]} is not supported "
                           f"(1..{MAX_BATCH}); shape {list(array.shape)}")


def _check_manifest(path: Path) -> None:
    """ModelError if a manifest beside ``path`` names a different sha256 (or cannot be read)."""
    manifest = manifest_path_for(path)
    if not manifest.exists():
        return
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{manifest}: cannot read the manifest: {exc}") from exc
    expected = data.get("sha256") if isinstance(data, dict) else None
    if expected is None:
        return
    actual = sha256_file(path)
    if not isinstance(expected, str) or actual != expected.lower():
        raise ModelError(f"{path}: sha256 {actual} does not match its manifest ({expected}); "
                         f"rebuild or re-copy the model")


_gpu_cache: list[bool] = []


def _tensorflow_gpu_available() -> bool:
    """True when TensorFlow imports and sees a GPU; checked once per process."""
    if not _gpu_cache:
        found = False
        if importlib.util.find_spec("tensorflow") is not None:
            try:
                tf = importlib.import_module("tensorflow")
                found = bool(tf.config.list_physical_devices("GPU"))
            except Exception as exc:  # a broken TF install must not stop the CPU path
                logger.warning("tensorflow is installed but unusable (%s); serving on the CPU", exc)
        _gpu_cache.append(found)
    return _gpu_cache[0]


def load_model(path: Path, *, workers: int, threads: int) -> ServedModel:
    """One model, on the GPU when a ``.keras`` twin and a TensorFlow GPU are there, else TFLite CPU."""
    _check_manifest(path)
    runtime: Runtime = TfliteRuntime(path, workers=workers, threads=threads)
    keras_path = path.with_suffix(".keras")
    if keras_path.is_file() and _tensorflow_gpu_available():
        cpu = runtime
        runtime = KerasGpuRuntime(keras_path, cpu)
        cpu.close()
    return ServedModel(path.stem, path, runtime)


class ModelRepository:
    """Models by name; ``refused`` maps a file name to why it is not served."""

    def __init__(self, models: dict[str, ServedModel], refused: dict[str, str] | None = None):
        self.models = dict(models)
        self.refused = dict(refused or {})

    @classmethod
    def scan(cls, models_dir: Path | str, *, workers: int = 2, threads: int = 1) -> ModelRepository:
        directory = Path(models_dir)
        if not directory.is_dir():
            raise ModelError(f"models directory {directory} does not exist or is not a directory")
        models: dict[str, ServedModel] = {}
        refused: dict[str, str] = {}
        for path in sorted(directory.glob("*.tflite")):
            try:
                model = load_model(path, workers=workers, threads=threads)
            except ModelError as exc:
                logger.error("not serving %s: %s", path.name, exc)
                refused[path.name] = str(exc)
                continue
            models[model.name] = model
            logger.info("serving %s (%s) from %s", model.name, model.runtime.platform, path)
        return cls(models, refused)

    def get(self, name: str) -> ServedModel | None:
        return self.models.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self.models)

    def close(self) -> None:
        for model in self.models.values():
            model.runtime.close()
