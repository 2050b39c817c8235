"""Running totals of executed requests for the periodic decisions summary. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _TargetTally:
    count: int = 0
    fallbacks: int = 0
    deadline_hits: int = 0
    deadline_misses: int = 0
    predicted_ms_sum: float = 0.0
    actual_ms_sum: float = 0.0
    abs_error_ms_sum: float = 0.0
    energy_mj_sum: float = 0.0


@dataclass
class DecisionTally:
    """Counts per target used: requests, fallbacks, deadline hits and misses, predicted vs actual latency."""

    targets: dict[str, _TargetTally] = field(default_factory=dict)
    total: int = 0

    def add(self, target: str, *, predicted_ms: float, actual_ms: float, energy_mj: float,
            deadline_ms: float | None, fallback: bool) -> None:
        t = self.targets.setdefault(target, _TargetTally())
        t.count += 1
        t.fallbacks += int(fallback)
        if deadline_ms is not None:
            if actual_ms <= deadline_ms:
                t.deadline_hits += 1
            else:
                t.deadline_misses += 1
        t.predicted_ms_sum += predicted_ms
        t.actual_ms_sum += actual_ms
        t.abs_error_ms_sum += abs(actual_ms - predicted_ms)
        t.energy_mj_sum += energy_mj
        self.total += 1

    def summary(self) -> dict:
        per_target = {}
        for name, t in sorted(self.targets.items()):
            per_target[name] = {
                "requests": t.count,
                "fallbacks": t.fallbacks,
                "deadline_hits": t.deadline_hits,
                "deadline_misses": t.deadline_misses,
                "mean_predicted_latency_ms": t.predicted_ms_sum / t.count,
                "mean_actual_latency_ms": t.actual_ms_sum / t.count,
                "mean_abs_error_latency_ms": t.abs_error_ms_sum / t.count,
                "mean_energy_mj": t.energy_mj_sum / t.count,
            }
        return {"requests": self.total, "targets": per_target}
