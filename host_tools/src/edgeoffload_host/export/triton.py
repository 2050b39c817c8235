"""A Triton model repository from a folder of built models: ``<name>/config.pbtxt`` + ``<name>/1/model.tflite``
(Triton's TFLite backend) or, for a float model with its Keras twin, ``<name>/1/model.savedmodel``.

Names, datatypes and dims are read from the model the way our endpoint reads them (``TfliteRuntime``), so
Triton advertises the same model names (file stems), tensor names and shapes, and the daemon's OIP client
offloads to it unchanged. Each config is parsed back and checked against those tensors before it is written.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edgeoffload.backends.modelfile import (
    Manifest,
    ModelFile,
    load_model_file,
    manifest_path_for,
    sha256_file,
    write_new_file,
)
from edgeoffload.errors import ModelError
from edgeoffload_host.export.pbtxt import ModelConfig, Tensor, check, render

log = logging.getLogger(__name__)

FORMATS = ("tflite", "savedmodel")
DEFAULT_TFLITE_BACKEND = "armnn_tflite"  # Arm's Triton TFLite backend (smarter-project/armnn_tflite_backend)
SAVEDMODEL_PLATFORM = "tensorflow_savedmodel"
VERSION = "1"


@dataclass(frozen=True)
class Exported:
    """One model written into the repository."""

    name: str  # model name in Triton = file stem, as `edgeoffload-host serve` names it
    study_name: str
    format: str
    source: Path
    path: Path
    size_bytes: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    seconds: float
    note: str = ""


def model_files(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        raise ModelError(f"{models_dir}: not a directory; pass the folder `edgeoffload-host build --out` wrote")
    found = sorted(p for p in models_dir.glob("*.tflite") if p.is_file())
    if not found:
        raise ModelError(f"{models_dir}: no .tflite files in this directory; build some with "
                         f"`edgeoffload-host build --out {models_dir}`")
    return found


def clear_targets(repo: Path, names: list[str], force: bool) -> list[Path]:
    """Refuse to replace model folders or the README unless force; with force remove them. Returns removed."""
    targets = [repo / n for n in names] + [repo / "README"]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise ModelError(f"{existing[0]} already exists; pass --force to replace it or --out another folder")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return existing


def endpoint_tensors(path: Path) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The model's tensors exactly as our endpoint advertises them (names, OIP datatypes, shapes)."""
    from edgeoffload_host.serve.runtime import TfliteRuntime

    runtime = TfliteRuntime(path, workers=1, threads=1)
    try:
        return (tuple(Tensor(s.name, s.datatype, tuple(s.shape)) for s in runtime.inputs),
                tuple(Tensor(s.name, s.datatype, tuple(s.shape)) for s in runtime.outputs))
    finally:
        runtime.close()


def _write_config(model_dir: Path, config: ModelConfig) -> None:
    text = render(config)
    problems = check(text, model_dir.name, config.inputs, config.outputs)
    if problems:  # our own bug: never write a config that does not describe the model
        raise RuntimeError(f"{model_dir}/config.pbtxt: {'; '.join(problems)}")
    write_new_file(model_dir / "config.pbtxt", text.encode("utf-8"))


def _comment(model: ModelFile, fmt: str) -> str:
    return (f"{model.name}: exported by edgeoffload-host export-triton ({fmt}) from {model.path.name}\n"
            f"source sha256 {model.sha256}")


def export_tflite(model: ModelFile, repo: Path, backend: str) -> Exported:
    start = time.perf_counter()
    name = model.path.stem
    version_dir = repo / name / VERSION
    version_dir.mkdir(parents=True)
    dest = write_new_file(version_dir / "model.tflite", model.content)
    copied = sha256_file(dest)
    if copied != model.sha256:
        raise ModelError(f"{dest}: sha256 {copied} after copying, the source has {model.sha256}; "
                         "the disk or the copy is faulty: export again")
    inputs, outputs = endpoint_tensors(dest)
    _write_config(repo / name, ModelConfig(name, inputs, outputs, backend=backend, instance_kind="KIND_CPU",
                                           comment=_comment(model, f"tflite, backend {backend}")))
    return Exported(name, model.name, "tflite", model.path, dest, len(model.content), inputs, outputs,
                    time.perf_counter() - start, "sha256 verified")


