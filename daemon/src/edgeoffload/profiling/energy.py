"""Energy over time windows from power-meter samples: pure arithmetic, no clocks, no I/O.

Two ways to the joules of a window [t0, t1] (seconds on one monotonic clock):
- trapezoid over power samples: E = sum((p[i] + p[i+1]) / 2 * (t[i+1] - t[i])), with the power at t0 and t1
  interpolated linearly between the samples around them (exact for piecewise-linear power);
- accumulator: E = C(t1) - C(t0) for a cumulative counter C in joules (hwmon energy*_input, PAC193x, RAPL,
  Joulescope), interpolated linearly at the edges; exact when the hardware integrates between reads.
A single inference is shorter than most meters' sample period, so per-inference energy is a run's total
divided by its count (`per_inference`), or a window marked by the meter itself (Joulescope GPI).
bench/bench_energy_integration.py measures the errors of both ways.
"""

from __future__ import annotations

import math
import numbers
import statistics
from dataclasses import asdict, dataclass
from typing import Iterable, Protocol, Sequence

import numpy as np

from edgeoffload.errors import SensorError

METHOD_ACCUMULATOR = "accumulator"
METHOD_TRAPEZOID = "trapezoid"


class EnergyWindowError(SensorError, ValueError):
    """The samples cannot give a window's energy: window not covered, samples out of order, garbage inside."""


