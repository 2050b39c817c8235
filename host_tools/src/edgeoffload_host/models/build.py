"""Build the study's models: fine-tune each architecture × input size (or a user's model) once, compress it
as the variants need, and write each variant with its manifest.

``float``: ``<arch>_<px>.tflite`` (uint8 in, cast in the graph) and ``<arch>_<px>.keras`` (tf_keras; the GPU
endpoint serves it). ``q``: ``<arch>_q_<px>.tflite``, full-integer int8 with uint8 (or int8) I/O. ``pq``:
the fine-tuned model pruned (fine-tuned, stripped) then quantized. ``pwq``: the pruned model clustered
(fine-tuned, stripped) then quantized. The pruned model is made once and shared by pq and pwq. Every
artifact gets a manifest; none is ever overwritten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeoffload.backends.modelfile import MethodStep, manifest_path_for
from edgeoffload.errors import ModelError
from edgeoffload_host.models import compress, export
from edgeoffload_host.models.artifacts import Stage, Trained, write_float, write_int8, write_keras
from edgeoffload_host.models.data import Dataset, load_dataset
from edgeoffload_host.models.options import VARIANTS, BuildOptions, Reporter, Step
from edgeoffload_host.models.sources import (
    ModelSpec,
    architecture_source,
    architecture_specs,
    user_source,
    user_spec,
)
from edgeoffload_host.models.train import fine_tune, recalibrate_batchnorm
from edgeoffload_host.models.zoo import count_depth, import_keras

__all__ = ["VARIANTS", "BuildOptions", "Step", "artifact_paths", "build_models"]

log = logging.getLogger(__name__)


def build_models(out_dir: str | Path, models: Sequence[str] = ("mobilenet",), inputs: Sequence[int] = (32,),
                 variants: Sequence[str] = ("float", "q"), weights: str = "none", dataset: str = "digits",
                 epochs: int = 1, seed: int = 0, *, on_step: Reporter | None = None, **options: Any) -> list[Path]:
    """Build every model × input × variant into out_dir; returns the artifact paths written.

    Further keyword options are BuildOptions fields (model_file, classes, io_type, batch_size,
    steps_per_epoch, learning_rate, calibration_samples, sparsity, prune_frequency, prune_epochs, clusters,
    cluster_init, cluster_epochs, progress, force).
    """
    if options.get("model_file") is not None:
        options["model_file"] = Path(options["model_file"])
    opts = BuildOptions(Path(out_dir), tuple(models), tuple(int(i) for i in inputs), tuple(variants),
                        weights=weights, dataset=dataset, epochs=epochs, seed=seed, **options)
    opts.check()
    report = on_step or (lambda step: None)
    specs = _specs(opts, report)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    _clear_targets(opts, report, specs)
    written: list[Path] = []
    data: Dataset | None = None
    for spec in specs:
        if data is None or data.x_train.shape[1] != spec.input_px:
            data = _load(opts, spec.input_px, report)
        written += _build_spec(spec, data, opts, report)
    return written


def _specs(opts: BuildOptions, report: Reporter) -> list[ModelSpec]:
    if opts.model_file is None:
        return architecture_specs(opts.models, opts.inputs, opts.classes)
    start = time.perf_counter()
    spec = user_spec(opts.model_file)
    report(Step("loaded", f"model file {opts.model_file}: {spec.input_px} px, {spec.classes} classes",
                time.perf_counter() - start))
    return [spec]


def artifact_paths(opts: BuildOptions, specs: Sequence[ModelSpec] | None = None) -> list[Path]:
    """Every file the options would write (without manifests)."""
    if specs is None:
        specs = architecture_specs(opts.models, opts.inputs, opts.classes)
    paths = []
    for spec in specs:
        for variant in opts.variants:
            stem = opts.out_dir / spec.file_stem(VARIANTS[variant])
            paths.append(stem.with_suffix(".tflite"))
            if variant == "float":
                paths.append(stem.with_suffix(".keras"))
    return paths


def _clear_targets(opts: BuildOptions, report: Reporter, specs: Sequence[ModelSpec] | None = None) -> None:
    """Refuse to overwrite anything; with force, remove the old artifact and manifest first and say so."""
    for path in artifact_paths(opts, specs):
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
    report(Step("loaded", f"{data.name}: {len(data.y_train)} train / {len(data.y_test)} held-out, {px} px",
                time.perf_counter() - start))
    return data


def _build_spec(spec: ModelSpec, data: Dataset, opts: BuildOptions, report: Reporter) -> list[Path]:
    if len(data.labels) > spec.classes:
        raise ModelError(f"dataset {data.name} has {len(data.labels)} classes, more than the "
                         f"{spec.classes} outputs of {spec.study_name('')}")
    trained = _train(spec, data, opts, report)
    stages = {"": Stage("", trained.core)}
    written: list[Path] = []
    for variant in opts.variants:
        if variant == "float":
            written.append(write_keras(trained, data, opts, report))
            written.append(write_float(trained, data, opts, report))
        else:
            stage = _stage(VARIANTS[variant][:-1], stages, trained, data, opts, report)
            written.append(write_int8(trained, stage, data, opts, report))
    return written


def _train(spec: ModelSpec, data: Dataset, opts: BuildOptions, report: Reporter) -> Trained:
    start = time.perf_counter()
    _, keras = import_keras()
    keras.utils.set_random_seed(opts.seed)
    core = spec.core(opts.weights)
    method: list[MethodStep] = []
    settings = opts.fine_tune(opts.epochs, spec.from_logits)
    if fine_tune(core, data.x_train, data.y_train, settings, label=f"fine-tune {spec.study_name('')}"):
        method.append(MethodStep("fine_tune", settings.params(len(data.y_train))))
        method += _recalibrate(core, data)
    float_accuracy = export.evaluate_keras(core, data.x_test, data.y_test)
    source = architecture_source(spec, opts.weights) if spec.arch else user_source(spec, opts.weights)
    trained = Trained(spec, core, int(core.count_params()), count_depth(core), float_accuracy,
                      {**source, "dataset": data.describe()}, tuple(method))
    report(Step("trained", spec.study_name(""), time.perf_counter() - start,
                accuracy=float_accuracy, float_accuracy=float_accuracy))
    return trained


def _recalibrate(model: Any, data: Dataset) -> list[MethodStep]:
    used = recalibrate_batchnorm(model, data.x_train)
    return [MethodStep("recalibrate_batchnorm", {"samples": used, "split": "train"})] if used else []


def _stage(letters: str, stages: dict[str, Stage], trained: Trained, data: Dataset, opts: BuildOptions,
           report: Reporter) -> Stage:
    """The Keras model with the study's letters so far ("", "p", "pw"), made once and kept in stages."""
    if letters not in stages:
        if letters == "p":
            stages[letters] = _pruned(stages[""], trained, data, opts, report)
        elif letters == "pw":
            stages[letters] = _clustered(_stage("p", stages, trained, data, opts, report), trained, data,
                                         opts, report)
        else:
            raise ModelError(f"no way to make the {letters!r} stage")  # VARIANTS and this must agree
    return stages[letters]


