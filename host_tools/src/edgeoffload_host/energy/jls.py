"""Joulescope JLS v2 recordings through pyjls: the power signal, one GPI input's pulses, the UTC time map.

pyjls is imported here only, when a recording is opened. Facts this relies on (pyjls 0.17, checked by the
tests): sample ids given to and returned by `Reader` count from the first recorded sample of each signal
(0), while `SignalDef.sample_id_offset` is the instrument's sample counter at that sample; the Joulescope
recorder names signals ``power``, ``current``, ``voltage`` and ``gpi[0]``..``gpi[3]`` (u1, packed little
endian); `Reader.fsr_statistics` skips NaN samples; the time map converts file sample ids <-> JLS time
(34Q30 s since 2018-01-01 UTC) and extrapolates past its entries at the nominal rate; a recording without
UTC entries has the map (sample 0, time 0).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeoffload_host.energy.errors import EnergyError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'edgeoffload-host[jls]'"
JLS_SIGNATURE = b"jlsfmt\r\n"
CHUNK_SAMPLES = 1 << 22  # a multiple of 8, so packed u1 chunks start on a byte
GPI_NAMES = ("gpi[{n}]", "{n}", "in{n}")  # JS220 recorder, Joulescope UI short names, JS110 IN0/IN1
FSR = 0  # pyjls.SignalType.FSR
T64_PER_S = 1 << 30  # JLS time: 34Q30 seconds


def load_pyjls() -> Any:
    try:
        import pyjls
    except ImportError as e:
        raise EnergyError(f"reading JLS recordings needs pyjls, which cannot be imported ({e}); "
                          f"install it with `{INSTALL_HINT}`") from None
    return pyjls


@dataclass(frozen=True)
class Signal:
    signal_id: int
    name: str
    source: str
    sample_rate_hz: int
    length: int
    sample_id_offset: int
    data_type: int


@dataclass(frozen=True)
class Pulses:
    """Complete high pulses of a GPI input as [rise, fall) power sample ids, and why any were left out."""

    windows: tuple[tuple[int, int], ...]
    notes: tuple[str, ...]


class Recording:
    """An open recording of one instrument: power (or current × voltage) and optionally a GPI input."""

    def __init__(self, path: Path, reader: Any, pyjls: Any, power: tuple[Signal, ...], gpi: Signal | None):
        self.path, self._reader, self._pyjls = path, reader, pyjls
        self._power, self.gpi = power, gpi
        self.fs_hz = power[0].sample_rate_hz
        self.length = min(s.length for s in power)
        self.source = power[0].source
        self.power_label = "power" if len(power) == 1 else "current × voltage"
        self.has_utc = self._has_time_map()

    @property
    def duration_s(self) -> float:
        return self.length / self.fs_hz

    def power_sum_w(self, start: int, stop: int) -> tuple[float, int]:
        """Sum of the power samples in [start, stop) and how many were NaN or infinite (left out of the sum)."""
        total, nans = 0.0, 0
        for first in range(start, stop, CHUNK_SAMPLES):
            values = self._power_chunk(first, min(CHUNK_SAMPLES, stop - first))
            bad = ~np.isfinite(values)
            nans += int(bad.sum())
            total += float(values[~bad].sum())
        return total, nans

    def mean_power_w(self, start: int, stop: int) -> float:
        """Mean power over [start, stop), NaN samples left out; NaN when every sample is NaN."""
        if len(self._power) == 1:
            stats = self._read(self._reader.fsr_statistics, self._power[0], start, stop - start, 1)
            return float(stats[0, self._pyjls.SummaryFSR.MEAN])
        total, nans = self.power_sum_w(start, stop)
        good = stop - start - nans
        return total / good if good else float("nan")

    def sample_id(self, t64: int) -> int:
        """JLS time -> the nearest power sample id (may lie outside 0..length). pyjls rounds down, and
        often to the sample before the one recorded at exactly `t64`; the fraction is rounded here."""
        below = int(self._read(self._reader.timestamp_to_sample_id, self._power[0], int(t64)))
        return below + round((int(t64) - self.t64(below)) * self.fs_hz / T64_PER_S)

    def t64(self, sample_id: int) -> int:
        """Power sample id -> JLS time."""
        return int(self._read(self._reader.sample_id_to_timestamp, self._power[0], int(sample_id)))

    def pulses(self) -> Pulses:
        """Every complete high pulse of the GPI input, scanned chunk by chunk."""
        if self.gpi is None:
            return Pulses((), ())
        rises: list[np.ndarray] = []
        falls: list[np.ndarray] = []
        first_level = previous = None
        for start in range(0, self.gpi.length, CHUNK_SAMPLES):
            levels = self._gpi_levels(start, min(CHUNK_SAMPLES, self.gpi.length - start))
            if first_level is None:
                first_level = previous = levels[0]
            steps = np.diff(levels.astype(np.int8), prepend=np.int8(previous))
            rises.append(np.flatnonzero(steps == 1) + start)
            falls.append(np.flatnonzero(steps == -1) + start)
            previous = levels[-1]
        up, down = np.concatenate(rises or [np.zeros(0, np.int64)]), np.concatenate(falls or [np.zeros(0, np.int64)])
        notes = []
        if first_level == 1 and len(down):
            down = down[1:]
            notes.append(f"{self.gpi.name} is high when the recording starts: that cut pulse is left out")
        if len(up) > len(down):
            up = up[:len(down)]
            notes.append(f"{self.gpi.name} is high when the recording ends: that cut pulse is left out")
        windows = zip(self._gpi_to_power(up).tolist(), self._gpi_to_power(down).tolist(), strict=True)
        return Pulses(tuple(windows), tuple(notes))

    def describe(self) -> str:
        gpi = f", {self.gpi.name}" if self.gpi else ", no GPI input"
        utc = ", UTC time map" if self.has_utc else ", no UTC time map"
        return f"{self.source}: {self.power_label} at {self.fs_hz / 1e3:g} kHz, {self.duration_s:.3f} s{gpi}{utc}"

    def _has_time_map(self) -> bool:
        """pyjls gives a recording without UTC entries the single entry (0, 0): 2018-01-01 at sample 0."""
        entries = self._read(self._reader.time_map_get, self._power[0])
        return bool(len(entries)) and bool(np.any(entries["timestamp"] != 0))

    def _gpi_to_power(self, ids: np.ndarray) -> np.ndarray:
        """GPI sample ids -> power sample ids through the instrument's sample counter (rates may differ)."""
        gpi, power = self.gpi, self._power[0]
        counter = ids.astype(np.int64) + gpi.sample_id_offset
        return counter * power.sample_rate_hz // gpi.sample_rate_hz - power.sample_id_offset

    def _gpi_levels(self, start: int, length: int) -> np.ndarray:
        data = np.asarray(self._read(self._reader.fsr, self.gpi, start, length))
        if self.gpi.data_type == self._pyjls.DataType.U1:
            return np.unpackbits(data, count=length, bitorder="little")
        if data.dtype.kind in "fiu" and len(data) == length:
            return (data > 0.5).astype(np.uint8)
        raise EnergyError(f"{self.path}: signal {self.gpi.name}: data type {self.gpi.data_type} is not a "
                          "digital input (expected u1); choose another input with --gpi")

    def _power_chunk(self, start: int, length: int) -> np.ndarray:
        values = [np.asarray(self._read(self._reader.fsr, s, start, length), dtype=np.float64) for s in self._power]
        return values[0] if len(values) == 1 else values[0] * values[1]

    def _read(self, method: Any, signal: Signal, *args: Any) -> Any:
        try:
            return method(signal.signal_id, *args)
        except (RuntimeError, ValueError, OverflowError) as e:
            raise EnergyError(f"{self.path}: signal {signal.name}: pyjls cannot read {list(args)}: {e}; "
                              "the recording may be damaged") from None


