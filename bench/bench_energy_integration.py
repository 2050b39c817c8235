"""Error of window energies from sampled power and from an energy counter, against exactly known integrals.

Synthetic board power over a profiling run (150 s, the study's length):
  bursts: 1.8 W idle with 3.6 W rectangular bursts of 7 ms every 25 ms (the study's MobileNet-ish duty);
  sine:   2.5 W + 0.7 W * sin(2 pi 1.3 Hz t);
  ramp:   1.8 W rising linearly to 3.6 W over the run.
Each is read at 10, 100, 1 000 and 10 000 Hz, on a regular grid with a random phase ("grid") and with a
random jitter of +-25 % of the period on every read ("jitter"). `integrate_power` integrates the power
readings; `accumulator_energy` a simulated hardware counter (1 uJ steps, like hwmon energy*_input) read at
the same instants. Printed: relative error of the whole run, the worst error over the run's 1 s windows, and
the median / p95 error of single 7 ms inference windows (the bursts).
Goal: whole-run error <= 1 % at >= 10 Hz. Single 7 ms windows are shown to make the point that per-inference
energy comes from a run's total / count, or from windows the meter marks itself (Joulescope GPI).

    python bench/bench_energy_integration.py [--duration-s 150] [--seed 0] [--windows 400]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgeoffload.profiling.energy import Sample, accumulator_energy, integrate_power

IDLE_W, BURST_W, PERIOD_S, BURST_S = 1.8, 3.6, 0.025, 0.007
RATES_HZ = (10, 20, 50, 100, 1_000, 10_000)  # 50: the sysfs sources' default sample_hz
SCHEDULES = ("grid", "jitter")
COUNTER_OFFSET_J = 1234.5  # a counter never starts at zero
GOAL_PCT = 1.0


@dataclass(frozen=True)
class Signal:
    name: str
    power_w: Callable[[np.ndarray], np.ndarray]
    energy_j: Callable[[np.ndarray], np.ndarray]  # exact integral from t = 0


def _phase(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Period index and time into the period, from one floor so both agree at period boundaries."""
    n = np.floor(t / PERIOD_S)
    return n, np.clip(t - n * PERIOD_S, 0.0, PERIOD_S)


def _burst_power_w(t: np.ndarray) -> np.ndarray:
    return IDLE_W + (BURST_W - IDLE_W) * (_phase(t)[1] < BURST_S)


def _burst_energy_j(t: np.ndarray) -> np.ndarray:
    n, r = _phase(t)
    return IDLE_W * t + (BURST_W - IDLE_W) * (n * BURST_S + np.minimum(r, BURST_S))


def signals(duration_s: float) -> list[Signal]:
    w = 2 * math.pi * 1.3
    return [
        Signal("bursts", _burst_power_w, _burst_energy_j),
        Signal("sine", lambda t: 2.5 + 0.7 * np.sin(w * t), lambda t: 2.5 * t + 0.7 / w * (1 - np.cos(w * t))),
        Signal("ramp", lambda t: 1.8 + 1.8 * t / duration_s, lambda t: 1.8 * t + 0.9 * t * t / duration_s),
    ]


def read_times(rate_hz: float, duration_s: float, schedule: str, rng: np.random.Generator) -> np.ndarray:
    """Read instants covering [0, duration_s] with a margin of two periods on each side."""
    period = 1.0 / rate_hz
    i = np.arange(-2, math.ceil(duration_s * rate_hz) + 3)
    t = (i + rng.uniform(0, 1)) * period
    if schedule == "jitter":
        t = t + rng.uniform(-0.25, 0.25, t.size) * period
    return t


def make_samples(sig: Signal, t: np.ndarray) -> list[Sample]:
    counter = np.floor((COUNTER_OFFSET_J + sig.energy_j(t)) * 1e6) / 1e6
    return list(map(Sample, t.tolist(), sig.power_w(t).tolist(), counter.tolist()))


