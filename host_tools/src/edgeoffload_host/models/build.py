"""Build the study's models: fine-tune each architecture × input size once, then write its variants.

Variant ``float``: ``<arch>_<px>.tflite`` (uint8 in, cast in the graph) and the same model as
``<arch>_<px>.keras`` (tf_keras; the GPU endpoint uses it). Variant ``q``: ``<arch>_q_<px>.tflite``,
full-integer int8 with uint8 (or int8) I/O. Every artifact gets a manifest; none is ever overwritten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeoffload.backends.modelfile import (
    Evaluation,
    MethodStep,
    manifest_path_for,
    sha256_file,
    write_manifest,
    write_new_file,
)
from edgeoffload.errors import ModelError
from edgeoffload_host.models import export
from edgeoffload_host.models.data import Dataset, load_dataset
from edgeoffload_host.models.train import fine_tune, recalibrate_batchnorm
from edgeoffload_host.models.zoo import (
    HEAD_DESCRIPTION,
    Architecture,
    architecture,
    build_core,
    check_input_px,
    count_depth,
    file_stem,
    import_keras,
    study_name,
)

log = logging.getLogger(__name__)

VARIANTS = {"float": "", "q": "q"}  # variant → the study's letters (Q = quantization)


@dataclass(frozen=True)
class BuildOptions:
    out_dir: Path
    models: tuple[str, ...] = ("mobilenet",)
    inputs: tuple[int, ...] = (32,)
    variants: tuple[str, ...] = ("float", "q")
    io_type: str = "uint8"
    weights: str = "none"
    dataset: str = "digits"
    classes: int = 100
    epochs: int = 1
    batch_size: int = 32
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-3
    calibration_samples: int = 100
    seed: int = 0
    force: bool = False

    def check(self) -> None:
        """ModelError for any option that cannot work (nothing is read or built yet)."""
        for key in self.models:
            arch = architecture(key)
            for px in self.inputs:
                check_input_px(arch, px)
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ModelError(f"unknown variant {unknown[0] if unknown else ''!r} "
                             f"(choose from {', '.join(VARIANTS)})")
        if self.io_type not in export.IO_TYPES:
            raise ModelError(f"io type {self.io_type!r} is not one of {', '.join(export.IO_TYPES)}")
        if self.weights not in ("none", "imagenet") and not Path(self.weights).is_file():
            raise ModelError(f"weights file {self.weights} not found or not a file")
        for name, value, low in (("classes", self.classes, 1), ("epochs", self.epochs, 0),
                                 ("batch size", self.batch_size, 1), ("steps per epoch", self.steps_per_epoch, 1),
                                 ("calibration samples", self.calibration_samples, 1)):
            if value is not None and value < low:
                raise ModelError(f"{name} must be at least {low}, got {value}")


@dataclass(frozen=True)
class Step:
    """One finished step, for the command's progress lines and --json."""

    action: str  # loaded, removed, trained, built, saved
    name: str
    seconds: float
    path: Path | None = None
    size_bytes: int | None = None
    accuracy: float | None = None
    float_accuracy: float | None = None


Reporter = Callable[[Step], None]


def build_models(out_dir: str | Path, models: Sequence[str] = ("mobilenet",), inputs: Sequence[int] = (32,),
                 variants: Sequence[str] = ("float", "q"), weights: str = "none", dataset: str = "digits",
                 epochs: int = 1, seed: int = 0, *, on_step: Reporter | None = None, **options: Any) -> list[Path]:
    """Build every model × input × variant into out_dir; returns the artifact paths written.

    Further keyword options are BuildOptions fields (classes, io_type, batch_size, steps_per_epoch,
    learning_rate, calibration_samples, force).
    """
    opts = BuildOptions(Path(out_dir), tuple(models), tuple(int(i) for i in inputs), tuple(variants),
                        weights=weights, dataset=dataset, epochs=epochs, seed=seed, **options)
    opts.check()
    report = on_step or (lambda step: None)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    _clear_targets(opts, report)
    written: list[Path] = []
    for px in opts.inputs:
        data = _load(opts, px, report)
        for key in opts.models:
            written += _build_arch(architecture(key), px, data, opts, report)
    return written


