"""Pruning and weight clustering with tensorflow-model-optimization, and measuring what they left.

Which layers: the kernels of Conv1D, Conv2D, Conv3D and Dense layers (exactly these classes), through nested
models. In the study's backbones that is every convolution but the depthwise ones, plus the head.
DepthwiseConv2D (MobileNet) is left dense, as tfmot's own registries do ("big unrecoverable accuracy
loss"; a 3×3 depthwise kernel has 9 weights per channel); biases and BatchNormalization are never touched.

Pruning: ``prune_low_magnitude`` with ``ConstantSparsity(s, begin_step=1, frequency=f)``, fine-tuned with
``UpdatePruningStep``, then ``strip_pruning``. tfmot 0.8 counts optimizer steps from 1 (the wrapper adds one
to its step before it checks the schedule), so ``begin_step=0`` would first prune at step f: with the
default f=100 and fewer fine-tuning steps nothing at all is pruned (measured here: 0 % zeros). begin_step 1
prunes on the first step and again every f steps; UpdatePruningStep re-applies the mask at each epoch's end,
so the last update leaves the zeros in place. Clustering: ``cluster_weights`` (n clusters per layer,
``preserve_sparsity=True`` so the pruned zeros stay zeros and zero is one of the n values), fine-tuned,
then ``strip_clustering``.

Every function works on copies: the model passed in is never changed. The measurements run on the stripped
model, i.e. on the weights that are converted to .tflite.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeoffload.errors import ModelError
from edgeoffload_host.models.train import FineTune, fine_tune
from edgeoffload_host.models.zoo import import_keras

log = logging.getLogger(__name__)

TARGET_LAYERS = ("Conv1D", "Conv2D", "Conv3D", "Dense")
LAYERS_NOTE = ("kernels of Conv1D/Conv2D/Conv3D/Dense layers; DepthwiseConv2D kernels, biases and "
               "BatchNormalization left as they are")
PRUNE_BEGIN_STEP = 1
SPARSITY_TOLERANCE = 0.01  # tfmot rounds the number of zeros per kernel
CLUSTER_INITS = {"linear": "LINEAR", "kmeans++": "KMEANS_PLUS_PLUS", "density": "DENSITY_BASED",
                 "random": "RANDOM"}
MEASURED_ON = "the stripped Keras kernels, i.e. the weights converted to this file"


@dataclass(frozen=True)
class Compressed:
    """A stripped model, the names of the layers whose kernels were changed, and the fine-tune's steps."""

    model: Any
    layers: tuple[str, ...]
    steps: int


def import_tfmot() -> Any:
    import_keras()  # tfmot reads TF_USE_LEGACY_KERAS when it is imported
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as e:
        raise ModelError(f"pruning and clustering need tensorflow-model-optimization ({e}): "
                         "pip install 'edgeoffload-host[build]'") from e
    return tfmot


def copy_model(model: Any) -> Any:
    """A new model of the same structure with copies of the weights (nothing shared, no optimizer)."""
    _, keras = import_keras()
    try:
        clone = keras.models.clone_model(model)
    except (ValueError, TypeError) as e:
        raise ModelError(f"{model.name}: cannot copy the model ({e}); pruning and clustering need a "
                         "functional or Sequential Keras model") from e
    clone.set_weights(model.get_weights())
    return clone


def leaf_layers(model: Any) -> list[Any]:
    """Every layer that is not itself a model, in order, through nested models."""
    found = []
    for layer in model.layers:
        found += leaf_layers(layer) if hasattr(layer, "layers") else [layer]
    return found


def target_layers(model: Any) -> list[Any]:
    return [layer for layer in leaf_layers(model) if type(layer).__name__ in TARGET_LAYERS]


def _wrap(model: Any, wrap: Any) -> tuple[Any, tuple[str, ...]]:
    """Clone model (recursing into nested models), wrapping each target layer; the rest are shared."""
    _, keras = import_keras()
    wrapped: list[str] = []

    def clone_function(layer: Any) -> Any:
        if hasattr(layer, "layers"):
            return keras.models.clone_model(layer, clone_function=clone_function)
        if type(layer).__name__ in TARGET_LAYERS:
            wrapped.append(layer.name)
            return wrap(layer)
        return layer

    result = keras.models.clone_model(model, clone_function=clone_function)
    if not wrapped:
        raise ModelError(f"{model.name}: no {'/'.join(TARGET_LAYERS)} layer to compress")
    return result, tuple(wrapped)


