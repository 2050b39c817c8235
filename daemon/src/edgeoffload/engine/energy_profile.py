"""Measuring a model's energy per inference on a target with the configured meter.

First the idle baseline (nothing runs for `idle_s`), then inferences back to back for `duration_s` (the
model is warm: latency profiling ran first), then the meter's energy over exactly that run divided by the
count. Both windows wait for a reading past their end, so they are covered. The result is stored with the
latency profile and labelled with the meter's source.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgeoffload.errors import SensorError
from edgeoffload.profiling.energy import EnergyPerInference, IdleBaseline, WindowEnergy, per_inference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnergyRun:
    """One energy profiling run: per-inference energy, the idle baseline and the run's window."""

    per_inference: EnergyPerInference
    idle: IdleBaseline
    window: WindowEnergy
    source: str

    @property
    def power_w(self) -> float:
        """Mean board power while the model ran (what decisions multiply by the current latency)."""
        return self.window.mean_power_w

    def to_dict(self) -> dict:
        return {"source": self.source, **self.per_inference.to_dict(), "idle_power_w": self.idle.power_w,
                "idle_stdev_w": self.idle.stdev_w, "mean_power_w": self.window.mean_power_w,
                "duration_s": self.window.duration_s, "samples": self.window.n_samples}


def measure_energy(meter, run: Callable[[np.ndarray], object], x: np.ndarray, *, idle_s: float,
                   duration_s: float, sleep: Callable[[float], None] = time.sleep) -> EnergyRun:
    """SensorError (naming the meter's problem) when the meter cannot cover either window."""
    settle_s = 3 * meter.period_s + 0.5
    _covered(meter, time.monotonic(), settle_s, "the start")  # a reading before the idle window opens
    t0 = time.monotonic()
    sleep(idle_s)
    t1 = time.monotonic()
    _covered(meter, t1, settle_s, "the idle baseline")
    idle = meter.idle(t0, t1)
    n, start = 0, time.monotonic()
    while True:
        run(x)
        n += 1
        sleep(0)  # let the meter's thread in: a tight loop of short runs holds the GIL and starves sampling
        end = time.monotonic()
        if end - start >= duration_s:
            break
    _covered(meter, end, settle_s, "the energy run")
    window = meter.window(start, end, idle_power_w=idle.power_w)
    return EnergyRun(per_inference(window, n), idle, window, meter.label)


def _covered(meter, t_s: float, timeout_s: float, what: str) -> None:
    if not meter.wait_for_sample_after(t_s, timeout_s):
        raise SensorError(f"power source {meter.label}: no reading after {what} within {timeout_s:.1f} s "
                          f"({meter.problem or 'the meter is not sampling'})")