def keras_twin(model: ModelFile) -> Path | None:
    """The verified ``.keras`` beside a .tflite, or None; ModelError if its manifest's hash does not match."""
    keras_path = model.path.with_suffix(".keras")
    if not keras_path.is_file():
        return None
    manifest_path = manifest_path_for(keras_path)
    if manifest_path.is_file():
        manifest = Manifest.read(manifest_path)
        actual = sha256_file(keras_path)
        if manifest.sha256 != actual:
            raise ModelError(f"{keras_path}: sha256 mismatch: manifest {manifest_path} expects {manifest.sha256}, "
                             f"the file has {actual}; the file is corrupted or was changed after it was built: "
                             "rebuild it with `edgeoffload-host build --force`")
    else:
        log.warning("%s has no manifest: exporting it unverified", keras_path)
    return keras_path


def export_savedmodel(model: ModelFile, keras_path: Path, repo: Path) -> Exported:
    from edgeoffload_host.export.savedmodel import export_savedmodel as save

    start = time.perf_counter()
    name = model.path.stem
    inputs, outputs = endpoint_tensors(model.path)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{model.path}: {len(inputs)} inputs / {len(outputs)} outputs; "
                         "the SavedModel export handles models with one of each")
    version_dir = repo / name / VERSION
    version_dir.mkdir(parents=True)
    dest = version_dir / "model.savedmodel"
    save(keras_path, model.content, dest, inputs[0], outputs[0])
    _write_config(repo / name, ModelConfig(name, inputs, outputs, platform=SAVEDMODEL_PLATFORM,
                                           comment=_comment(model, f"SavedModel from {keras_path.name}")))
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    return Exported(name, model.name, "savedmodel", keras_path, dest, size, inputs, outputs,
                    time.perf_counter() - start, "scores match the .tflite")


def verify_all(paths: list[Path], fmt: str) -> None:
    """Check every model (and, for savedmodel, its Keras twin) before anything is written."""
    for path in paths:
        model = load_model_file(path)
        if fmt == "savedmodel":
            keras_twin(model)


def export_one(path: Path, repo: Path, fmt: str, backend: str) -> Exported:
    """Verify the model (the daemon's loader) and export it; savedmodel only where a .keras twin exists."""
    model = load_model_file(path)
    if fmt == "savedmodel":
        keras_path = keras_twin(model)
        if keras_path is not None:
            return export_savedmodel(model, keras_path, repo)
        exported = export_tflite(model, repo, backend)
        return replace(exported, note=f"{exported.note}; no .keras twin: exported as tflite")
    return export_tflite(model, repo, backend)


def readme(repo: Path, exported: list[Exported], backend: str) -> str:
    names = ", ".join(e.name for e in exported)
    lines = [
        f"Triton model repository written by `edgeoffload-host export-triton` ({len(exported)} models: {names}).",
        f"Run: tritonserver --model-repository={repo.resolve()}",
        "Or: docker run --rm -p 8000:8000 -v "
        f"{repo.resolve()}:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models",
    ]
    if any(e.format == "tflite" for e in exported):
        lines.append(f"TFLite models need Triton's TFLite backend named {backend!r} (Arm's armnn_tflite_backend, "
                     "arm64 builds; not in the stock NGC image; older builds call it 'tflite': export with --backend "
                     "tflite then); SavedModels use the stock tensorflow backend.")
    lines += [
        "Daemon: point the offload target's url at http://HOST:8000; model names are the file stems and the",
        "tensor names, datatypes and shapes are those `edgeoffload-host serve` advertises, so nothing else changes.",
    ]
    return "\n".join(lines) + "\n"