def artifact_paths(opts: BuildOptions) -> list[Path]:
    """Every file the options would write (without manifests)."""
    paths = []
    for key in opts.models:
        arch = architecture(key)
        for px in opts.inputs:
            for variant in opts.variants:
                stem = opts.out_dir / file_stem(arch, VARIANTS[variant], px)
                paths.append(stem.with_suffix(".tflite"))
                if variant == "float":
                    paths.append(stem.with_suffix(".keras"))
    return paths


def _clear_targets(opts: BuildOptions, report: Reporter) -> None:
    """Refuse to overwrite anything; with force, remove the old artifact and manifest first and say so."""
    for path in artifact_paths(opts):
        old = [p for p in (path, manifest_path_for(path)) if p.exists()]
        if not old:
            continue
        if not opts.force:
            raise ModelError(f"{old[0]} already exists; artifacts are never overwritten: "
                             "pass --force to remove it and build it again")
        for p in old:
            p.unlink()
        report(Step("removed", path.name, 0.0, path))


def _load(opts: BuildOptions, px: int, report: Reporter) -> Dataset:
    start = time.perf_counter()
    import_keras()  # selects legacy Keras before a folder dataset imports TensorFlow
    data = load_dataset(opts.dataset, px, seed=opts.seed)
    if len(data.labels) > opts.classes:
        raise ModelError(f"dataset {data.name} has {len(data.labels)} classes, more than --classes {opts.classes}")
    report(Step("loaded", f"{data.name}: {len(data.y_train)} train / {len(data.y_test)} held-out, {px} px",
                time.perf_counter() - start))
    return data


@dataclass(frozen=True)
class _Trained:
    """A fine-tuned core and everything its artifacts' manifests share."""

    arch: Architecture
    px: int
    core: Any
    parameters: int
    depth: int
    float_accuracy: float
    source: dict[str, Any]
    fine_tune: tuple[MethodStep, ...]


def _build_arch(arch: Architecture, px: int, data: Dataset, opts: BuildOptions, report: Reporter) -> list[Path]:
    trained = _train(arch, px, data, opts, report)
    written: list[Path] = []
    for variant in opts.variants:
        if variant == "float":
            written.append(_write_keras(trained, data, opts, report))
            written.append(_write_float(trained, data, opts, report))
        else:
            written.append(_write_int8(trained, data, opts, report))
    return written


def _train(arch: Architecture, px: int, data: Dataset, opts: BuildOptions, report: Reporter) -> _Trained:
    start = time.perf_counter()
    _, keras = import_keras()
    keras.utils.set_random_seed(opts.seed)
    core = build_core(arch, px, opts.classes, opts.weights)
    method: list[MethodStep] = []
    if opts.epochs > 0:
        fine_tune(core, data.x_train, data.y_train, epochs=opts.epochs, batch_size=opts.batch_size,
                  steps_per_epoch=opts.steps_per_epoch, learning_rate=opts.learning_rate)
        method.append(MethodStep("fine_tune", {
            "epochs": opts.epochs, "batch_size": opts.batch_size, "steps_per_epoch": opts.steps_per_epoch,
            "optimizer": "adam", "learning_rate": opts.learning_rate,
            "loss": "sparse_categorical_crossentropy", "split": "train"}))
        used = recalibrate_batchnorm(core, data.x_train)
        if used:
            method.append(MethodStep("recalibrate_batchnorm", {"samples": used, "split": "train"}))
    float_accuracy = export.evaluate_keras(core, data.x_test, data.y_test)
    trained = _Trained(arch, px, core, int(core.count_params()), count_depth(core), float_accuracy,
                       _source(arch, px, data, opts), tuple(method))
    report(Step("trained", study_name(arch, "", px), time.perf_counter() - start,
                accuracy=float_accuracy, float_accuracy=float_accuracy))
    return trained


