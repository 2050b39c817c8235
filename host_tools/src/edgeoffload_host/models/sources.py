"""What a build starts from: one of the study's architectures at an input size, or a user's own model file.

A user's model (``--model-file``: a Keras ``.keras``/``.h5`` file or a Keras SavedModel folder) must take
one [N,H,W,3] image of float pixel values 0..255 (its preprocessing inside the model, as the study's models
do) with H == W, and give one [N,classes] output (softmax probabilities, or logits). Its input size and
classes are read from the model; its artifacts are named after the file (``my_net_pq_32.tflite``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeoffload.backends.modelfile import sha256_file
from edgeoffload.errors import ModelError
from edgeoffload_host.models.zoo import (
    HEAD_DESCRIPTION,
    Architecture,
    architecture,
    build_core,
    file_stem,
    import_keras,
    study_name,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """One model to build: its names, input size, and where its core comes from."""

    key: str  # file-name form: mobilenet, my_net
    display: str  # study-name form: Mobilenet, My Net
    input_px: int
    classes: int
    arch: Architecture | None = None
    user: UserModel | None = None

    def study_name(self, letters: str) -> str:
        """``Mobilenet PQ 32``."""
        return study_name(self, letters, self.input_px)  # type: ignore[arg-type]

    def file_stem(self, letters: str) -> str:
        """``mobilenet_pq_32``."""
        return file_stem(self, letters, self.input_px)  # type: ignore[arg-type]

    def core(self, weights: str) -> Any:
        """A fresh core model (an architecture) or the loaded user model with weights applied."""
        if self.arch is not None:
            return build_core(self.arch, self.input_px, self.classes, weights)
        assert self.user is not None  # one of the two is always set (see the constructors)
        if weights != "none":
            _load_weights(self.user, weights)
        return self.user.model

    @property
    def from_logits(self) -> bool:
        return self.user is not None and not self.user.softmax


@dataclass(frozen=True)
class UserModel:
    """A loaded user model and what the manifest says about it."""

    path: Path
    model: Any
    sha256: str
    softmax: bool  # its last layer ends in softmax (else its outputs are taken as logits)


def architecture_specs(models: tuple[str, ...], inputs: tuple[int, ...], classes: int) -> list[ModelSpec]:
    """Every architecture × input size, grouped by input size (the dataset is prepared once per size)."""
    specs = []
    for px in inputs:
        for key in models:
            arch = architecture(key)
            specs.append(ModelSpec(arch.key, arch.display, px, classes, arch=arch))
    return specs


def user_spec(path: Path) -> ModelSpec:
    """Load a user's model (imports TensorFlow); ModelError in one line for anything unusable."""
    user = load_user_model(path)
    px, classes = _input_px(user.model, path), _classes(user.model, path)
    name = (path.name if path.is_dir() else path.stem).strip() or "model"
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "model"
    return ModelSpec(key, name, px, classes, user=user)


def load_user_model(path: Path) -> UserModel:
    _, keras = import_keras()
    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as e:  # Keras and h5py raise many types for files that are not models
        raise ModelError(f"model file {path}: cannot load it as a Keras model ({_first_line(e)}); "
                         "give a .keras or .h5 file or a Keras SavedModel folder") from e
    if not isinstance(model, keras.Model):
        raise ModelError(f"model file {path}: holds a {type(model).__name__}, not a Keras model; "
                         "save the model with Keras (model.save)")
    last = model.layers[-1] if model.layers else None
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    softmax = activation == "softmax" or type(last).__name__ == "Softmax"
    return UserModel(path, model, _path_sha256(path), softmax)


def user_source(spec: ModelSpec, weights: str) -> dict[str, Any]:
    """The manifest's ``source`` part that says where a user model came from."""
    assert spec.user is not None
    weights_info: dict[str, Any] = {"name": "from the model file"}
    if weights != "none":
        weights_info = {"name": str(Path(weights).resolve()), "sha256": sha256_file(weights)}
    return {"model_file": str(spec.user.path.resolve()), "model_sha256": spec.user.sha256,
            "input_px": spec.input_px, "classes": spec.classes,
            "outputs": "probabilities" if spec.user.softmax else "logits", "weights": weights_info}


def architecture_source(spec: ModelSpec, weights: str) -> dict[str, Any]:
    arch = spec.arch
    assert arch is not None
    weights_info: dict[str, Any] = {"name": weights}
    if weights not in ("none", "imagenet"):
        weights_info = {"name": str(Path(weights).resolve()), "sha256": sha256_file(weights)}
    return {"architecture": arch.key, "application": f"keras.applications.{arch.application}",
            "input_px": spec.input_px, "classes": spec.classes, "head": HEAD_DESCRIPTION,
            "weights": weights_info,
            "preprocessing": {"layer": "Rescaling", "scale": arch.scale, "offset": list(arch.offset),
                              "channels": "RGB"}}


def _input_px(model: Any, path: Path) -> int:
    shapes = [tuple(t.shape) for t in model.inputs]
    if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][3] != 3 or shapes[0][1] is None \
            or shapes[0][1] != shapes[0][2]:
        raise ModelError(f"model file {path}: input {shapes[0] if len(shapes) == 1 else shapes} is not one "
                         "[N,H,W,3] image with H == W; models here take square RGB images")
    return int(shapes[0][1])


def _classes(model: Any, path: Path) -> int:
    shapes = [tuple(t.shape) for t in model.outputs]
    if len(shapes) != 1 or len(shapes[0]) != 2 or not shapes[0][1]:
        raise ModelError(f"model file {path}: output {shapes[0] if len(shapes) == 1 else shapes} is not one "
                         "[N,classes] tensor of class scores")
    return int(shapes[0][1])


def _load_weights(user: UserModel, weights: str) -> None:
    try:
        user.model.load_weights(weights)
    except Exception as e:  # h5py/Keras raise many types for mismatched files
        raise ModelError(f"weights file {weights}: cannot load it into {user.path} ({_first_line(e)})") from e


def _path_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
