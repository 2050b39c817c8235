"""A synthetic Joulescope behind our `Instrument` interface, and the joulescope v1 statistics dict it emits.

`v1_statistics()` builds exactly what joulescope 1.5.0 hands a statistics callback: the dict of
pyjoulescope_driver's binding (time.samples/utc/range/delta/sample_freq/decimate_*/accum_samples/time_map,
signals.{current,voltage,power}.{avg,std,min,max,p2p[,integral]}, accumulators.{charge,energy} with
int_value/int_scale, source) after joulescope.v1.Device._on_stats added µ, σ2 and ∫, made time.range
relative to the first message and took the first message's accumulators as zero.

`FakeJoulescope` plays a board drawing `base_power_w`, plus `extra_w` during each pulse
(`Pulse(start_id, length, extra_w)` in stream samples) while its GPI is high. Statistics count at
`STATS_FREQ_HZ` (2 MHz, as the JS220's counter), sample blocks at `STREAM_RATE_HZ` (1 MHz, its output
rate); one statistics period of blocks, then that period's statistics, paced in real time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from edgeoffload_host.joulescope.windows import SampleBlock

STATS_FREQ_HZ = 2_000_000
STREAM_RATE_HZ = 1_000_000
VOLTAGE_V = 5.0
TIME64_EPOCH = 1514764800.0


def to_time64(unix_s: float) -> int:
    return int(round((unix_s - TIME64_EPOCH) * (1 << 30)))


def v1_statistics(*, id_start: int, id_end: int, utc_start_s: float, first_id: int, power_w: float,
                  power_min_w: float, power_max_w: float, energy_j: float, charge_c: float,
                  voltage_v: float = VOLTAGE_V, sample_freq: float = STATS_FREQ_HZ) -> dict:
    """One statistics callback's argument, as joulescope 1.5.0's v1 Device passes it on."""
    t_delta = (id_end - id_start) / sample_freq
    utc_end_s = utc_start_s + t_delta
    current = power_w / voltage_v
    stats = {
        "time": {
            "samples": {"value": [id_start, id_end], "units": "samples"},
            "utc": {"value": [to_time64(utc_start_s), to_time64(utc_end_s)], "units": "time64"},
            "range": {"value": [(id_start - first_id) / sample_freq, (id_end - first_id) / sample_freq],
                      "units": "s"},
            "delta": {"value": t_delta, "units": "s"},
            "sample_freq": {"value": sample_freq, "units": "Hz"},
            "decimate_factor": {"value": 2, "units": "samples"},
            "decimate_sample_count": {"value": (id_end - id_start) // 2, "units": "samples"},
            "accum_samples": {"value": [first_id, id_end], "units": "samples"},
            "time_map": {"offset_time": to_time64(utc_start_s), "offset_counter": id_start,
                         "counter_rate": sample_freq},
        },
        "signals": {
            "current": _signal(current, 0.001, power_min_w / voltage_v, power_max_w / voltage_v, "A", "C", t_delta),
            "voltage": _signal(voltage_v, 0.0005, voltage_v - 0.001, voltage_v + 0.001, "V", None, t_delta),
            "power": _signal(power_w, 0.005, power_min_w, power_max_w, "W", "J", t_delta),
        },
        "accumulators": {
            "charge": {"value": charge_c, "int_value": int(charge_c * 2**31), "int_scale": 2**-31, "units": "C"},
            "energy": {"value": energy_j, "int_value": int(energy_j * 2**27), "int_scale": 2**-27, "units": "J"},
        },
        "source": "sensor",
    }
    for signal in stats["signals"].values():  # what Device._on_stats adds
        signal["µ"] = signal["avg"]
        signal["σ2"] = {"value": signal["std"]["value"] ** 2, "units": signal["std"]["units"]}
        if "integral" in signal:
            signal["∫"] = signal["integral"]
    return stats


def _signal(avg: float, std: float, vmin: float, vmax: float, units: str, integral_units: str | None,
            t_delta: float) -> dict:
    signal = {"avg": {"value": avg, "units": units}, "std": {"value": std, "units": units},
              "min": {"value": vmin, "units": units}, "max": {"value": vmax, "units": units},
              "p2p": {"value": vmax - vmin, "units": units}}
    if integral_units is not None:
        signal["integral"] = {"value": avg * t_delta, "units": integral_units}
    return signal


@dataclass(frozen=True)
class Pulse:
    start_id: int  # stream sample id of the first high sample
    length: int  # samples high
    extra_w: float  # power on top of the base while high

    def expected_energy_j(self, base_power_w: float) -> float:
        return self.length * (base_power_w + self.extra_w) / STREAM_RATE_HZ


class FakeJoulescope:
    """Our `Instrument`, synthetic. `pause()` stops statistics and samples (the counter runs on)."""

    def __init__(self, name: str = "JS220-000042", stats_rate_hz: float = 50.0, base_power_w: float = 2.0,
                 pulses: tuple[Pulse, ...] = (), first_id: int = 1_000_000, blocks_per_period: int = 2):
        self.name = name
        self.period_samples = int(STREAM_RATE_HZ / stats_rate_hz)
        self.base_power_w = base_power_w
        self.pulses = pulses
        self.first_id = first_id  # stream ids: the instrument had counted for a while before we started
        self.blocks_per_period = blocks_per_period
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.statistics_sent = 0
        self.t0 = 0.0
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()

    def start(self, on_statistics, on_samples) -> None:
        self.t0 = time.time()  # UTC of stream sample `first_id`
        self._running.set()
        self._thread = threading.Thread(target=self._run, args=(on_statistics, on_samples), daemon=True)
        self._thread.start()
        self.started.set()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(5)
        self.stopped.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def signal(self, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(power W, GPI level) for stream samples [first, first + count)."""
        ids = np.arange(first, first + count)
        power = np.full(count, self.base_power_w)
        gpi = np.zeros(count, dtype=np.uint8)
        for p in self.pulses:
            high = (ids >= p.start_id) & (ids < p.start_id + p.length)
            power[high] += p.extra_w
            gpi[high] = 1
        return power, gpi

    def _run(self, on_statistics, on_samples) -> None:
        t0 = self.t0
        period_s = self.period_samples / STREAM_RATE_HZ
        next_id, energy_j, charge_c = self.first_id, 0.0, 0.0
        while not self._halt.wait(period_s):
            start = next_id
            next_id += self.period_samples
            if not self._running.is_set():
                continue
            power, gpi = self.signal(start, self.period_samples)
            if on_samples is not None:
                for chunk in np.array_split(np.arange(self.period_samples), self.blocks_per_period):
                    on_samples(SampleBlock(start + int(chunk[0]), float(STREAM_RATE_HZ),
                                           power[chunk].astype(np.float32), gpi[chunk]))
            energy_j += float(power.sum()) / STREAM_RATE_HZ
            charge_c += float(power.sum()) / VOLTAGE_V / STREAM_RATE_HZ
            k = STATS_FREQ_HZ // STREAM_RATE_HZ
            on_statistics(v1_statistics(
                id_start=start * k, id_end=next_id * k, utc_start_s=t0 + (start - self.first_id) / STREAM_RATE_HZ,
                first_id=self.first_id * k, power_w=float(power.mean()), power_min_w=float(power.min()),
                power_max_w=float(power.max()), energy_j=energy_j, charge_c=charge_c))
            self.statistics_sent += 1