@contextlib.contextmanager
def open_recording(path: Path, *, source: str | None = None, gpi_input: int = 0) -> Iterator[Recording]:
    """The recording's power signal (and GPI input `gpi_input`, if recorded) of one instrument."""
    pyjls = load_pyjls()
    _check_signature(path)
    with _pyjls_messages() as messages:
        try:
            reader = pyjls.Reader(str(path))
        except (RuntimeError, ValueError) as e:
            said = f"; pyjls says: {messages[-1]}" if messages else ""
            raise EnergyError(f"{path}: pyjls cannot open it ({e}{said}); the file is damaged or not a "
                              "finished recording") from None
        try:
            if any("not properly closed" in m for m in messages):
                log.warning("%s was not closed properly; pyjls rebuilt its index", path)
            signals = _signals(reader)
            power, gpi = _choose(path, signals, source, gpi_input)
            yield Recording(path, reader, pyjls, power, gpi)
        finally:
            reader.close()


def _check_signature(path: Path) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(len(JLS_SIGNATURE))
    except FileNotFoundError:
        raise EnergyError(f"{path}: no such file; pass a Joulescope recording (.jls)") from None
    except IsADirectoryError:
        raise EnergyError(f"{path}: is a directory, not a Joulescope recording (.jls)") from None
    except OSError as e:
        raise EnergyError(f"{path}: cannot read: {e.strerror or e}") from e
    if head != JLS_SIGNATURE:
        raise EnergyError(f"{path}: not a JLS recording (it does not start with the JLS v2 signature); pass a "
                          ".jls file that the Joulescope UI or `edgeoffload-host joulescope` recorded")