class PowerSampleLike(Protocol):
    """What the functions read from a sample; `Sample` and `sensors.base.PowerReading` both fit."""

    @property
    def t_s(self) -> float: ...

    @property
    def power_w(self) -> float | None: ...

    @property
    def energy_j(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Sample:
    """One meter reading at `t_s` (monotonic seconds). `energy_j` is a cumulative counter, already
    unwrapped (see `unwrap_counter`), when the meter keeps one; else None."""

    t_s: float
    power_w: float | None
    energy_j: float | None = None


@dataclass(frozen=True)
class WindowEnergy:
    """Energy of one window. active_j = total_j - idle_power_w * duration_s (None without a baseline);
    mean_power_w = total_j / duration_s; n_samples counts the samples with t0_s <= t_s <= t1_s."""

    t0_s: float
    t1_s: float
    duration_s: float
    total_j: float
    active_j: float | None
    idle_power_w: float | None
    mean_power_w: float
    n_samples: int
    method: str  # METHOD_ACCUMULATOR | METHOD_TRAPEZOID

    def to_dict(self) -> dict:
        return {"t0_s": self.t0_s, "t1_s": self.t1_s, "duration_s": self.duration_s,
                "total_energy_mj": self.total_j * 1e3,
                "active_energy_mj": None if self.active_j is None else self.active_j * 1e3,
                "idle_power_w": self.idle_power_w, "mean_power_w": self.mean_power_w,
                "n_samples": self.n_samples, "method": self.method}


@dataclass(frozen=True)
class IdleBaseline:
    """Idle power over a window: power_w = window energy / duration (time-weighted, not the plain mean of
    readings); stdev_w is the spread of the power readings inside (None with fewer than two)."""

    power_w: float
    stdev_w: float | None
    n: int
    duration_s: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EnergyPerInference:
    """A profiling run's energy divided by its inference count: total_mj = total_j * 1000 / n."""

    total_mj: float
    active_mj: float | None
    n: int
    method: str

    def to_dict(self) -> dict:
        return {"total_energy_mj": self.total_mj, "active_energy_mj": self.active_mj,
                "inferences": self.n, "method": self.method}


@dataclass(frozen=True)
class EnergyStats:
    """Summary of per-inference energies in millijoules (sample standard deviation; 0 for one value)."""

    n: int
    mean_mj: float
    stdev_mj: float
    min_mj: float
    max_mj: float

    def to_dict(self) -> dict:
        return asdict(self)


def unwrap_counter(previous_raw: int, raw: int, range_raw: int) -> int:
    """Increase of a counter that wraps at range_raw (RAPL energy_uj at max_energy_range_uj), assuming at
    most one wrap between reads: raw - previous_raw, or range_raw - previous_raw + raw after a wrap."""
    if not range_raw > 0:
        raise ValueError(f"counter range_raw must be > 0, got {range_raw!r}")
    for name, value in (("previous_raw", previous_raw), ("raw", raw)):
        if not 0 <= value <= range_raw:
            raise ValueError(f"counter value {name}={value!r} is outside 0..{range_raw} (range_raw); "
                             "check that the counter and its range come from the same zone and unit")
    return raw - previous_raw if raw >= previous_raw else range_raw - previous_raw + raw


def integrate_power(samples: Sequence[PowerSampleLike], t0_s: float, t1_s: float) -> float:
    """Joules in [t0_s, t1_s] by the trapezoid over power samples, interpolated at the window edges."""
    i0, i1, t = _bracket(samples, t0_s, t1_s)
    return _trapezoid_j(samples, i0, i1, t, t0_s, t1_s)


def accumulator_energy(samples: Sequence[PowerSampleLike], t0_s: float, t1_s: float) -> float:
    """Joules in [t0_s, t1_s] as C(t1) - C(t0) of the samples' energy counter, interpolated at the edges."""
    i0, i1, t = _bracket(samples, t0_s, t1_s)
    return _accumulator_j(samples, i0, i1, t, t0_s, t1_s)


def window_energy(samples: Sequence[PowerSampleLike], t0_s: float, t1_s: float, *,
                  idle_power_w: float | None = None) -> WindowEnergy:
    """Energy of a window: from the counter when every sample in or bounding the window has one, else by
    the trapezoid over power. With idle_power_w, active_j = total_j - idle_power_w * (t1_s - t0_s)."""
    if idle_power_w is not None and not (_is_number(idle_power_w) and math.isfinite(idle_power_w)
                                         and idle_power_w >= 0):
        raise ValueError(f"idle_power_w must be a finite number >= 0, got {idle_power_w!r}; "
                         "measure it with idle_baseline() or leave it None")
    i0, i1, t = _bracket(samples, t0_s, t1_s)
    if all(samples[i].energy_j is not None for i in range(i0, i1 + 1)):
        method, total_j = METHOD_ACCUMULATOR, _accumulator_j(samples, i0, i1, t, t0_s, t1_s)
    else:
        method, total_j = METHOD_TRAPEZOID, _trapezoid_j(samples, i0, i1, t, t0_s, t1_s)
    duration_s = t1_s - t0_s
    inside = t[i0:i1 + 1]
    n_inside = int(np.count_nonzero((inside >= t0_s) & (inside <= t1_s)))
    active_j = None if idle_power_w is None else total_j - idle_power_w * duration_s
    return WindowEnergy(t0_s, t1_s, duration_s, total_j, active_j, idle_power_w, total_j / duration_s,
                        n_inside, method)


def idle_baseline(samples: Sequence[PowerSampleLike], t0_s: float, t1_s: float) -> IdleBaseline:
    """Idle power over [t0_s, t1_s] as window energy / duration, which unevenly spaced readings do not bias."""
    w = window_energy(samples, t0_s, t1_s)
    readings = [s.power_w for s in samples if t0_s <= s.t_s <= t1_s and _is_number(s.power_w)]
    finite = [float(p) for p in readings if math.isfinite(p)]
    stdev_w = statistics.stdev(finite) if len(finite) > 1 else None
    return IdleBaseline(w.mean_power_w, stdev_w, w.n_samples, w.duration_s)


def per_inference(window: WindowEnergy, inferences: int) -> EnergyPerInference:
    """Energy per inference of a run of `inferences` runs inside `window`: total and active divided by n."""
    if isinstance(inferences, bool) or not isinstance(inferences, int) or inferences <= 0:
        raise ValueError(f"inferences must be a positive count of runs inside the window "
                         f"{window.t0_s:.6f}..{window.t1_s:.6f} s, got {inferences!r}")
    active_mj = None if window.active_j is None else window.active_j * 1e3 / inferences
    return EnergyPerInference(window.total_j * 1e3 / inferences, active_mj, inferences, window.method)


def summarize_energy(values_mj: Iterable[float | None]) -> EnergyStats:
    """Mean, sample standard deviation, min and max of energies, ignoring None and non-finite values
    (negative active energies are kept: they are the meter's noise around a small figure)."""
    clean = sorted(float(v) for v in values_mj if _is_number(v) and math.isfinite(v))
    if not clean:
        raise ValueError("no finite energy values to summarize; were all windows' energies unknown?")
    stdev = statistics.stdev(clean) if len(clean) > 1 else 0.0
    return EnergyStats(len(clean), statistics.fmean(clean), stdev, clean[0], clean[-1])


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _window_text(t0_s: float, t1_s: float) -> str:
    return f"energy window {t0_s:.6f}..{t1_s:.6f} s"


def _floats(raw: list) -> np.ndarray:
    """raw as float64, anything that is not a real number (None, text, containers) as NaN."""
    if set(map(type, raw)) == {float}:  # the common case, at C speed
        return np.array(raw, dtype=float)
    return np.array([float(x) if _is_number(x) else math.nan for x in raw], dtype=float)


def _times(samples: Sequence[PowerSampleLike]) -> np.ndarray:
    """The samples' times as an array, checked finite and strictly increasing."""
    if len(samples) == 0:
        raise EnergyWindowError("no power samples to integrate; is the meter running?")
    raw = [s.t_s for s in samples]
    t = _floats(raw)
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        i = int(bad[0])
        raise EnergyWindowError(f"sample {i} has time t_s={raw[i]!r}; sample times must be finite "
                                "seconds on one monotonic clock")
    back = np.flatnonzero(np.diff(t) <= 0)
    if back.size:
        i = int(back[0])
        raise EnergyWindowError(f"samples are not in time order: sample {i + 1} at t={t[i + 1]:.6f} s does not "
                                f"come after sample {i} at t={t[i]:.6f} s; sort them by t_s (one clock)")
    return t


def _bracket(samples: Sequence[PowerSampleLike], t0_s: float, t1_s: float) -> tuple[int, int, np.ndarray]:
    """Index of the last sample at or before t0_s and of the first at or after t1_s, and all times."""
    if not (_is_number(t0_s) and _is_number(t1_s) and math.isfinite(t0_s) and math.isfinite(t1_s)):
        raise EnergyWindowError(f"energy window bounds must be finite seconds, got t0_s={t0_s!r}, t1_s={t1_s!r}")
    if not t1_s > t0_s:
        raise EnergyWindowError(f"{_window_text(t0_s, t1_s)} is empty or reversed; t1_s must be after t0_s")
    t = _times(samples)
    i0 = int(np.searchsorted(t, t0_s, side="right")) - 1
    i1 = int(np.searchsorted(t, t1_s, side="left"))
    if i0 < 0:
        raise EnergyWindowError(f"{_window_text(t0_s, t1_s)} is not covered: no sample at or before its start "
                                f"(first sample at t={t[0]:.6f} s); start sampling before the window")
    if i1 >= len(t):
        raise EnergyWindowError(f"{_window_text(t0_s, t1_s)} is not covered: no sample at or after its end "
                                f"(last sample at t={t[-1]:.6f} s); keep sampling until the window has ended")
    return i0, i1, t


def _column(samples: Sequence[PowerSampleLike], i0: int, i1: int, attr: str, t0_s: float, t1_s: float,
            *, nonnegative: bool) -> np.ndarray:
    """samples[i0..i1].attr as floats; None, NaN, inf (or a negative value) raises naming the sample."""
    raw = [getattr(samples[i], attr) for i in range(i0, i1 + 1)]
    values = _floats(raw)
    bad = ~np.isfinite(values)
    if nonnegative:
        bad |= values < 0
    if bad.any():
        k = int(np.argmax(bad))
        raise EnergyWindowError(f"the sample at t={samples[i0 + k].t_s:.6f} s has {attr}={raw[k]!r}, which the "
                                f"{_window_text(t0_s, t1_s)} needs; the meter gave no valid reading there: "
                                "drop this window or measure it again")
    return values


def _edge_points(t: np.ndarray, v: np.ndarray, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(t, v) from t0_s to t1_s: the samples strictly inside plus v interpolated linearly at both edges."""
    v0 = np.interp(t0_s, t[:2], v[:2])
    v1 = np.interp(t1_s, t[-2:], v[-2:])
    return (np.concatenate(([t0_s], t[1:-1], [t1_s])), np.concatenate(([v0], v[1:-1], [v1])))


def _trapezoid_j(samples, i0: int, i1: int, t: np.ndarray, t0_s: float, t1_s: float) -> float:
    p = _column(samples, i0, i1, "power_w", t0_s, t1_s, nonnegative=True)
    tp, pp = _edge_points(t[i0:i1 + 1], p, t0_s, t1_s)
    return float(np.sum((pp[1:] + pp[:-1]) * np.diff(tp)) / 2.0)


def _accumulator_j(samples, i0: int, i1: int, t: np.ndarray, t0_s: float, t1_s: float) -> float:
    e = _column(samples, i0, i1, "energy_j", t0_s, t1_s, nonnegative=False)
    down = np.flatnonzero(np.diff(e) < 0)
    if down.size:
        k = int(down[0])
        raise EnergyWindowError(f"the energy counter decreases from {float(e[k])!r} J at t={t[i0 + k]:.6f} s to "
                                f"{float(e[k + 1])!r} J at t={t[i0 + k + 1]:.6f} s inside the "
                                f"{_window_text(t0_s, t1_s)}; unwrap the raw counter (unwrap_counter) "
                                "or reset the meter between runs")
    _, ee = _edge_points(t[i0:i1 + 1], e, t0_s, t1_s)
    return float(ee[-1] - ee[0])