def _pruned(base: Stage, trained: Trained, data: Dataset, opts: BuildOptions, report: Reporter) -> Stage:
    start = time.perf_counter()
    name = trained.spec.study_name("p")
    settings = opts.fine_tune(opts.prune_epochs, trained.spec.from_logits)
    done = compress.prune(base.model, data.x_train, data.y_train, settings, sparsity=opts.sparsity,
                          frequency=opts.prune_frequency, label=f"prune {name}")
    recalibration = _recalibrate(done.model, data)
    sparsity = compress.sparsity_summary(done.model, done.layers)
    compress.check_sparsity(sparsity, opts.sparsity, name)
    accuracy = export.evaluate_keras(done.model, data.x_test, data.y_test)
    method = (*base.method,
              MethodStep("prune", {"api": "tfmot.sparsity.keras.prune_low_magnitude",
                                   "schedule": "ConstantSparsity", "target_sparsity": opts.sparsity,
                                   "begin_step": compress.PRUNE_BEGIN_STEP, "frequency": opts.prune_frequency,
                                   "layers": list(done.layers), "which": compress.LAYERS_NOTE}),
              MethodStep("fine_tune", {**settings.params(len(data.y_train)), "steps": done.steps,
                                       "callbacks": ["UpdatePruningStep"]}),
              MethodStep("strip_pruning", {"api": "tfmot.sparsity.keras.strip_pruning"}),
              *recalibration,
              MethodStep("measure", {"sparsity": sparsity, "keras_accuracy": accuracy, "split": "held-out"}))
    report(Step("pruned", name, time.perf_counter() - start, accuracy=accuracy,
                float_accuracy=trained.float_accuracy, sparsity=sparsity["zeros"]))
    return Stage("p", done.model, method, sparsity=sparsity["zeros"])


def _clustered(pruned: Stage, trained: Trained, data: Dataset, opts: BuildOptions, report: Reporter) -> Stage:
    start = time.perf_counter()
    name = trained.spec.study_name("pw")
    settings = opts.fine_tune(opts.cluster_epochs, trained.spec.from_logits)
    done = compress.cluster(pruned.model, data.x_train, data.y_train, settings, clusters=opts.clusters,
                            init=opts.cluster_init, label=f"cluster {name}")
    recalibration = _recalibrate(done.model, data)
    sparsity = compress.sparsity_summary(done.model, done.layers)
    compress.check_sparsity(sparsity, opts.sparsity, name)
    uniques = compress.unique_summary(done.model, done.layers)
    compress.check_clusters(uniques, opts.clusters, name)
    accuracy = export.evaluate_keras(done.model, data.x_test, data.y_test)
    method = (*pruned.method,
              MethodStep("cluster", {"api": "tfmot.clustering.keras.cluster_weights",
                                     "number_of_clusters": opts.clusters,
                                     "centroid_initialization": compress.CLUSTER_INITS[opts.cluster_init],
                                     "preserve_sparsity": True, "layers": list(done.layers),
                                     "which": compress.LAYERS_NOTE}),
              MethodStep("fine_tune", {**settings.params(len(data.y_train)), "steps": done.steps}),
              MethodStep("strip_clustering", {"api": "tfmot.clustering.keras.strip_clustering"}),
              *recalibration,
              MethodStep("measure", {"sparsity": sparsity, "unique_values_per_output_channel": uniques,
                                     "keras_accuracy": accuracy, "split": "held-out"}))
    report(Step("clustered", name, time.perf_counter() - start, accuracy=accuracy,
                float_accuracy=trained.float_accuracy, sparsity=sparsity["zeros"], max_unique=uniques["max"]))
    return Stage("pw", done.model, method, sparsity=sparsity["zeros"], max_unique=uniques["max"])
