"""Statistics over timed runs: pure functions over lists of durations."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Sequence


@dataclass(frozen=True)
class LatencyStats:
    """Summary of timed runs (warm-up excluded), in milliseconds."""

    n: int
    mean_ms: float
    p50_ms: float
    p99_ms: float
    stdev_ms: float
    min_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class WarmupStats:
    """The warm-up, reported separately: the first run often compiles or loads weights (NPU)."""

    n: int
    total_ms: float
    first_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of an already sorted, non-empty sequence."""
    if not sorted_ms:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    pos = (len(sorted_ms) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Mean, median, p99, sample standard deviation, min and max of timed runs."""
    clean = sorted(s for s in samples_ms if math.isfinite(s) and s >= 0)
    if not clean:
        raise ValueError("no valid timing samples to summarize")
    stdev = statistics.stdev(clean) if len(clean) > 1 else 0.0
    return LatencyStats(len(clean), statistics.fmean(clean), percentile(clean, 50), percentile(clean, 99),
                        stdev, clean[0], clean[-1])


def summarize_warmup(samples_ms: Sequence[float]) -> WarmupStats:
    if not samples_ms:
        return WarmupStats(0, 0.0, 0.0)
    return WarmupStats(len(samples_ms), float(sum(samples_ms)), float(samples_ms[0]))
