"""Pairing the decision log's requests with windows of power samples: pure functions over sample ids.

``gpi``: the n-th complete GPI pulse pairs with the n-th line that has ``"marker": true``. A pair is
consistent when the pulse is as wide as the line's start..end and starts as long after the previous pulse
as the line starts after the previous line, each within ``tolerance_ms`` + 5 %. Pairing stops at the first
inconsistent pair or when pulses or lines run out (the longest consistent prefix); the counts and the first
mismatch are reported, and nothing at all consistent is an error. When the recording has a UTC time map,
marked lines more than `SPAN_SLACK_S` outside it (after ``--offset-ms``) are left out first, so a log that
also holds earlier runs still pairs.

``utc``: each line's [start, end) is mapped through the recording's time map, shifted by ``--offset-ms``
(board clock + offset = recording clock). Lines outside the recording are left out and counted; lines that
straddle its start or end are left out and named.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeoffload_host.energy.decisions import T64_PER_S, Decision, utc_from_t64
from edgeoffload_host.energy.errors import EnergyError

TOLERANCE_FRACTION = 0.05
SPAN_SLACK_S = 2.0
MAX_NAMED = 5  # lines named one by one in a note; the rest are counted


@dataclass(frozen=True)
class Window:
    """One request's power samples: [start, stop) power sample ids."""

    decision: Decision
    start: int
    stop: int


@dataclass(frozen=True)
class Alignment:
    method: str  # "gpi" | "utc"
    windows: tuple[Window, ...]
    notes: tuple[str, ...]  # what was left out and why
    summary: str  # for the step line


def offset_t64(offset_ms: float) -> int:
    return round(offset_ms * T64_PER_S / 1e3)


def align_gpi(pulses: Sequence[tuple[int, int]], decisions: Sequence[Decision], *, fs_hz: float, log_name: str,
              gpi_name: str, tolerance_ms: float, span_t64: tuple[int, int] | None = None,
              offset_ms: float = 0.0) -> Alignment:
    """Pulses ([rise, fall) power sample ids, in order) paired with the marked lines."""
    marked = [d for d in decisions if d.marker]
    if not marked:
        raise EnergyError(f"{log_name}: no line has \"marker\": true, so no request can be paired with a "
                          f"{gpi_name} pulse; enable the daemon's GPIO marker or use --align utc")
    notes: list[str] = []
    if span_t64 is not None:
        marked = _within_span(marked, span_t64, offset_ms, log_name, notes)
    if not pulses:
        raise EnergyError(f"{gpi_name}: the recording has no complete pulse to pair with {len(marked)} marked "
                          "lines; check the marker wiring and --gpi, or use --align utc")
    paired, mismatch = consistent_prefix(pulses, marked, fs_hz, tolerance_ms, log_name)
    if paired == 0:
        raise EnergyError(f"{gpi_name} pulses and {log_name} do not line up: {mismatch}; check --gpi and the "
                          "log, raise --tolerance-ms, or use --align utc")
    counts = f"{len(pulses)} {gpi_name} pulses, {len(marked)} marked lines"
    if len(pulses) != len(marked) or mismatch:
        stop = mismatch or ("the pulses ran out" if len(pulses) < len(marked) else "the marked lines ran out")
        notes.append(f"{counts}: paired the first {paired} ({stop}); the rest are left out")
    windows = tuple(Window(d, a, b) for (a, b), d in zip(pulses[:paired], marked[:paired], strict=True))
    return Alignment("gpi", windows, tuple(notes), f"paired {paired} requests with {gpi_name} pulses: {counts}")


