"""Fine-tuning a core model and re-estimating its BatchNormalization statistics afterwards.

Why the second step: after a short fine-tune (or training from scratch) the moving mean and variance of the
BatchNormalization layers lag far behind the weights, so the model is right in training mode and at chance
in inference mode (measured here: MobileNet 32 on digits, 3 epochs from scratch: 0.89 train accuracy, 0.11
held-out; after recalibration 0.94). Re-estimating the statistics on training images ("precise BN") fixes
it without touching any weight.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edgeoffload_host.models.zoo import import_keras

log = logging.getLogger(__name__)

RECALIBRATION_SAMPLES = 512
RECALIBRATION_CHUNK = 64


def fine_tune(core: Any, images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int,
              steps_per_epoch: int | None, learning_rate: float) -> None:
    """Adam + sparse categorical cross-entropy on uint8 images given as float32 pixels."""
    _, keras = import_keras()
    core.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    core.fit(images.astype(np.float32), labels, epochs=epochs, batch_size=batch_size,
             steps_per_epoch=steps_per_epoch, shuffle=True, verbose=0)


def batchnorm_layers(model: Any) -> list[Any]:
    _, keras = import_keras()
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers"):
            found += batchnorm_layers(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


def recalibrate_batchnorm(core: Any, images: np.ndarray, samples: int = RECALIBRATION_SAMPLES,
                          chunk: int = RECALIBRATION_CHUNK) -> int:
    """Set every BatchNormalization layer's moving statistics to the average of its batch statistics over
    the first ``samples`` images (in chunks). Returns the number of images used (0: no such layer)."""
    layers = batchnorm_layers(core)
    if not layers or len(images) == 0:
        return 0
    used = images[:samples]
    momenta = [layer.momentum for layer in layers]
    try:
        for k, start in enumerate(range(0, len(used), chunk)):
            for layer in layers:
                layer.momentum = k / (k + 1)  # moving = mean of the k+1 chunk statistics so far
            core(used[start:start + chunk].astype(np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    log.debug("recalibrated %d BatchNormalization layers on %d images", len(layers), len(used))
    return len(used)
