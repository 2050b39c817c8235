"""Synthetic Joulescope recordings written with pyjls.Writer, and decision logs that match them.

A recording holds a constant idle power with rectangular bursts on top; a GPI input is high exactly over
each burst (the daemon's marker); the UTC time map says sample 0 was recorded at `start_utc`. Every burst
starts and ends on a sample, so its energy is exactly power_w × duration_s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyjls
from pyjls import DataType, SignalType

START_UTC = "2026-11-23T10:00:00Z"
FS_HZ = 100_000
IDLE_W = 1.5
VOLTAGE_V = 5.0
WRITE_SAMPLES = 1 << 20  # a multiple of 8: packed GPI blocks start on a byte


@dataclass(frozen=True)
class Burst:
    start_s: float
    duration_s: float
    power_w: float
    model: str = "mobilenet_q_128"
    target: str = "npu"

    @property
    def energy_mj(self) -> float:
        return self.power_w * self.duration_s * 1e3

    def active_energy_mj(self, idle_w: float = IDLE_W) -> float:
        return (self.power_w - idle_w) * self.duration_s * 1e3


@dataclass(frozen=True)
class Layout:
    """What to put in the file besides the power bursts."""

    fs_hz: int = FS_HZ
    duration_s: float = 2.0
    idle_w: float = IDLE_W
    signals: str = "power"  # or "current+voltage", or "none" (only a temperature signal)
    gpi: bool = True
    pulses: Sequence[tuple[float, float]] | None = None  # (start_s, duration_s); None: one per burst
    utc: bool = True
    utc_at_end: bool = True  # False: the time map's only entry is at the start
    sample_id_offset: int = 4_000  # the instrument's counter at the first sample
    nan_at: Sequence[tuple[float, int]] = field(default_factory=tuple)  # (time_s, how many samples)


def samples(t_s: float, fs_hz: int = FS_HZ) -> int:
    return round(t_s * fs_hz)


def write_recording(path: Path, bursts: Sequence[Burst], layout: Layout = Layout()) -> Path:
    fs, n, offset = layout.fs_hz, samples(layout.duration_s, layout.fs_hz), layout.sample_id_offset
    power = np.full(n, layout.idle_w, dtype=np.float32)
    for b in bursts:
        power[samples(b.start_s, fs):samples(b.start_s + b.duration_s, fs)] = b.power_w
    for t_s, count in layout.nan_at:
        power[samples(t_s, fs):samples(t_s, fs) + count] = np.nan
    levels = np.zeros(n, dtype=np.uint8)
    pulses = layout.pulses if layout.pulses is not None else [(b.start_s, b.duration_s) for b in bursts]
    for start_s, duration_s in pulses:
        levels[samples(start_s, fs):samples(start_s + duration_s, fs)] = 1
    t0 = pyjls.time64.as_time64(START_UTC)
    with pyjls.Writer(str(path)) as w:
        w.source_def(source_id=1, name="JS220-000417", vendor="Jetperch", model="JS220", version="1.0",
                     serial_number="000417")
        columns = {"power": [("power", "W", power)],
                   "current+voltage": [("current", "A", power / VOLTAGE_V),
                                       ("voltage", "V", np.full(n, VOLTAGE_V, dtype=np.float32))],
                   "none": [("temperature", "C", np.full(n, 25.0, dtype=np.float32))]}[layout.signals]
        for signal_id, (name, units, values) in enumerate(columns, start=1):
            _signal(w, signal_id, name, units, DataType.F32, fs)
            _utc(w, signal_id, layout, n, t0)
            for k in range(0, n, WRITE_SAMPLES):  # the writer refuses much larger blocks (BUSY)
                w.fsr_f32(signal_id, offset + k, values[k:k + WRITE_SAMPLES].astype(np.float32))
        if layout.gpi:
            _signal(w, 9, "gpi[0]", "", DataType.U1, fs)
            _utc(w, 9, layout, n, t0)
            for k in range(0, n, WRITE_SAMPLES):
                w.fsr(9, offset + k, np.packbits(levels[k:k + WRITE_SAMPLES], bitorder="little"))
    return path


def _signal(w, signal_id: int, name: str, units: str, data_type: int, fs: int) -> None:
    w.signal_def(signal_id=signal_id, source_id=1, signal_type=SignalType.FSR, data_type=data_type,
                 sample_rate=fs, name=name, units=units)


def _utc(w, signal_id: int, layout: Layout, n: int, t0: int) -> None:
    if layout.utc:  # like pyjoulescope_driver's recorder: an entry at the start, one a minute, one at the end
        for k in [*range(0, n - 1, 60 * layout.fs_hz), *([n - 1] if layout.utc_at_end else [])]:
            w.utc(signal_id, layout.sample_id_offset + k, t0 + k * pyjls.time64.SECOND // layout.fs_hz)


def utc_text(t_s: float) -> str:
    when = datetime.fromisoformat(START_UTC) + timedelta(microseconds=round(t_s * 1e6))
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decision(seq: int, burst: Burst, *, clock_offset_s: float = 0.0, marker: bool = True, ok: bool = True,
             latency_ms: float | None = None) -> dict:
    """The log line the daemon writes for a burst; its clock reads `clock_offset_s` behind the recording's."""
    start, end = burst.start_s - clock_offset_s, burst.start_s + burst.duration_s - clock_offset_s
    unix0 = datetime.fromisoformat(START_UTC).timestamp()
    return {"schema": 1, "seq": seq, "model": burst.model, "target": burst.target,
            "kind": "remote" if burst.target == "remote" else "local",
            "start_utc": utc_text(start), "end_utc": utc_text(end), "start_unix_s": unix0 + start,
            "end_unix_s": unix0 + end,
            "latency_ms": burst.duration_s * 1e3 if latency_ms is None else latency_ms, "ok": ok,
            "fallback": False, "marker": marker}


def write_log(path: Path, lines: Sequence[dict | str]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def bursts_log(path: Path, bursts: Sequence[Burst], **kwargs) -> Path:
    return write_log(path, [decision(i, b, **kwargs) for i, b in enumerate(bursts, start=1)])


# Two models on two targets, three runs each, spaced like a benchmark loop; the NPU ones also vary in power
# so that the stdev is not zero.
BURSTS = (
    Burst(0.20, 0.007, 4.0, "mobilenet_q_128", "npu"),
    Burst(0.35, 0.025, 3.0, "mobilenet_q_128", "cpu"),
    Burst(0.50, 0.007, 4.2, "mobilenet_q_128", "npu"),
    Burst(0.65, 0.025, 3.0, "mobilenet_q_128", "cpu"),
    Burst(0.80, 0.007, 3.8, "mobilenet_q_128", "npu"),
    Burst(0.95, 0.025, 3.0, "mobilenet_q_128", "cpu"),
    Burst(1.10, 0.012, 2.5, "resnet50_q_224", "remote"),
    Burst(1.30, 0.012, 2.5, "resnet50_q_224", "remote"),
)