def consistent_prefix(pulses: Sequence[tuple[int, int]], marked: Sequence[Decision], fs_hz: float,
                      tolerance_ms: float, log_name: str) -> tuple[int, str]:
    """How many leading pairs agree in width and spacing, and the first disagreement ("" if none)."""
    for i, ((rise, fall), d) in enumerate(zip(pulses, marked, strict=False)):
        width_ms = (fall - rise) * 1e3 / fs_hz
        if not _close(width_ms, d.duration_ms, tolerance_ms):
            return i, (f"pulse {i + 1} at {rise / fs_hz:.6f} s is {width_ms:.3f} ms wide, "
                       f"{log_name}:{d.line} took {d.duration_ms:.3f} ms")
        if i:
            after_ms = (rise - pulses[i - 1][0]) * 1e3 / fs_hz
            logged_ms = (d.start_t64 - marked[i - 1].start_t64) * 1e3 / T64_PER_S
            if not _close(after_ms, logged_ms, tolerance_ms):
                return i, (f"pulse {i + 1} at {rise / fs_hz:.6f} s starts {after_ms:.3f} ms after pulse {i}, "
                           f"{log_name}:{d.line} starts {logged_ms:.3f} ms after {log_name}:{marked[i - 1].line}")
    return min(len(pulses), len(marked)), ""


def align_utc(decisions: Sequence[Decision], *, to_sample: Callable[[int], int], length: int,
              span_t64: tuple[int, int], offset_ms: float, log_name: str) -> Alignment:
    """Every line's [start, end) through the time map (`to_sample`: JLS time -> power sample id)."""
    shift = offset_t64(offset_ms)
    windows: list[Window] = []
    outside = 0
    straddling: list[str] = []
    for d in decisions:
        start, stop = to_sample(d.start_t64 + shift), to_sample(d.end_t64 + shift)
        if stop <= 0 or start >= length:
            outside += 1
        elif start < 0 or stop > length:
            straddling.append(f"{log_name}:{d.line}")
        else:
            windows.append(Window(d, start, stop))
    span = f"{utc_from_t64(span_t64[0])} to {utc_from_t64(span_t64[1])}"
    if not windows:
        first, last = min(d.start_t64 for d in decisions), max(d.end_t64 for d in decisions)
        raise EnergyError(f"{log_name}: none of its {len(decisions)} lines ({utc_from_t64(first)} to "
                          f"{utc_from_t64(last)}) lies within the recording ({span}, offset {offset_ms:g} ms); "
                          "pass the log of this run, or --offset-ms if the board's clock is off")
    notes = []
    if outside:
        notes.append(f"{log_name}: left out {outside} lines outside the recording ({span})")
    if straddling:
        notes.append(f"{log_name}: left out {len(straddling)} lines that straddle the recording's start or end: "
                     f"{named_places(straddling)}")
    summary = f"mapped {len(windows)} of {len(decisions)} lines by UTC (offset {offset_ms:g} ms)"
    return Alignment("utc", tuple(windows), tuple(notes), summary)


def _within_span(marked: list[Decision], span_t64: tuple[int, int], offset_ms: float, log_name: str,
                 notes: list[str]) -> list[Decision]:
    slack, shift = round(SPAN_SLACK_S * T64_PER_S), offset_t64(offset_ms)
    low, high = span_t64[0] - slack, span_t64[1] + slack
    inside = [d for d in marked if d.start_t64 + shift >= low and d.end_t64 + shift <= high]
    span = f"{utc_from_t64(span_t64[0])} to {utc_from_t64(span_t64[1])}"
    if not inside:
        raise EnergyError(f"{log_name}: none of its {len(marked)} marked lines lies within the recording "
                          f"({span} ± {SPAN_SLACK_S:g} s, offset {offset_ms:g} ms); pass the log of this run, "
                          "or --offset-ms if the board's clock is off")
    if len(inside) < len(marked):
        notes.append(f"{log_name}: left out {len(marked) - len(inside)} marked lines outside the recording "
                     f"({span} ± {SPAN_SLACK_S:g} s)")
    return inside


def _close(measured_ms: float, logged_ms: float, tolerance_ms: float) -> bool:
    return abs(measured_ms - logged_ms) <= tolerance_ms + TOLERANCE_FRACTION * abs(logged_ms)


def named_places(places: list[str]) -> str:
    """``a, b, c, d, e and 7 more``."""
    more = len(places) - MAX_NAMED
    return ", ".join(places[:MAX_NAMED]) + (f" and {more} more" if more > 0 else "")