@contextlib.contextmanager
def _pyjls_messages() -> Iterator[list[str]]:
    """pyjls logs its C library's complaints (logger ``pyjls.c``); keep them off stderr, at debug level."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())
            log.debug("pyjls: %s", record.getMessage())

    logger, handler = logging.getLogger("pyjls"), Keep()
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _signals(reader: Any) -> list[Signal]:
    sources = reader.sources
    return [Signal(s.signal_id, s.name, getattr(sources.get(s.source_id), "name", str(s.source_id)),
                   int(s.sample_rate), int(s.length), int(s.sample_id_offset), int(s.data_type))
            for s in reader.signals.values() if s.signal_id != 0 and s.signal_type == FSR]


def _choose(path: Path, signals: list[Signal], source: str | None,
            gpi_input: int) -> tuple[tuple[Signal, ...], Signal | None]:
    listed = ", ".join(f"{s.source}.{s.name}" for s in signals) or "none"
    by_source: dict[str, dict[str, Signal]] = {}
    for s in signals:
        by_source.setdefault(s.source, {})[s.name.lower()] = s
    usable = {name: named for name, named in by_source.items()
              if "power" in named or {"current", "voltage"} <= named.keys()}
    if source is not None:
        if source not in by_source:
            raise EnergyError(f"--source: {path} has no instrument {source!r} (it has: "
                              f"{', '.join(by_source) or 'none'})")
        usable = {source: usable[source]} if source in usable else {}
    if not usable:
        raise EnergyError(f"{path}: no power signal and no current and voltage signals (signals: {listed}); "
                          "record power, or current and voltage, with the Joulescope")
    if len(usable) > 1:
        raise EnergyError(f"{path}: holds {len(usable)} instruments ({', '.join(usable)}); "
                          "choose one with --source NAME")
    name, named = next(iter(usable.items()))
    power = (named["power"],) if "power" in named else (named["current"], named["voltage"])
    _check_power(path, power)
    gpi = next((named[n.format(n=gpi_input)] for n in GPI_NAMES if n.format(n=gpi_input) in named), None)
    return power, gpi


def _check_power(path: Path, power: tuple[Signal, ...]) -> None:
    first = power[0]
    if first.sample_rate_hz <= 0 or min(s.length for s in power) <= 0:
        raise EnergyError(f"{path}: signal {first.source}.{first.name} holds no samples "
                          f"({first.length} at {first.sample_rate_hz} Hz); the recording is empty")
    for other in power[1:]:
        if (other.sample_rate_hz, other.sample_id_offset) != (first.sample_rate_hz, first.sample_id_offset):
            raise EnergyError(f"{path}: signals {first.name} and {other.name} differ in sample rate or start "
                              f"({first.sample_rate_hz} Hz from {first.sample_id_offset}, {other.sample_rate_hz} "
                              f"Hz from {other.sample_id_offset}); cannot multiply them into power")
