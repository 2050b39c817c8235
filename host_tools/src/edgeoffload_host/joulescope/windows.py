"""GPI-marked windows: edge detection and sample-accurate energy over a stream of sample blocks (pure).

The daemon drives a GPIO line high for the length of each inference; the line is wired to a Joulescope
general-purpose input. `WindowTracker.feed()` takes consecutive `SampleBlock`s (power and that input,
sample-aligned) and returns each window once its falling edge has arrived: the samples from the rising
edge (inclusive) to the falling edge (exclusive), and their energy as sum(power) / sample rate.

Samples the instrument lost (gaps between blocks, NaN power inside a block) never create edges: the line
keeps its last known level through them, and a window that contains any gets ``energy_j = None``.
A line already high when the stream starts is not a window (its start is unknown); it is skipped.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from edgeoffload.errors import SensorError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleBlock:
    """Consecutive samples from the instrument: `sample_id` is the id of the first one."""

    sample_id: int
    sample_rate_hz: float
    power_w: np.ndarray  # float, NaN where the instrument has no sample
    gpi: np.ndarray  # the marked input's level per sample (0 or non-zero)


@dataclass(frozen=True)
class GpiWindow:
    """One high period of the marked input; `seq` counts windows since the tracker started (from 1)."""

    seq: int
    gpi: int
    sample_id_start: int  # first high sample
    sample_id_end: int  # first low sample after it (exclusive)
    sample_rate_hz: float
    energy_j: float | None  # None when samples were missing inside the window
    missing_samples: int

    @property
    def duration_s(self) -> float:
        return (self.sample_id_end - self.sample_id_start) / self.sample_rate_hz

    @property
    def mean_power_w(self) -> float | None:
        if self.energy_j is None or self.duration_s <= 0:
            return None
        return self.energy_j / self.duration_s


class WindowTracker:
    """Turns blocks into complete windows of one GPI; keeps only running sums between blocks."""

    def __init__(self, gpi: int):
        self.gpi = gpi
        self._rate_hz: float | None = None
        self._next_id: int | None = None  # id the next block should start at
        self._level: int | None = None  # last known level; None before the first sample
        self._open: tuple[int, float, int] | None = None  # (start id, sum of power so far, missing so far)
        self._seq = 0

    @property
    def windows_seen(self) -> int:
        return self._seq

    @property
    def window_open(self) -> bool:
        return self._open is not None

    def feed(self, block: SampleBlock) -> list[GpiWindow]:
        """The windows that end in this block, in order. Raises SensorError on an inconsistent block."""
        power, levels = _checked_arrays(block)
        self._follow_rate(block.sample_rate_hz)
        start_id = int(block.sample_id)
        if self._next_id is not None:
            if start_id > self._next_id:
                self._note_gap(start_id - self._next_id)
            elif start_id < self._next_id:  # overlap with what we had: drop the repeated samples
                skip = self._next_id - start_id
                if skip >= len(power):
                    return []
                power, levels, start_id = power[skip:], levels[skip:], self._next_id
        if len(power) == 0:
            return []
        self._next_id = start_id + len(power)
        return self._scan(start_id, power, levels)

    def _follow_rate(self, rate_hz: float) -> None:
        if self._rate_hz is not None and rate_hz != self._rate_hz:
            log.warning("GPI%d: sample rate changed from %s to %s Hz; an open window is dropped",
                        self.gpi, self._rate_hz, rate_hz)
            self._open, self._next_id, self._level = None, None, None
        self._rate_hz = rate_hz

    def _note_gap(self, missing: int) -> None:
        log.debug("GPI%d: %d samples missing before this block", self.gpi, missing)
        if self._open is not None:
            start, power_sum, lost = self._open
            self._open = (start, power_sum, lost + missing)

    def _scan(self, start_id: int, power: np.ndarray, raw_levels: np.ndarray) -> list[GpiWindow]:
        valid = np.isfinite(power)
        if self._level is None:  # first samples ever: a line high now rose before we could see it,
            # so start from its own level (no edge) and let the window that follows its fall be the first
            self._level = int(raw_levels[np.argmax(valid)]) if valid.any() else 0
        levels = _hold_through_gaps(raw_levels, valid, self._level)
        power_cum = np.concatenate(([0.0], np.cumsum(np.where(valid, power, 0.0), dtype=np.float64)))
        missing_cum = np.concatenate(([0], np.cumsum(~valid, dtype=np.int64)))
        edges = np.flatnonzero(np.diff(np.concatenate(([self._level], levels)).astype(np.int8)))
        done: list[GpiWindow] = []
        cursor = 0
        for i in edges.tolist():
            rising = bool(levels[i])
            if rising:
                self._open, cursor = (start_id + i, 0.0, 0), i
            elif self._open is not None:  # a fall with no window open: the line was high at the start
                done.append(self._close(start_id + i, power_cum[i] - power_cum[cursor],
                                        int(missing_cum[i] - missing_cum[cursor])))
        if self._open is not None:
            first, power_sum, lost = self._open
            self._open = (first, power_sum + float(power_cum[-1] - power_cum[cursor]),
                          lost + int(missing_cum[-1] - missing_cum[cursor]))
        self._level = int(levels[-1])
        return done

    def _close(self, end_id: int, power_sum_tail: float, missing_tail: int) -> GpiWindow:
        first, power_sum, lost = self._open  # type: ignore[misc]
        self._open = None
        self._seq += 1
        missing = lost + missing_tail
        rate = self._rate_hz or 1.0
        total_j = float(power_sum + power_sum_tail) / rate
        return GpiWindow(seq=self._seq, gpi=self.gpi, sample_id_start=first, sample_id_end=end_id,
                         sample_rate_hz=rate, energy_j=None if missing else total_j, missing_samples=missing)


def _checked_arrays(block: SampleBlock) -> tuple[np.ndarray, np.ndarray]:
    rate = block.sample_rate_hz
    if not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise SensorError(f"sample block at sample {block.sample_id}: sample rate {rate!r} is not a positive "
                          "number; the instrument adapter must report its output sampling frequency")
    power = np.asarray(block.power_w, dtype=np.float64)
    levels = np.asarray(block.gpi)
    if power.ndim != 1 or levels.ndim != 1 or len(power) != len(levels):
        raise SensorError(f"sample block at sample {block.sample_id}: power has shape {power.shape} and GPI "
                          f"{levels.shape}; they must be 1-D and of equal length (sample-aligned)")
    return power, (levels != 0).astype(np.int8)


def _hold_through_gaps(levels: np.ndarray, valid: np.ndarray, before: int) -> np.ndarray:
    """`levels` with each invalid sample replaced by the last valid level (or `before`)."""
    if valid.all():
        return levels
    index = np.where(valid, np.arange(len(levels)), -1)
    np.maximum.accumulate(index, out=index)
    return np.where(index >= 0, levels[np.maximum(index, 0)], before).astype(np.int8)