def _source(arch: Architecture, px: int, data: Dataset, opts: BuildOptions) -> dict[str, Any]:
    weights: dict[str, Any] = {"name": opts.weights}
    if opts.weights not in ("none", "imagenet"):
        weights = {"name": str(Path(opts.weights).resolve()), "sha256": sha256_file(opts.weights)}
    return {"architecture": arch.key, "application": f"keras.applications.{arch.application}",
            "input_px": px, "classes": opts.classes, "head": HEAD_DESCRIPTION, "weights": weights,
            "preprocessing": {"layer": "Rescaling", "scale": arch.scale, "offset": list(arch.offset),
                              "channels": "RGB"},
            "dataset": data.describe()}


def _finish(trained: _Trained, path: Path, *, variant: str, fmt: str, method: list[MethodStep],
            tensors: Any, accuracy: float, data: Dataset, opts: BuildOptions, start: float,
            report: Reporter) -> Path:
    name = study_name(trained.arch, VARIANTS[variant], trained.px)
    manifest = export.make_manifest(
        path, name=name, fmt=fmt, parameters=trained.parameters, depth=trained.depth,
        source={**trained.source, "variant": variant}, method=[*trained.fine_tune, *method], seed=opts.seed,
        tensors=tensors,
        evaluation=Evaluation(accuracy, trained.float_accuracy, "held-out", int(len(data.y_test))))
    write_manifest(path, manifest)
    report(Step("saved" if fmt == "keras" else "built", name, time.perf_counter() - start, path,
                manifest.size_bytes, accuracy, trained.float_accuracy))
    return path


def _write_keras(trained: _Trained, data: Dataset, opts: BuildOptions, report: Reporter) -> Path:
    start = time.perf_counter()
    path = opts.out_dir / f"{file_stem(trained.arch, '', trained.px)}.keras"
    wrapped = export.wrap_uint8(export.without_optimizer(trained.core))
    export.save_keras(wrapped, path)
    method = [MethodStep("save", {"format": "keras", "library": "tf_keras",
                                  "input": "uint8, cast to float32 in the model"})]
    return _finish(trained, path, variant="float", fmt="keras", method=method,
                   tensors=export.keras_tensors(wrapped), accuracy=trained.float_accuracy, data=data,
                   opts=opts, start=start, report=report)


def _write_float(trained: _Trained, data: Dataset, opts: BuildOptions, report: Reporter) -> Path:
    start = time.perf_counter()
    name = study_name(trained.arch, "", trained.px)
    content = export.convert_float(export.wrap_uint8(trained.core))
    accuracy = export.evaluate_tflite(content, name, data.x_test, data.y_test)
    path = write_new_file(opts.out_dir / f"{file_stem(trained.arch, '', trained.px)}.tflite", content)
    method = [MethodStep("convert", {"converter": "tf.lite.TFLiteConverter.from_keras_model",
                                     "input": "uint8, cast to float32 in the graph"})]
    return _finish(trained, path, variant="float", fmt="tflite", method=method,
                   tensors=export.tflite_tensors(content, name), accuracy=accuracy, data=data, opts=opts,
                   start=start, report=report)


def _write_int8(trained: _Trained, data: Dataset, opts: BuildOptions, report: Reporter) -> Path:
    start = time.perf_counter()
    name = study_name(trained.arch, "q", trained.px)
    calibration = export.representative_images(data.x_train, opts.calibration_samples)
    content = export.convert_int8(trained.core, calibration, opts.io_type)
    tensors = export.tflite_tensors(content, name)
    if opts.io_type == "uint8" and tensors.inputs[0].quantization != {"scale": 1.0, "zero_point": 0}:
        log.warning("%s: input quantization %s is not scale 1, zero point 0: requests are requantized",
                    name, tensors.inputs[0].quantization)
    accuracy = export.evaluate_tflite(content, name, data.x_test, data.y_test)
    path = write_new_file(opts.out_dir / f"{file_stem(trained.arch, 'q', trained.px)}.tflite", content)
    method = [MethodStep("quantize", {"mode": "full_integer_int8_post_training",
                                      "converter": "tf.lite.TFLiteConverter.from_keras_model",
                                      "representative_samples": int(len(calibration)),
                                      "representative_split": "train", "io_type": opts.io_type})]
    return _finish(trained, path, variant="q", fmt="tflite", method=method, tensors=tensors,
                   accuracy=accuracy, data=data, opts=opts, start=start, report=report)
