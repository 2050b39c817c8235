"""Labelled images for fine-tuning, calibration and evaluation, as uint8 RGB [N,H,W,3] at the model's size.

``digits``: scikit-learn's bundled handwritten digits (1797 8×8 grey images, 10 classes; no download).
A directory: one sub-folder per class holding PNG/JPEG files (decoded with TensorFlow, imported lazily).
Both are split once, seeded, into a train and a held-out part; the dataset hash covers the prepared arrays.
``cifar10`` / ``cifar100`` (fine labels): through ``keras.datasets``, which downloads them once (needs
internet) into ~/.keras/datasets; their own train/test split is kept (test = held-out).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeoffload.errors import ModelError

log = logging.getLogger(__name__)

DIGITS = "digits"
CIFAR = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Dataset:
    """A seeded train/held-out split of uint8 RGB images with integer labels."""

    name: str
    labels: tuple[str, ...]
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    seed: int
    test_fraction: float
    sha256: str
    split_method: str = "seeded random"

    def describe(self) -> dict[str, object]:
        """What goes into a manifest's ``source.dataset``."""
        return {"name": self.name, "sha256": self.sha256, "classes": len(self.labels),
                "n_train": int(len(self.y_train)), "n_test": int(len(self.y_test)),
                "image_px": int(self.x_train.shape[1]), "split_seed": self.seed,
                "test_fraction": self.test_fraction, "split_method": self.split_method}


def load_dataset(spec: str, input_px: int, *, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """``digits``, ``cifar10``, ``cifar100`` or a directory of class folders, resized to input_px, split
    with ``seed`` (CIFAR: its own split)."""
    if spec in CIFAR:
        return load_cifar(spec, input_px)
    if spec == DIGITS:
        images, labels, names = _load_digits()
        name = "scikit-learn digits"
    else:
        images, labels, names = _load_folder(Path(spec))
        name = f"folder {spec}"
    images = resize_bilinear(images, input_px)
    return split(name, names, images, labels, seed=seed, test_fraction=test_fraction)


def split(name: str, label_names: tuple[str, ...], images: np.ndarray, labels: np.ndarray, *,
          seed: int, test_fraction: float) -> Dataset:
    if not 0.0 < test_fraction < 1.0:
        raise ModelError(f"test fraction {test_fraction} must be between 0 and 1")
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = max(1, round(len(labels) * test_fraction))
    if n_test >= len(labels):
        raise ModelError(f"dataset {name}: {len(labels)} images are too few to split")
    test, train = order[:n_test], order[n_test:]
    return Dataset(name, label_names, images[train], labels[train], images[test], labels[test],
                   seed, test_fraction, _split_sha256(images[train], labels[train], images[test], labels[test]))


def load_cifar(spec: str, input_px: int, load_data: Callable[[], Any] | None = None) -> Dataset:
    """CIFAR-10/100 with its official train/test split; ``load_data`` defaults to keras.datasets'."""
    title = CIFAR[spec]
    if load_data is None:
        from edgeoffload_host.models.zoo import import_keras

        module = getattr(import_keras()[1].datasets, spec)
        load_data = (lambda: module.load_data(label_mode="fine")) if spec == "cifar100" else module.load_data
    try:
        (x_train, y_train), (x_test, y_test) = load_data()
    except Exception as e:  # keras.utils.get_file raises a plain Exception for fetch failures
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"dataset {spec}: cannot get {title} through keras.datasets ({first}); it is "
                         "downloaded once and needs internet: use --dataset digits or a folder") from e
    labels = CIFAR10_LABELS if spec == "cifar10" else tuple(str(i) for i in range(100))
    x_train, x_test = resize_bilinear(x_train, input_px), resize_bilinear(x_test, input_px)
    y_train, y_test = (np.asarray(y).reshape(-1).astype(np.int64) for y in (y_train, y_test))
    fraction = round(len(y_test) / (len(y_test) + len(y_train)), 6)
    return Dataset(title, labels, x_train, y_train, x_test, y_test, 0,
                   fraction, _split_sha256(x_train, y_train, x_test, y_test), split_method="official train/test")


def _split_sha256(*parts: np.ndarray) -> str:
    """What the manifests record as the dataset hash: the split's arrays, in order, as bytes."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


def _load_digits() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ModelError(f"--dataset digits needs scikit-learn ({e}): pip install scikit-learn") from e
    digits = load_digits()
    grey = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # values 0..16
    rgb = np.repeat(grey[..., np.newaxis], 3, axis=-1)
    return rgb, digits.target.astype(np.int64), tuple(str(n) for n in digits.target_names)


def _load_folder(root: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if not root.is_dir():
        raise ModelError(f"dataset {root}: not a directory (use 'digits' or a folder of class folders)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ModelError(f"dataset {root}: no class folders inside")
    import tensorflow as tf  # decoders only; the caller already selected legacy Keras

    images, labels = [], []
    for index, cls in enumerate(classes):
        for path in sorted((root / cls).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                image = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False).numpy()
            except (OSError, tf.errors.OpError) as e:
                raise ModelError(f"dataset {root}: cannot decode {path}: {e}") from e
            images.append(image)
            labels.append(index)
    if not images:
        raise ModelError(f"dataset {root}: no PNG/JPEG files in its class folders")
    return _same_size(images), np.asarray(labels, np.int64), tuple(classes)


def _same_size(images: list[np.ndarray]) -> np.ndarray:
    """Stack images of any size: each is first resized (squashed) to a square of the largest side."""
    side = max(max(im.shape[:2]) for im in images)
    return np.stack([_resize_one(im, side) for im in images])


def _resize_one(image: np.ndarray, side: int) -> np.ndarray:
    rows, row_w = _axis_weights(image.shape[0], side)
    cols, col_w = _axis_weights(image.shape[1], side)
    x = image.astype(np.float32)
    x = x[rows[0]] * (1 - row_w)[:, None, None] + x[rows[1]] * row_w[:, None, None]
    x = x[:, cols[0]] * (1 - col_w)[None, :, None] + x[:, cols[1]] * col_w[None, :, None]
    return np.round(x).clip(0, 255).astype(np.uint8)


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 [N,h,w,C] to [N,size,size,C] with bilinear interpolation (half-pixel centres)."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([_resize_one(im, size) for im in images])


def _axis_weights(src: int, dst: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    pos = (np.arange(dst, dtype=np.float32) + 0.5) * (src / dst) - 0.5
    pos = pos.clip(0, src - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, src - 1)
    return (lo, hi), (pos - lo).astype(np.float32)
