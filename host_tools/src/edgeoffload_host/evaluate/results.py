"""The results file of `evaluate` (JSON, ``"schema": 1``): written once, read back by `report`.

```
{"schema": 1, "kind": "edgeoffload-evaluation", "created_utc", "host": {...}, "runtime": "ai_edge_litert 2.3.0",
 "settings": {"threads": [1, 2], "warmup": 5, "runs": 50},
 "models": [{"name": "Mobilenet PQ 32", "file", "sha256", "verified", "variant": "pq", "letters": "PQ",
             "label": "PQ", "architecture": "mobilenet", "architecture_name": "Mobilenet", "input_px": 32,
             "size_bytes", "gzip_size_bytes", "accuracy", "build_accuracy", "float_accuracy",
             "dataset": {"name", "sha256", "n", "split_seed", "test_fraction", "matches_build"},
             "latency_ms": {"1": {"n", "mean_ms", "p50_ms", "p99_ms", "stdev_ms", "min_ms", "max_ms"}, ...},
             "seconds"}]}
```
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeoffload.errors import EdgeOffloadError
from edgeoffload_host.evaluate.inputs import ModelInfo
from edgeoffload_host.evaluate.measure import HeldOut, Measured
from edgeoffload_host.files import write_new_or_replace

RESULTS_SCHEMA = 1
RESULTS_KIND = "edgeoffload-evaluation"
STAT_KEYS = ("n", "mean_ms", "p50_ms", "p99_ms", "stdev_ms", "min_ms", "max_ms")
_MODEL_KEYS = {"name": str, "label": str, "architecture_name": str, "input_px": int, "size_bytes": int,
               "gzip_size_bytes": int, "accuracy": (int, float), "latency_ms": dict}


class ResultsError(EdgeOffloadError):
    """A results file cannot be read, is not one, or cannot be written."""


def model_entry(info: ModelInfo, data: HeldOut, measured: Measured) -> dict[str, Any]:
    model = info.model
    return {
        "name": info.name, "file": model.path.name, "path": str(model.path), "sha256": model.sha256,
        "verified": model.manifest is not None, "variant": info.variant, "letters": info.letters,
        "label": info.label, "architecture": info.architecture, "architecture_name": info.architecture_name,
        "input_px": info.input_px, "size_bytes": info.size_bytes, "gzip_size_bytes": info.gzip_size_bytes,
        "accuracy": measured.accuracy, "build_accuracy": info.build_accuracy,
        "float_accuracy": info.float_accuracy,
        "dataset": {"name": data.name, "sha256": data.sha256, "n": int(len(data.labels)),
                    "split_seed": data.choice.seed, "test_fraction": data.choice.test_fraction,
                    "matches_build": None if data.choice.build_sha256 is None
                    else data.choice.build_sha256 == data.sha256},
        "latency_ms": {str(t): {k: round(v, 4) if isinstance(v, float) else v for k, v in s.to_dict().items()}
                       for t, s in measured.latency.items()},
        "seconds": round(measured.seconds, 3),
    }


def results_document(models: list[dict[str, Any]], *, runtime: str, threads: list[int], warmup: int,
                     runs: int) -> dict[str, Any]:
    return {
        "schema": RESULTS_SCHEMA, "kind": RESULTS_KIND,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                 "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "runtime": runtime,
        "settings": {"threads": list(threads), "warmup": warmup, "runs": runs},
        "models": models,
    }


def check_writable(path: Path, force: bool) -> None:
    """ResultsError if path exists and force is not given (nothing is overwritten silently)."""
    if path.exists() and not force:
        raise ResultsError(f"{path} already exists; pass --force to replace it or --out another file")
    if not path.parent.is_dir():
        raise ResultsError(f"{path}: directory {path.parent} does not exist")


def write_file(path: Path, data: bytes, force: bool) -> int:
    """Write via a temporary file: a new name, or (with force) replacing the old file atomically."""
    check_writable(path, force)
    return write_new_or_replace(path, data, force, ResultsError)


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A results file, checked enough for `report` to use every model in it; ResultsError naming the key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file; write one with `edgeoffload-host evaluate`") from None
    except IsADirectoryError:
        raise ResultsError(f"{path}: is a directory, not a results file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from e
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not JSON ({e}); pass the file `edgeoffload-host evaluate` wrote") from e
    if not isinstance(data, dict) or data.get("kind") != RESULTS_KIND:
        raise ResultsError(f"{path}: not an evaluation results file (no \"kind\": \"{RESULTS_KIND}\"); "
                           "pass the file `edgeoffload-host evaluate` wrote")
    if data.get("schema") != RESULTS_SCHEMA:
        raise ResultsError(f"{path}: schema: unsupported {data.get('schema')!r} (this reads {RESULTS_SCHEMA})")
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise ResultsError(f"{path}: models: expected a non-empty list")
    for i, model in enumerate(models):
        _check_model(path, f"models[{i}]", model)
    return data


def _check_model(path: Path, key: str, model: Any) -> None:
    if not isinstance(model, dict):
        raise ResultsError(f"{path}: {key}: expected an object")
    for name, kind in _MODEL_KEYS.items():
        value = model.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ResultsError(f"{path}: {key}.{name}: missing or not {getattr(kind, '__name__', 'a number')}")
    for threads, stats in model["latency_ms"].items():
        if not threads.isdigit() or not isinstance(stats, dict):
            raise ResultsError(f"{path}: {key}.latency_ms.{threads}: expected thread count -> stats")
        for stat in STAT_KEYS:
            if not isinstance(stats.get(stat), (int, float)):
                raise ResultsError(f"{path}: {key}.latency_ms.{threads}.{stat}: missing or not a number")