def prune(model: Any, images: np.ndarray, labels: np.ndarray, settings: FineTune, *, sparsity: float,
          frequency: int, label: str = "prune") -> Compressed:
    """Magnitude pruning to ``sparsity`` (ConstantSparsity), fine-tuned, stripped; model is not changed."""
    if settings.epochs < 1:
        raise ModelError("pruning needs at least one fine-tuning epoch (the masks are set while training)")
    tfmot = import_tfmot()
    api = tfmot.sparsity.keras
    schedule = api.ConstantSparsity(sparsity, begin_step=PRUNE_BEGIN_STEP, frequency=frequency)
    wrapped, names = _wrap(copy_model(model), lambda layer: api.prune_low_magnitude(layer, schedule))
    steps = fine_tune(wrapped, images, labels, settings, callbacks=[api.UpdatePruningStep()], label=label)
    return Compressed(api.strip_pruning(wrapped), names, steps)  # shares layers only with the copy


def cluster(model: Any, images: np.ndarray, labels: np.ndarray, settings: FineTune, *, clusters: int,
            init: str, label: str = "cluster") -> Compressed:
    """Weight clustering preserving sparsity, fine-tuned, stripped; model is not changed."""
    tfmot = import_tfmot()
    api = tfmot.clustering.keras
    centroids = getattr(api.CentroidInitialization, CLUSTER_INITS[init])

    def wrap(layer: Any) -> Any:
        return api.cluster_weights(layer, number_of_clusters=clusters, cluster_centroids_init=centroids,
                                   preserve_sparsity=True)

    wrapped, names = _wrap(copy_model(model), wrap)
    steps = fine_tune(wrapped, images, labels, settings, label=label)
    return Compressed(api.strip_clustering(wrapped), names, steps)


def _kernels(model: Any, names: tuple[str, ...]) -> list[tuple[str, np.ndarray]]:
    by_name = {layer.name: layer for layer in leaf_layers(model)}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ModelError(f"{model.name}: layer {missing[0]} not found to measure")
    return [(n, by_name[n].kernel.numpy()) for n in names]


def sparsity_summary(model: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Fraction of exact zeros in the named layers' kernels: overall (by weight) and per layer."""
    kernels = _kernels(model, names)
    per_layer = [float(np.mean(k == 0)) for _, k in kernels]
    zeros = sum(int(np.count_nonzero(k == 0)) for _, k in kernels)
    total = sum(k.size for _, k in kernels)
    return {"layers": len(kernels), "weights": total, "zeros": round(zeros / total, 6),
            "per_layer": {"min": round(min(per_layer), 6), "mean": round(float(np.mean(per_layer)), 6)},
            "measured_on": MEASURED_ON}


def unique_summary(model: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Distinct values per output channel (last kernel axis) of the named layers' kernels."""
    counts = np.concatenate([unique_per_channel(k) for _, k in _kernels(model, names)])
    return {"layers": len(names), "channels": int(counts.size), "max": int(counts.max()),
            "mean": round(float(counts.mean()), 3), "measured_on": MEASURED_ON}


def unique_per_channel(kernel: np.ndarray) -> np.ndarray:
    """For a kernel [..., out]: how many distinct values each of the ``out`` channels holds."""
    columns = np.sort(kernel.reshape(-1, kernel.shape[-1]), axis=0)
    return 1 + np.count_nonzero(np.diff(columns, axis=0), axis=0)


def check_sparsity(summary: dict[str, Any], target: float, what: str) -> None:
    """ModelError unless every measured kernel is at the target sparsity (within tfmot's rounding)."""
    lowest = summary["per_layer"]["min"]
    if lowest < target - SPARSITY_TOLERANCE:
        raise ModelError(f"{what}: a pruned kernel has only {lowest:.1%} zeros, target {target:.0%}; "
                         "pruning did not take effect (train more steps or lower --prune-frequency)")


def check_clusters(summary: dict[str, Any], clusters: int, what: str) -> None:
    if summary["max"] > clusters:
        raise ModelError(f"{what}: a clustered kernel channel holds {summary['max']} distinct values, "
                         f"more than the {clusters} clusters")
