"""The study's architectures: Keras applications backbones with its two-layer head.

Every core model takes float32 pixel values 0..255 ([1,H,W,3], RGB) and starts with the architecture's
preprocessing as a Rescaling layer, so the same raw pixels feed the Keras model, the float .tflite (which
casts its uint8 input) and the int8 .tflite (whose uint8 input quantization is then scale 1, zero point 0).

TensorFlow / tf_keras are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeoffload.errors import ModelError

log = logging.getLogger(__name__)

HEAD_UNITS = 256
HEAD_DESCRIPTION = "Flatten > Dense(256, relu) > Dense(classes, softmax)"
MAX_INPUT_PX = 1024


@dataclass(frozen=True)
class Architecture:
    """One backbone: how to build it, how it preprocesses pixels, and its smallest input."""

    key: str  # command-line and file name: mobilenet_q_32.tflite
    display: str  # study name: "Mobilenet Q 32"
    application: str  # attribute of keras.applications
    scale: float  # Rescaling: y = x * scale + offset (per channel, RGB order)
    offset: tuple[float, float, float]
    min_input_px: int
    bgr_weights: bool = False  # pretrained weights expect BGR ("caffe" preprocessing)


_CAFFE_MEAN_RGB = (-123.68, -116.779, -103.939)  # keras "caffe" mode subtracts the BGR ImageNet mean

ARCHITECTURES: dict[str, Architecture] = {
    a.key: a
    for a in (
        Architecture("mobilenet", "Mobilenet", "MobileNet", 1 / 127.5, (-1.0, -1.0, -1.0), 32),
        Architecture("resnet50", "ResNet50", "ResNet50", 1.0, _CAFFE_MEAN_RGB, 32, bgr_weights=True),
        Architecture("inceptionv3", "InceptionV3", "InceptionV3", 1 / 127.5, (-1.0, -1.0, -1.0), 75),
        Architecture("vgg16", "VGG16", "VGG16", 1.0, _CAFFE_MEAN_RGB, 32, bgr_weights=True),
    )
}


def architecture(key: str) -> Architecture:
    try:
        return ARCHITECTURES[key]
    except KeyError:
        raise ModelError(f"unknown model {key!r} (choose from {', '.join(sorted(ARCHITECTURES))})") from None


def check_input_px(arch: Architecture, input_px: int) -> None:
    if not arch.min_input_px <= input_px <= MAX_INPUT_PX:
        raise ModelError(f"input size {input_px} px is outside {arch.display}'s range "
                         f"{arch.min_input_px}..{MAX_INPUT_PX}")


def study_name(arch: Architecture, variant_letters: str, input_px: int) -> str:
    """``Mobilenet 32``, ``Mobilenet Q 32`` (letters in the order the methods were applied)."""
    return " ".join(p for p in (arch.display, variant_letters.upper(), str(input_px)) if p)


def file_stem(arch: Architecture, variant_letters: str, input_px: int) -> str:
    """``mobilenet_32``, ``mobilenet_q_32``."""
    return "_".join(p for p in (arch.key, variant_letters.lower(), str(input_px)) if p)


def import_keras() -> tuple[Any, Any]:
    """(tensorflow, tf_keras) with legacy Keras selected, as the converter and the study's tooling need."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tf_keras as keras
    except ImportError as e:
        raise ModelError(f"building models needs TensorFlow ({e}): pip install 'edgeoffload-host[build]'") from e
    return tf, keras


def build_core(arch: Architecture | str, input_px: int, classes: int = 100, weights: str = "none") -> Any:
    """Rescaling → backbone (``include_top=False``) → Flatten → Dense(256, relu) → Dense(classes, softmax).

    ``weights`` is ``none``, ``imagenet`` (downloaded by Keras, needs network) or a path to backbone weights.
    """
    arch = architecture(arch) if isinstance(arch, str) else arch
    check_input_px(arch, input_px)
    _, keras = import_keras()
    backbone = _backbone(keras, arch, input_px, weights)
    inputs = keras.Input((input_px, input_px, 3), dtype="float32", name="pixels")
    x = keras.layers.Rescaling(arch.scale, offset=list(arch.offset), name="preprocess")(inputs)
    x = backbone(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(HEAD_UNITS, activation="relu", name="dense_256")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name=f"{arch.key}_{input_px}")


def _backbone(keras: Any, arch: Architecture, input_px: int, weights: str) -> Any:
    constructor = getattr(keras.applications, arch.application)
    keras_weights = None if weights == "none" else weights
    if keras_weights not in (None, "imagenet") and not Path(keras_weights).is_file():
        raise ModelError(f"weights file {keras_weights} not found")
    try:
        backbone = constructor(include_top=False, weights=keras_weights, input_shape=(input_px, input_px, 3))
    except Exception as e:  # Keras raises plain Exception subclasses for downloads and bad files
        raise ModelError(f"cannot build {arch.display} backbone with weights {weights!r}: {_first_line(e)}; "
                         "use --weights none or a local weights file") from e
    if arch.bgr_weights and keras_weights is not None:
        _first_conv_to_rgb(backbone)
    return backbone


def _first_conv_to_rgb(backbone: Any) -> None:
    """Pretrained caffe-mode weights expect BGR: reverse the first conv's input channels instead of the image.

    conv(bgr, W) == conv(rgb, W[:, :, ::-1, :]), so the model takes RGB pixels with no extra layer or parameter.
    """
    for layer in backbone.layers:
        if layer.__class__.__name__ == "Conv2D":
            kernel, *rest = layer.get_weights()
            layer.set_weights([kernel[:, :, ::-1, :], *rest])
            log.debug("reversed input channels of %s for RGB input", layer.name)
            return
    raise ModelError(f"{backbone.name}: no Conv2D layer found to adapt BGR weights to RGB input")


def count_depth(model: Any) -> int:
    """Layers that carry weights, counted through nested models (the Keras applications docs' "depth")."""
    depth = 0
    for layer in model.layers:
        if hasattr(layer, "layers"):
            depth += count_depth(layer)
        elif layer.weights:
            depth += 1
    return depth


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