def window_errors_pct(sig: Signal, samples: list[Sample], t: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """|relative error| in % of both methods for each (t0, t1) row, on the samples around each window."""
    out = np.empty((len(windows), 2))
    for k, (t0, t1) in enumerate(windows):
        lo = int(np.searchsorted(t, t0, side="right")) - 1
        hi = int(np.searchsorted(t, t1, side="left"))
        around = samples[lo:hi + 1]
        exact = float(sig.energy_j(np.array(t1)) - sig.energy_j(np.array(t0)))
        out[k] = [abs(integrate_power(around, t0, t1) / exact - 1), abs(accumulator_energy(around, t0, t1) / exact - 1)]
    return 100 * out


def run_errors_pct(sig: Signal, samples: list[Sample], duration_s: float) -> tuple[float, float]:
    exact = float(sig.energy_j(np.array(duration_s)))
    return (100 * abs(integrate_power(samples, 0.0, duration_s) / exact - 1),
            100 * abs(accumulator_energy(samples, 0.0, duration_s) / exact - 1))


def whole_runs(T: float, bursts: np.ndarray, rng: np.random.Generator) -> tuple[list, list]:
    """The main table; returns its rows and the 7 ms window errors of the bursts signal."""
    seconds = np.array([(k, k + 1.0) for k in range(int(T))])
    rows, burst_errs = [], []
    print(f"{'signal':<7} {'reads':<6} {'rate_hz':>7} {'samples':>9} | whole run error %      | "
          f"worst 1 s window error %")
    print(f"{'':<33}| {'trapezoid':>10} {'counter':>10} | {'trapezoid':>10} {'counter':>10}")
    for sig in signals(T):
        for schedule in SCHEDULES:
            for rate in RATES_HZ:
                t = read_times(rate, T, schedule, rng)
                samples = make_samples(sig, t)
                trap, acc = run_errors_pct(sig, samples, T)
                worst = window_errors_pct(sig, samples, t, seconds).max(axis=0)
                rows.append((sig.name, schedule, rate, trap, acc))
                print(f"{sig.name:<7} {schedule:<6} {rate:>7} {len(samples):>9} | {trap:>10.4f} {acc:>10.4f} | "
                      f"{worst[0]:>10.3f} {worst[1]:>10.3f}")
                if sig.name == "bursts":
                    burst_errs.append((schedule, rate, window_errors_pct(sig, samples, t, bursts)))
    return rows, burst_errs


def repeated_draws(T: float, draws: int, rng: np.random.Generator) -> dict[int, tuple[float, float]]:
    """Whole-run error of the bursts over many jittered draws at low rates: one draw can be lucky."""
    sig = signals(T)[0]
    print(f"\nbursts, jittered reads, whole run, {draws} independent draws: |error| %")
    print(f"{'rate_hz':>7} | {'trapezoid mean':>14} {'max':>8} | {'counter max':>11}")
    worst = {}
    for rate in RATES_HZ[:4]:
        err = np.array([run_errors_pct(sig, make_samples(sig, read_times(rate, T, "jitter", rng)), T)
                        for _ in range(draws)])
        worst[rate] = tuple(err.max(axis=0))
        print(f"{rate:>7} | {err[:, 0].mean():>14.3f} {err[:, 0].max():>8.3f} | {err[:, 1].max():>11.4f}")
    return worst


def inference_windows(burst_errs: list, n: int) -> None:
    print(f"\nsingle 7 ms inference windows (bursts, exact {BURST_W * BURST_S * 1e3:.1f} mJ each, "
          f"{n} windows): |error| %")
    print(f"{'reads':<6} {'rate_hz':>7} | {'trapezoid median':>16} {'p95':>8} | {'counter median':>14} {'p95':>8}")
    for schedule, rate, err in burst_errs:
        med, p95 = np.median(err, axis=0), np.percentile(err, 95, axis=0)
        print(f"{schedule:<6} {rate:>7} | {med[0]:>16.2f} {p95[0]:>8.2f} | {med[1]:>14.2f} {p95[1]:>8.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=150.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--windows", type=int, default=400, help="7 ms inference windows per rate and schedule")
    ap.add_argument("--draws", type=int, default=20, help="jittered draws of the whole run at 10 to 100 Hz")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    k = rng.choice(int(args.duration_s / PERIOD_S) - 1, size=args.windows, replace=False)
    bursts = np.column_stack((k * PERIOD_S, k * PERIOD_S + BURST_S))
    rows, burst_errs = whole_runs(args.duration_s, bursts, rng)
    draws = repeated_draws(args.duration_s, args.draws, rng)
    inference_windows(burst_errs, args.windows)
    print(f"\n({time.perf_counter() - start:.1f} s)")
    print(verdict(rows, draws))
    return 0


def verdict(rows: list[tuple[str, str, int, float, float]], draws: dict[int, tuple[float, float]]) -> str:
    """Goal per method over unlocked (jittered) reads; locked grids that alias are named separately."""
    worst_acc = max([r[4] for r in rows] + [d[1] for d in draws.values()])
    worst_trap = {rate: max([r[3] for r in rows if r[1] == "jitter" and r[2] == rate]
                            + ([draws[rate][0]] if rate in draws else [])) for rate in RATES_HZ}
    trap_ok = [rate for rate in RATES_HZ if all(worst_trap[r] <= GOAL_PCT for r in RATES_HZ if r >= rate)]
    text = (f"verdict: goal whole-run error <= {GOAL_PCT:g} % at >= 10 Hz: counter worst {worst_acc:.4f} % -> "
            f"{'MET' if worst_acc <= GOAL_PCT else 'NOT MET'}; trapezoid over unlocked reads worst "
            + ", ".join(f"{worst_trap[r]:.2f} % at {r} Hz" for r in RATES_HZ) + " -> "
            + ("MET" if trap_ok and trap_ok[0] == RATES_HZ[0] else
               f"NOT MET below {trap_ok[0]} Hz" if trap_ok else "NOT MET"))
    locked = sorted({r[2] for r in rows if r[1] == "grid" and r[3] > GOAL_PCT})
    if locked:
        text += (f"; reads locked to the burst period alias at {', '.join(map(str, locked))} Hz: use the "
                 "counter where the meter has one")
    return text


if __name__ == "__main__":
    sys.exit(main())
