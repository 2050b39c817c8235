"""Energy per window (sum of the power samples × 1/fs: exact for what was recorded), the idle baseline, and
the per (model, target) summary.

The idle baseline is the mean power over ``--idle START:END`` (seconds into the recording) or, by default,
the median over the gaps between windows of each gap's mean power. Active energy = energy − idle power ×
the window's duration. Windows holding NaN samples (samples the instrument dropped) or infinite ones,
windows shorter than one sample and requests that failed (``"ok": false``) are left out and reported.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from edgeoffload_host.energy.align import Window, named_places
from edgeoffload_host.energy.errors import EnergyError


class PowerSamples(Protocol):
    """What measuring needs of a recording (`jls.Recording` is one)."""

    fs_hz: int
    length: int

    def power_sum_w(self, start: int, stop: int) -> tuple[float, int]: ...

    def mean_power_w(self, start: int, stop: int) -> float: ...


@dataclass(frozen=True)
class Measured:
    window: Window
    energy_mj: float
    duration_ms: float


@dataclass(frozen=True)
class Idle:
    power_w: float | None
    source: str  # where it came from, for the report


@dataclass(frozen=True)
class Entry:
    """One (model, target) of the report and profile."""

    model: str
    target: str
    n: int
    energy_mj_mean: float
    energy_mj_stdev: float
    active_energy_mj_mean: float | None
    latency_ms_mean: float
    window_ms_mean: float
    power_w_mean: float


def measure_windows(recording: PowerSamples, windows: Sequence[Window],
                    log_name: str) -> tuple[list[Measured], list[str]]:
    """Energy of every usable window; notes on those left out."""
    measured: list[Measured] = []
    failed: list[str] = []
    empty: list[str] = []
    notes: list[str] = []
    fs = recording.fs_hz
    for w in windows:
        place = f"{log_name}:{w.decision.line}"
        if not w.decision.ok:
            failed.append(place)
        elif w.start < 0 or w.stop > recording.length:
            notes.append(f"{place}: its window (samples {w.start}..{w.stop}) lies outside the recording "
                         f"(0..{recording.length}); left out")
        elif w.stop <= w.start:
            empty.append(place)
        else:
            total_w, nans = recording.power_sum_w(w.start, w.stop)
            if nans:
                notes.append(f"{place}: {nans} of the {w.stop - w.start} samples in its window "
                             f"({w.start / fs:.6f} s to {w.stop / fs:.6f} s) are NaN (dropped by the "
                             "instrument) or infinite; left out")
                continue
            measured.append(Measured(w, total_w / fs * 1e3, (w.stop - w.start) * 1e3 / fs))
    if failed:
        notes.append(f"left out {len(failed)} requests that failed (\"ok\": false): {named_places(failed)}")
    if empty:
        notes.append(f"left out {len(empty)} windows shorter than one sample: {named_places(empty)}")
    return measured, notes


def idle_from_range(recording: PowerSamples, start_s: float, end_s: float, path: str) -> Idle:
    start, stop = round(start_s * recording.fs_hz), round(end_s * recording.fs_hz)
    duration_s = recording.length / recording.fs_hz
    if not 0 <= start < stop <= recording.length:
        raise EnergyError(f"--idle: {start_s:g}:{end_s:g} s is not within {path} (0 to {duration_s:.6f} s) or "
                          "holds no sample; pass START:END seconds into the recording with START < END")
    power_w = recording.mean_power_w(start, stop)
    if not math.isfinite(power_w):
        raise EnergyError(f"--idle: every sample of {path} from {start_s:g} s to {end_s:g} s is NaN; "
                          "choose another stretch")
    return Idle(power_w, f"mean over {start_s:g} s to {end_s:g} s (--idle)")


def idle_from_gaps(recording: PowerSamples, windows: Sequence[Window]) -> Idle:
    """Median over the gaps between consecutive windows of each gap's mean power (NaN samples left out)."""
    ordered = sorted(windows, key=lambda w: w.start)
    means = []
    for before, after in zip(ordered, ordered[1:], strict=False):
        start, stop = max(before.stop, 0), min(after.start, recording.length)
        if stop > start:
            mean = recording.mean_power_w(start, stop)
            if math.isfinite(mean):
                means.append(mean)
    if not means:
        return Idle(None, "none: no gap between windows; pass --idle START:END for active energy")
    return Idle(statistics.median(means), f"median of the mean power in {len(means)} gaps between windows")


def summarize(measured: Sequence[Measured], idle: Idle) -> list[Entry]:
    """One entry per (model, target), in the order first seen in the log."""
    groups: dict[tuple[str, str], list[Measured]] = {}
    for m in sorted(measured, key=lambda m: m.window.decision.line):
        groups.setdefault((m.window.decision.model, m.window.decision.target), []).append(m)
    entries = []
    for (model, target), items in groups.items():
        energy = [m.energy_mj for m in items]
        active = None if idle.power_w is None else statistics.fmean(
            m.energy_mj - idle.power_w * m.duration_ms for m in items)  # W × ms = mJ
        entries.append(Entry(
            model, target, len(items), statistics.fmean(energy),
            statistics.stdev(energy) if len(energy) > 1 else 0.0, active,
            statistics.fmean(m.window.decision.latency_ms for m in items),
            statistics.fmean(m.duration_ms for m in items),
            sum(energy) / sum(m.duration_ms for m in items)))
    return entries
