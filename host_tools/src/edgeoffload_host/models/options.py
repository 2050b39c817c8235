"""What a build is asked to do (BuildOptions), its variants, and the finished steps it reports.

Variants, named as in the study (letters in the order the methods are applied):

========  ===============  ==========================================================================
variant   study name       how
========  ===============  ==========================================================================
float     Mobilenet 32     fine-tuned float32 (.tflite with a uint8 input, and .keras for the GPU)
q         Mobilenet Q 32   full-integer int8 post-training quantization (representative dataset)
pq        Mobilenet PQ 32  pruning (ConstantSparsity), fine-tuned, stripped, then Q
pwq       Mobilenet PWQ 32 pruning, then weight clustering preserving the sparsity, fine-tuned, stripped, then Q
========  ===============  ==========================================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeoffload.errors import ModelError
from edgeoffload_host.models.compress import CLUSTER_INITS
from edgeoffload_host.models.export import IO_TYPES
from edgeoffload_host.models.train import FineTune
from edgeoffload_host.models.zoo import architecture, check_input_px

VARIANTS = {"float": "", "q": "q", "pq": "pq", "pwq": "pwq"}  # variant → the study's letters


@dataclass(frozen=True)
class BuildOptions:
    """Everything a build needs. With ``model_file`` set, ``models``, ``inputs`` and ``classes`` are not
    used (the model file gives its input size and classes) and ``weights`` is "none" (keep the file's own
    weights) or a weights file to load into it."""

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
    model_file: Path | None = None
    sparsity: float = 0.5  # the study's ConstantSparsity(0.5)
    prune_frequency: int = 100  # tfmot's default
    prune_epochs: int = 4  # 2 left MobileNet PQ 32 3 points under float on digits; 4 recovers it
    clusters: int = 16  # the study's 16 clusters per layer
    cluster_init: str = "linear"  # the study's CentroidInitialization.LINEAR
    cluster_epochs: int = 2
    progress: bool = False  # tqdm bars on stderr while training

    def check(self) -> None:
        """ModelError for any option that cannot work (nothing is read or built yet)."""
        if self.model_file is None:
            for key in self.models:
                arch = architecture(key)
                for px in self.inputs:
                    check_input_px(arch, px)
        else:
            self._check_model_file()
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ModelError(f"unknown variant {unknown[0] if unknown else ''!r} "
                             f"(choose from {', '.join(VARIANTS)})")
        if self.io_type not in IO_TYPES:
            raise ModelError(f"io type {self.io_type!r} is not one of {', '.join(IO_TYPES)}")
        if self.weights not in ("none", "imagenet") and not Path(self.weights).is_file():
            raise ModelError(f"weights file {self.weights} not found or not a file")
        if self.cluster_init not in CLUSTER_INITS:
            raise ModelError(f"cluster initialization {self.cluster_init!r} is not one of "
                             f"{', '.join(CLUSTER_INITS)}")
        if not 0.0 < self.sparsity < 1.0:
            raise ModelError(f"sparsity must be between 0 and 1, got {self.sparsity}")
        for name, value, low in (("classes", self.classes, 1), ("epochs", self.epochs, 0),
                                 ("batch size", self.batch_size, 1), ("steps per epoch", self.steps_per_epoch, 1),
                                 ("calibration samples", self.calibration_samples, 1),
                                 ("prune frequency", self.prune_frequency, 1),
                                 ("prune epochs", self.prune_epochs, 1), ("clusters", self.clusters, 2),
                                 ("cluster epochs", self.cluster_epochs, 0)):
            if value is not None and value < low:
                raise ModelError(f"{name} must be at least {low}, got {value}")

    def _check_model_file(self) -> None:
        path = Path(self.model_file)  # type: ignore[arg-type]
        if not (path.is_file() or path.is_dir()) or not os.access(path, os.R_OK):
            raise ModelError(f"model file {path} not found or not readable "
                             "(give a .keras or .h5 file or a SavedModel folder)")
        if self.weights == "imagenet":
            raise ModelError("weights 'imagenet' apply to the study's architectures, not to a model file")

    def fine_tune(self, epochs: int, from_logits: bool = False) -> FineTune:
        return FineTune(epochs, self.batch_size, self.steps_per_epoch, self.learning_rate, self.seed,
                        from_logits, self.progress)


@dataclass(frozen=True)
class Step:
    """One finished step, for the command's progress lines and --json."""

    action: str  # loaded, removed, trained, pruned, clustered, saved, built
    name: str
    seconds: float
    path: Path | None = None
    size_bytes: int | None = None
    accuracy: float | None = None
    float_accuracy: float | None = None
    gzip_size_bytes: int | None = None
    sparsity: float | None = None  # pruned, clustered: fraction of zeros in the pruned kernels
    max_unique: int | None = None  # clustered: most distinct values in one output channel


Reporter = Callable[[Step], None]
