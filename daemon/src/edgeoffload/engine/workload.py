"""The built-in workload runner: replays N requests over the configured models, round-robin.

Inputs come from a folder (.npy, PNG, PPM/PGM; cycled in name order) or are generated (seeded uint8).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeoffload.engine.images import SUFFIXES, load_tensor
from edgeoffload.errors import EdgeOffloadError

log = logging.getLogger(__name__)


@dataclass
class WorkloadResult:
    completed: int = 0
    failed: int = 0
    fallbacks: int = 0
    errors: list[str] = field(default_factory=list)


class WorkloadRunner:
    def __init__(self, executor, *, models: list[str], requests: int, inputs: Path | None, interval_ms: float,
                 seed: int, stop: threading.Event, on_progress: Callable[[object], None] | None = None) -> None:
        self.executor = executor
        self.models = models
        self.requests = requests
        self.interval_s = interval_ms / 1000.0
        self.rng = np.random.default_rng(seed)
        self.stop = stop
        self.on_progress = on_progress
        self.files = sorted(p for p in Path(inputs).iterdir() if p.suffix.lower() in SUFFIXES) if inputs else []
        if inputs and not self.files:
            raise EdgeOffloadError(f"workload.inputs {inputs}: no {', '.join(SUFFIXES)} files there")

    def _input(self, i: int, model: str) -> np.ndarray:
        entry = self.executor.models[model]
        if self.files:
            return load_tensor(self.files[i % len(self.files)], entry.input_shape, entry.input_dtype)
        info = np.iinfo(entry.input_dtype) if np.dtype(entry.input_dtype).kind in "ui" else None
        if info is None:
            return self.rng.random(entry.input_shape).astype(entry.input_dtype)
        return self.rng.integers(max(info.min, 0), min(info.max, 255) + 1, entry.input_shape, entry.input_dtype)

    def run(self) -> WorkloadResult:
        result = WorkloadResult()
        for i in range(self.requests):
            if self.stop.is_set():
                log.info("workload stopped after %d of %d requests", i, self.requests)
                break
            model = self.models[i % len(self.models)]
            try:
                outcome = self.executor.run(model, self._input(i, model), request_id=f"wl-{i + 1}")
            except EdgeOffloadError as exc:
                result.failed += 1
                result.errors.append(f"request {i + 1} ({model}): {exc}")
                log.error("request %d (%s) failed: %s", i + 1, model, exc)
                continue
            result.completed += 1
            result.fallbacks += int(outcome.fallback)
            if self.on_progress is not None:
                self.on_progress(outcome)
            if self.interval_s:
                self.stop.wait(self.interval_s)
        return result
