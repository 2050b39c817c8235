"""``edgeoffload-host export-triton MODELS_DIR --out REPO_DIR``: a Triton model repository of built models."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgeoffload.backends.modelfile import write_new_file
from edgeoffload.errors import EdgeOffloadError, ModelError
from edgeoffload_host.export.triton import (
    DEFAULT_TFLITE_BACKEND,
    FORMATS,
    Exported,
    clear_targets,
    export_one,
    model_files,
    readme,
    verify_all,
)



class ExportTritonCommand:
    name = "export-triton"
    help = "write a Triton model repository (config.pbtxt + model per model) from a folder of built models"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("models_dir", metavar="MODELS_DIR", help="folder of .tflite files with manifests")
        parser.add_argument("--out", required=True, metavar="REPO_DIR", help="Triton model repository to write")
        parser.add_argument("--format", default="tflite", choices=FORMATS,
                            help="tflite (default) or savedmodel: float models with a .keras twin become "
                                 "TensorFlow SavedModels (Triton's tensorflow backend, GPU); others stay tflite")
        parser.add_argument("--backend", default=DEFAULT_TFLITE_BACKEND, metavar="NAME",
                            help=f"Triton backend for .tflite models (default: {DEFAULT_TFLITE_BACKEND})")
        parser.add_argument("--force", action="store_true", help="replace model folders and README already there")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")

    def run(self, args: argparse.Namespace) -> int:
        """Errors propagate: the CLI maps them once (one line on stderr, exit 2)."""
        repo = Path(args.out)
        if repo.exists() and not repo.is_dir():
            raise ModelError(f"--out: {repo} exists and is not a directory")
        if not args.backend.strip() or any(c in args.backend for c in "\"\\\n"):
            raise ModelError(f"--backend: {args.backend!r} is not a backend name")
        paths = model_files(Path(args.models_dir))
        verify_all(paths, args.format)
        repo.mkdir(parents=True, exist_ok=True)
        for removed in clear_targets(repo, [p.stem for p in paths], args.force):
            self._say(args, f"removed old {removed} (--force)")
        exported = []
        for path in paths:
            item = export_one(path, repo, args.format, args.backend)
            exported.append(item)
            self._say(args, format_line(item, args.backend))
        start = time.perf_counter()
        text = readme(repo, exported, args.backend)
        write_new_file(repo / "README", text.encode("utf-8"))
        self._say(args, f"wrote {repo / 'README'} ({len(text)} B, {time.perf_counter() - start:.1f} s)")
        next_command = f"tritonserver --model-repository={repo.resolve()}"
        if args.json:
            print(json.dumps({"repository": str(repo), "models": [exported_dict(e) for e in exported],
                              "next": next_command}, indent=2))
        else:
            print(f"next: {next_command}")
        return 0

    @staticmethod
    def _say(args: argparse.Namespace, line: str) -> None:
        if not args.json:
            print(line, flush=True)


def format_line(item: Exported, backend: str) -> str:
    kind = f"backend {backend}" if item.format == "tflite" else "platform tensorflow_savedmodel"
    shapes = ", ".join(f"{t.name} {t.datatype}{list(t.dims)}" for t in (*item.inputs, *item.outputs))
    return (f"exported {item.name} ({item.study_name}) -> {item.path} ({item.size_bytes / 1e6:.1f} MB, {kind}, "
            f"{item.note}; {shapes}; config checked, {item.seconds:.1f} s)")


def exported_dict(item: Exported) -> dict[str, object]:
    return {"name": item.name, "study_name": item.study_name, "format": item.format, "source": str(item.source),
            "path": str(item.path), "size_bytes": item.size_bytes, "seconds": round(item.seconds, 3),
            "note": item.note,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.dims)} for t in item.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.dims)} for t in item.outputs]}
