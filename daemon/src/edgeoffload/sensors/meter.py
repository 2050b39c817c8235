"""A measured power source sampled on its own thread: readings kept for a while, health, energy over windows.

The meter turns a `PowerReader` (hwmon, iio, rapl, joulescope) into what the daemon uses: the latest
reading, the energy over any recent window (profiling/energy.py does the arithmetic) and whether energy is
known at all. A reader that fails (a rail vanished, garbage in a file) makes energy unknown with the
reader's message; the meter keeps trying at the same rate and the next good reading recovers it.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from typing import Callable

from edgeoffload.errors import SensorError
from edgeoffload.profiling.energy import EnergyWindowError, IdleBaseline, WindowEnergy, idle_baseline, window_energy
from edgeoffload.sensors.base import PowerReader, PowerReading

log = logging.getLogger(__name__)

HISTORY_S = 600.0  # long enough for a profiling run of the study's 150 s with its idle baseline
MAX_SAMPLES = 200_000
MAX_GAP_PERIODS = 5.0
MIN_GAP_S = 0.25  # at high rates a few periods is within scheduling noise: not a missed reading


class Meter:
    """Thread-safe. `on_health(known, reason)` is called from the sampling thread when energy becomes
    unknown or known again (not for every reading)."""

    def __init__(self, reader: PowerReader, *, sample_hz: float, history_s: float = HISTORY_S,
                 clock: Callable[[], float] = time.monotonic,
                 on_health: Callable[[bool, str | None], None] | None = None, max_gap_s: float = MIN_GAP_S) -> None:
        self.reader = reader
        self.label = reader.label
        self.period_s = 1.0 / float(sample_hz)
        self.max_gap_s = max(MAX_GAP_PERIODS * self.period_s, max_gap_s)
        self._clock = clock
        self._on_health = on_health
        self._samples: deque[PowerReading] = deque(maxlen=min(MAX_SAMPLES, int(history_s * sample_hz) + 1))
        self._times: deque[float] = deque(maxlen=self._samples.maxlen)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.problem: str | None = "no reading yet"
        self.failures = 0
        self.reads = 0

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.sample_once()  # the first reading (or the problem) is known before start returns
        self._thread = threading.Thread(target=self._loop, name=f"meter-{self.label}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        try:
            self.reader.close()
        finally:
            with self._cond:
                self._cond.notify_all()

    def _loop(self) -> None:
        next_t = self._clock() + self.period_s
        while not self._stop.wait(max(0.0, next_t - self._clock())):
            self.sample_once()
            next_t += self.period_s
            now = self._clock()
            if next_t < now - self.period_s:  # fell behind (slow sensor, suspended): do not burst to catch up
                next_t = now + self.period_s

    def sample_once(self) -> PowerReading | None:
        """Read the sensor now; keep the reading, or record the problem. Returns the reading or None."""
        try:
            reading = self.reader.read()
        except SensorError as e:
            self._set_problem(str(e))
            return None
        except Exception as e:  # a reader bug must not stop the meter: report it like a sensor problem
            log.exception("power reader %s failed", self.label)
            self._set_problem(f"{type(e).__name__}: {e}")
            return None
        with self._cond:
            if self._times and reading.t_s <= self._times[-1]:
                reading = PowerReading(self._times[-1] + 1e-9, reading.rails)
            self._samples.append(reading)
            self._times.append(reading.t_s)
            self.reads += 1
            self._cond.notify_all()
        if reading.power_w is None and reading.energy_j is None:
            self._set_problem("the reading has neither power nor an energy counter")
        else:
            self._set_problem(None)
        return reading

    def _set_problem(self, problem: str | None) -> None:
        before = self.problem
        self.problem = problem
        if problem is not None:
            self.failures += 1
        if before == problem:
            return
        if (before is None) != (problem is None):
            if problem is None:
                log.info("power source %s: energy known again", self.label)
            else:
                log.warning("power source %s: energy unknown: %s", self.label, problem)
        if self._on_health is not None:  # also when only the reason changed: status shows the current one
            self._on_health(problem is None, problem)

    # --- queries -------------------------------------------------------------------------------------
    @property
    def known(self) -> bool:
        return self.problem is None

    def latest(self) -> PowerReading | None:
        with self._cond:
            return self._samples[-1] if self._samples else None

    def wait_for_sample_after(self, t_s: float, timeout_s: float) -> bool:
        """Block until a reading taken after `t_s` exists (the window up to t_s is then covered)."""
        deadline = self._clock() + timeout_s
        with self._cond:
            while not (self._times and self._times[-1] >= t_s):
                left = deadline - self._clock()
                if left <= 0 or self._stop.is_set():
                    return False
                self._cond.wait(left)
            return True

    def samples(self, t0_s: float, t1_s: float) -> list[PowerReading]:
        """The readings covering [t0_s, t1_s]: those inside plus one on each side when there is one."""
        with self._cond:
            times = list(self._times)
            i0 = max(bisect.bisect_right(times, t0_s) - 1, 0)
            i1 = min(bisect.bisect_left(times, t1_s) + 1, len(times))
            return [self._samples[i] for i in range(i0, i1)]

    def window(self, t0_s: float, t1_s: float, *, idle_power_w: float | None = None) -> WindowEnergy:
        """Energy over [t0_s, t1_s] (monotonic clock); EnergyWindowError when not covered or a gap in it
        holds a failed read (the problem is named)."""
        samples = self.samples(t0_s, t1_s)
        if len(samples) < 2:
            raise EnergyWindowError(f"power source {self.label}: no readings cover {t1_s - t0_s:.3f} s "
                                    f"ending {self._clock() - t1_s:.3f} s ago ({self.problem or 'kept too short'})")
        self._check_gaps(samples)
        return window_energy(samples, t0_s, t1_s, idle_power_w=idle_power_w)

    def _check_gaps(self, samples: list[PowerReading]) -> None:
        """Readings missed (the sensor failed, or the meter was starved) leave a gap the window would
        bridge with a straight line: past MAX_GAP_PERIODS periods that is a guess, not a measurement."""
        for a, b in zip(samples, samples[1:]):
            if b.t_s - a.t_s > self.max_gap_s:
                raise EnergyWindowError(f"power source {self.label}: no reading for {b.t_s - a.t_s:.3f} s "
                                        f"inside the window (sampling every {self.period_s:.3f} s)")

    def idle(self, t0_s: float, t1_s: float) -> IdleBaseline:
        samples = self.samples(t0_s, t1_s)
        if len(samples) < 2:
            raise EnergyWindowError(f"power source {self.label}: no readings cover the idle window")
        self._check_gaps(samples)
        return idle_baseline(samples, t0_s, t1_s)

    def describe(self) -> dict:
        latest = self.latest()
        return {"type": self.label, "label": self.label, "sample_hz": round(1.0 / self.period_s, 3),
                "known": self.known, "problem": self.problem, "reads": self.reads, "failures": self.failures,
                "power_w": None if latest is None else latest.power_w}
