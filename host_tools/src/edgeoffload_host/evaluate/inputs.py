"""What `evaluate` measures: .tflite files found in the arguments, verified with the daemon's loader, and
described from their manifests (study name, variant, architecture, input size, sizes, dataset)."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeoffload.backends.modelfile import ModelFile, load_model_file
from edgeoffload.errors import ModelError

DIGITS_NAME = "scikit-learn digits"  # how the builder's manifests name the digits dataset
FOLDER_PREFIX = "folder "
DEFAULT_TEST_FRACTION = 0.2


def find_model_files(arguments: Sequence[str]) -> list[Path]:
    """Every .tflite named directly or inside a named directory (sorted), in argument order, once each.

    ModelError for a path that does not exist or a directory without .tflite files."""
    found: list[Path] = []
    for text in arguments:
        path = Path(text)
        if path.is_dir():
            inside = sorted(p for p in path.glob("*.tflite") if p.is_file())
            if not inside:
                raise ModelError(f"{path}: no .tflite files in this directory; build some with "
                                 f"`edgeoffload-host build --out {path}`")
            found += inside
        elif path.exists():
            found.append(path)
        else:
            raise ModelError(f"{path}: no such file or directory")
    return list(dict.fromkeys(p.resolve() for p in found))


@dataclass(frozen=True)
class ModelInfo:
    """One verified model and what its manifest says about it (placeholders where it has none)."""

    model: ModelFile
    name: str
    variant: str  # float, q, pq, pwq ... ("" without a manifest)
    letters: str  # the study's letters: "", "Q", "PQ", "PWQ"
    architecture: str  # key (mobilenet) or the file stem without a manifest
    architecture_name: str  # display name (Mobilenet)
    input_px: int
    size_bytes: int
    gzip_size_bytes: int
    build_accuracy: float | None
    float_accuracy: float | None
    dataset: dict[str, Any] | None  # the manifest's source.dataset

    @property
    def label(self) -> str:
        """The variant as the study's figures label it: float, Q, PQ, PWQ."""
        return self.letters or (self.variant if self.variant else "model")


def describe(path: Path) -> ModelInfo:
    """Verify a model file against its manifest (the daemon's loader and its messages) and describe it."""
    model = load_model_file(path)
    manifest = model.manifest
    if manifest is None:
        # the loader has warned that it is unverified; the study name etc. get placeholders
        return ModelInfo(model, path.stem, "", "", path.stem, path.stem, _input_px_from_bytes(model),
                         len(model.content), _gzip_size(model.content), None, None, None)
    source = manifest.source
    variant = str(source.get("variant", ""))
    px = source.get("input_px")
    if not isinstance(px, int):
        px = _input_px(manifest.tensors.inputs[0].shape, path) if manifest.tensors.inputs else \
            _input_px_from_bytes(model)
    letters = "" if variant in ("", "float") else variant.upper()
    user_file = source.get("model_file")  # a user's own model: its variants share the model file's stem
    architecture = str(source.get("architecture") or (Path(user_file).stem if isinstance(user_file, str)
                                                      else path.stem))
    evaluation = manifest.evaluation
    dataset = source.get("dataset")
    return ModelInfo(model, manifest.name, variant, letters, architecture,
                     _display_name(manifest.name, letters, px, architecture), px, manifest.size_bytes,
                     manifest.gzip_size_bytes, evaluation.accuracy if evaluation else None,
                     evaluation.float_accuracy if evaluation else None,
                     dataset if isinstance(dataset, dict) else None)


def _display_name(name: str, letters: str, px: int, fallback: str) -> str:
    """``Mobilenet PQ 32`` -> ``Mobilenet``."""
    tokens = name.split()
    if tokens and tokens[-1] == str(px):
        tokens.pop()
    if letters and tokens and tokens[-1] == letters:
        tokens.pop()
    return " ".join(tokens) or fallback


def _input_px(shape: Sequence[int], path: Path) -> int:
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise ModelError(f"{path}: input shape {list(shape)} is not one square RGB image [1,H,W,3]; "
                         "evaluate measures image classifiers")
    return int(shape[1])


def _input_px_from_bytes(model: ModelFile) -> int:
    from edgeoffload.backends.tflite import TfliteSession

    session = TfliteSession(model.content, threads=1, name=model.name)
    return _input_px(session.input_spec.shape, model.path)


def _gzip_size(content: bytes) -> int:
    """As the builder measures it: gzip level 9, no timestamp."""
    return len(gzip.compress(content, compresslevel=9, mtime=0))


@dataclass(frozen=True)
class DatasetChoice:
    """Which dataset and split a model is evaluated on."""

    spec: str  # "digits" or a directory
    seed: int
    test_fraction: float
    build_sha256: str | None  # the split the builder used, to compare with


def choose_dataset(info: ModelInfo, requested: str | None, seed: int) -> DatasetChoice:
    """--dataset when given, else the dataset the manifest names (digits, or a folder that still exists);
    the split seed and held-out fraction come from the manifest when it has them (the builder's split)."""
    recorded = info.dataset or {}
    split_seed = recorded.get("split_seed")
    fraction = recorded.get("test_fraction")
    seed = split_seed if isinstance(split_seed, int) else seed
    fraction = float(fraction) if isinstance(fraction, (int, float)) else DEFAULT_TEST_FRACTION
    build_sha = recorded.get("sha256") if isinstance(recorded.get("sha256"), str) else None
    if requested is not None:
        return DatasetChoice(requested, seed, fraction, build_sha)
    name = recorded.get("name")
    if name == DIGITS_NAME:
        return DatasetChoice("digits", seed, fraction, build_sha)
    cifar = {display: key for key, display in dataset_names().items()}
    if name in cifar:  # CIFAR keeps its own split; Keras caches it after the first download
        return DatasetChoice(cifar[name], seed, fraction, build_sha)
    if isinstance(name, str) and name.startswith(FOLDER_PREFIX) and Path(name[len(FOLDER_PREFIX):]).is_dir():
        return DatasetChoice(name[len(FOLDER_PREFIX):], seed, fraction, build_sha)
    where = f"its manifest names dataset {name!r}" if name else "it has no manifest naming its dataset"
    raise ModelError(f"{info.model.path}: {where}, which cannot be loaded here; pass --dataset {DATASET_CHOICES}")


DATASET_CHOICES = "digits|cifar10|cifar100|DIR"


def dataset_names() -> dict[str, str]:
    """The builder's named datasets besides digits: key (``cifar100``) -> name in manifests (``CIFAR-100``)."""
    from edgeoffload_host.models import data

    return dict(getattr(data, "CIFAR", {}))


def check_dataset_flag(text: str | None) -> None:
    if text is not None and text != "digits" and text not in dataset_names() and not Path(text).is_dir():
        raise ModelError(f"--dataset: {text!r} is not digits, cifar10, cifar100 or a directory of class folders")
