"""Write one model's artifacts, each followed by its manifest: ``<stem>.keras`` and ``<stem>.tflite`` (float),
``<stem with q, pq or pwq>.tflite`` (int8 from the uncompressed, pruned or pruned+clustered Keras model).

Each file is written once under a new name and never modified (``write_new_file``); its manifest records
how it was made (the shared fine-tune, then its own steps, measurements included) and its accuracy beside
the float Keras model's on the same held-out split.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeoffload.backends.modelfile import Evaluation, MethodStep, write_manifest, write_new_file
from edgeoffload_host.models import export
from edgeoffload_host.models.data import Dataset
from edgeoffload_host.models.options import BuildOptions, Reporter, Step
from edgeoffload_host.models.sources import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trained:
    """A fine-tuned core and everything its artifacts' manifests share."""

    spec: ModelSpec
    core: Any
    parameters: int
    depth: int
    float_accuracy: float
    source: dict[str, Any]
    fine_tune: tuple[MethodStep, ...]


@dataclass(frozen=True)
class Stage:
    """A Keras model on its way to an int8 variant: the study's letters so far ("" for the fine-tuned core,
    "p" pruned, "pw" pruned and clustered), the model, and its own method steps after the shared fine-tune."""

    letters: str
    model: Any
    method: tuple[MethodStep, ...] = ()
    sparsity: float | None = None
    max_unique: int | None = None


def write_keras(trained: Trained, data: Dataset, opts: BuildOptions, report: Reporter) -> Path:
    start = time.perf_counter()
    path = opts.out_dir / f"{trained.spec.file_stem('')}.keras"
    wrapped = export.wrap_uint8(export.without_optimizer(trained.core))
    export.save_keras(wrapped, path)
    method = [MethodStep("save", {"format": "keras", "library": "tf_keras",
                                  "input": "uint8, cast to float32 in the model"})]
    return _finish(trained, path, letters="", fmt="keras", method=method, tensors=export.keras_tensors(wrapped),
                   accuracy=trained.float_accuracy, data=data, opts=opts, start=start, report=report)


def write_float(trained: Trained, data: Dataset, opts: BuildOptions, report: Reporter) -> Path:
    start = time.perf_counter()
    name = trained.spec.study_name("")
    content = export.convert_float(export.wrap_uint8(trained.core))
    accuracy = export.evaluate_tflite(content, name, data.x_test, data.y_test)
    path = write_new_file(opts.out_dir / f"{trained.spec.file_stem('')}.tflite", content)
    method = [MethodStep("convert", {"converter": "tf.lite.TFLiteConverter.from_keras_model",
                                     "input": "uint8, cast to float32 in the graph",
                                     "tensor_types": export.tflite_tensor_types(content)})]
    return _finish(trained, path, letters="", fmt="tflite", method=method,
                   tensors=export.tflite_tensors(content, name), accuracy=accuracy, data=data, opts=opts,
                   start=start, report=report)


def write_int8(trained: Trained, stage: Stage, data: Dataset, opts: BuildOptions, report: Reporter) -> Path:
    """The full-integer int8 .tflite of a stage's Keras model: variant letters are the stage's + "q"."""
    start = time.perf_counter()
    letters = stage.letters + "q"
    name = trained.spec.study_name(letters)
    calibration = export.representative_images(data.x_train, opts.calibration_samples)
    content = export.convert_int8(stage.model, calibration, opts.io_type)
    tensors = export.tflite_tensors(content, name)
    if opts.io_type == "uint8" and tensors.inputs[0].quantization != {"scale": 1.0, "zero_point": 0}:
        log.warning("%s: input quantization %s is not scale 1, zero point 0: requests are requantized",
                    name, tensors.inputs[0].quantization)
    accuracy = export.evaluate_tflite(content, name, data.x_test, data.y_test)
    path = write_new_file(opts.out_dir / f"{trained.spec.file_stem(letters)}.tflite", content)
    method = [*stage.method,
              MethodStep("quantize", {"mode": "full_integer_int8_post_training",
                                      "converter": "tf.lite.TFLiteConverter.from_keras_model",
                                      "representative_samples": int(len(calibration)),
                                      "representative_split": "train", "io_type": opts.io_type,
                                      "tensor_types": export.tflite_tensor_types(content)})]
    return _finish(trained, path, letters=letters, fmt="tflite", method=method, tensors=tensors,
                   accuracy=accuracy, data=data, opts=opts, start=start, report=report, stage=stage)


def _finish(trained: Trained, path: Path, *, letters: str, fmt: str, method: list[MethodStep], tensors: Any,
            accuracy: float, data: Dataset, opts: BuildOptions, start: float, report: Reporter,
            stage: Stage | None = None) -> Path:
    name = trained.spec.study_name(letters)
    variant = letters or "float"
    manifest = export.make_manifest(
        path, name=name, fmt=fmt, parameters=trained.parameters, depth=trained.depth,
        source={**trained.source, "variant": variant}, method=[*trained.fine_tune, *method], seed=opts.seed,
        tensors=tensors,
        evaluation=Evaluation(accuracy, trained.float_accuracy, "held-out", int(len(data.y_test))))
    write_manifest(path, manifest)
    report(Step("saved" if fmt == "keras" else "built", name, time.perf_counter() - start, path,
                manifest.size_bytes, accuracy, trained.float_accuracy, manifest.gzip_size_bytes,
                stage.sparsity if stage else None, stage.max_unique if stage else None))
    return path
