"""Accuracy on a held-out split and latency per thread count, with the daemon's own TFLite session.

Latency is timed around ``TfliteSession.run``: what the daemon pays per local inference (input adaptation,
invoke, output copy). Warm-up runs are done first and not counted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeoffload.backends.tflite import TfliteSession
from edgeoffload.errors import ModelError
from edgeoffload.profiling.stats import LatencyStats, summarize
from edgeoffload_host.evaluate.inputs import DatasetChoice, ModelInfo


@dataclass(frozen=True)
class HeldOut:
    """The held-out images of one dataset split at one input size."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: int
    sha256: str
    choice: DatasetChoice
    seconds: float


class DatasetCache:
    """Loads each (dataset, input size, split) once."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, int, int, float], HeldOut] = {}

    def held_out(self, choice: DatasetChoice, px: int) -> tuple[HeldOut, bool]:
        """The held-out split and whether it was loaded just now."""
        key = (choice.spec, px, choice.seed, choice.test_fraction)
        if key in self._loaded:
            return self._loaded[key], False
        start = time.perf_counter()
        from edgeoffload_host.models.data import DIGITS, load_dataset

        if choice.spec != DIGITS:
            from edgeoffload_host.models.zoo import import_keras

            import_keras()  # a folder dataset decodes with TensorFlow: select legacy Keras first, as build does
        data = load_dataset(choice.spec, px, seed=choice.seed, test_fraction=choice.test_fraction)
        held = HeldOut(data.name, data.x_test, data.y_test, len(data.labels), data.sha256, choice,
                       time.perf_counter() - start)
        self._loaded[key] = held
        return held, True


def check_fits(info: ModelInfo, session: TfliteSession, data: HeldOut) -> None:
    """ModelError when the model cannot be scored on this dataset (input size, too few classes)."""
    want = (1, info.input_px, info.input_px, 3)
    if tuple(session.input_spec.shape) != want:
        raise ModelError(f"{info.model.path}: input shape {list(session.input_spec.shape)} does not match "
                         f"the {info.input_px} px images evaluated ({list(want)})")
    outputs = session.output_spec.shape[-1] if session.output_spec.shape else 0
    if outputs < data.classes:
        raise ModelError(f"{info.model.path}: {outputs} output classes, but dataset {data.name} has "
                         f"{data.classes}; pass the --dataset it was trained on")


def accuracy(session: TfliteSession, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy, one image per request, as the daemon runs the model."""
    hits = sum(int(np.argmax(session.run(x)) == y) for x, y in zip(images, labels, strict=True))
    return hits / len(labels)


def time_runs(session: TfliteSession, images: np.ndarray, count: int, start_at: int = 0) -> list[float]:
    """Wall time of ``count`` runs in ms, cycling through the images."""
    samples = []
    for i in range(count):
        x = images[(start_at + i) % len(images)]
        begin = time.perf_counter_ns()
        session.run(x)
        samples.append((time.perf_counter_ns() - begin) / 1e6)
    return samples


def latency(content: bytes, name: str, images: np.ndarray, *, threads: int, warmup: int,
            runs: int) -> LatencyStats:
    """Latency stats of ``runs`` timed runs on a fresh session with ``threads`` threads, after ``warmup``."""
    session = TfliteSession(content, threads=threads, name=name)
    time_runs(session, images, warmup)
    return summarize(time_runs(session, images, runs, start_at=warmup))


@dataclass(frozen=True)
class Measured:
    accuracy: float
    latency: dict[int, LatencyStats]
    seconds: float


def measure(info: ModelInfo, data: HeldOut, threads: Sequence[int], warmup: int, runs: int) -> Measured:
    """Accuracy (with the most threads asked for) and latency for each thread count."""
    start = time.perf_counter()
    session = TfliteSession(info.model.content, threads=max(threads), name=info.name)
    check_fits(info, session, data)
    acc = accuracy(session, data.images, data.labels)
    stats = {t: latency(info.model.content, info.name, data.images, threads=t, warmup=warmup, runs=runs)
             for t in threads}
    return Measured(acc, stats, time.perf_counter() - start)
