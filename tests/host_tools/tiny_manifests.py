"""Helpers for the evaluate / report / export-triton tests: the tiny real models with builder-style manifests,
and the host CLI mechanism run in-process with those commands (as `edgeoffload-host` runs them)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from edgeoffload.backends.modelfile import (
    Evaluation,
    Manifest,
    MethodStep,
    TensorInfo,
    Tensors,
    manifest_path_for,
    sha256_file,
    write_manifest,
)
from edgeoffload.backends.tflite import TfliteSession
from edgeoffload.cli import command_parser, run_command
from edgeoffload_host.evaluate import EvaluateCommand
from edgeoffload_host.export import ExportTritonCommand
from edgeoffload_host.models.data import load_dataset
from edgeoffload_host.report import ReportCommand

PX = 16
TINY = {"tiny_16": ("float", "Tiny 16"), "tiny_q_16": ("q", "Tiny Q 16")}


def run_host(argv: list[str]) -> int:
    """What `edgeoffload-host ARGV` does with these commands registered."""
    parser = command_parser("edgeoffload-host", "test", "0", (EvaluateCommand, ReportCommand, ExportTritonCommand))
    return run_command("edgeoffload-host", parser, argv)


def _tensors(path: Path) -> Tensors:
    session = TfliteSession(path.read_bytes(), threads=1, name=path.stem)

    def info(spec) -> TensorInfo:
        quant = None if spec.quantization is None else {"scale": spec.quantization[0],
                                                        "zero_point": spec.quantization[1]}
        return TensorInfo(spec.name, spec.shape, spec.dtype.name, quant)

    return Tensors((info(session.input_spec),), (info(session.output_spec),))


def _manifest(path: Path, name: str, variant: str, fmt: str, dataset: dict, tensors: Tensors) -> Manifest:
    return Manifest(
        name=name, file=path.name, sha256=sha256_file(path), size_bytes=path.stat().st_size,
        gzip_size_bytes=len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)), format=fmt,
        parameters=1, depth=2,
        source={"architecture": "tiny", "input_px": PX, "classes": 10, "variant": variant, "dataset": dataset},
        method=(MethodStep("convert", {}),), seed=0, versions={}, tensors=tensors,
        evaluation=Evaluation(0.1, 0.1, "held-out", int(dataset["n_test"])), created_utc="2025-01-01T00:00:00Z")


def tiny_models_with_manifests(tiny_models: dict[str, Path], dest: Path) -> Path:
    """Copies of the tiny models (and the Keras twin) in dest, each with a manifest naming digits at 16 px."""
    dest.mkdir(parents=True, exist_ok=True)
    source = tiny_models["float"].parent
    dataset = load_dataset("digits", PX, seed=0).describe()
    for stem, (variant, name) in TINY.items():
        path = Path(shutil.copy(source / f"{stem}.tflite", dest / f"{stem}.tflite"))
        write_manifest(path, _manifest(path, name, variant, "tflite", dataset, _tensors(path)))
    keras = Path(shutil.copy(source / "tiny_16.keras", dest / "tiny_16.keras"))
    write_manifest(keras, _manifest(keras, "Tiny 16", "float", "keras", dataset, _tensors(dest / "tiny_16.tflite")))
    return dest


def corrupt(path: Path) -> None:
    """Flip one byte past the flatbuffer header: still 'TFL3', no longer the manifest's sha256."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    manifest = manifest_path_for(path).read_text()
    path.unlink()
    path.write_bytes(bytes(data))
    assert manifest_path_for(path).read_text() == manifest
