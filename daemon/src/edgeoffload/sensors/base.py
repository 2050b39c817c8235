"""The interfaces power sources implement, and the readings they hand out.

Two kinds of source:
- a `PowerSource` is what the rest of the daemon asks for power figures (modelled, or a meter's live view);
- a `PowerReader` is a measured source (hwmon, iio, rapl, joulescope): it discovers its rails once and then
  returns one `PowerReading` per `read()`. Units are converted inside the reader, once: watts and joules.
  `edgeoffload.sensors.meter.Meter` samples a reader on a thread and turns it into a `PowerSource`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edgeoffload.decide.types import IdleMode

# What every output says about where an energy figure came from.
LABEL_MODELLED = "modelled"
LABEL_RAIL = "measured rail"
LABEL_JOULESCOPE = "joulescope"


@dataclass(frozen=True)
class RailSample:
    """One rail at one instant. `energy_j` is a cumulative counter (already unwrapped) when the hardware
    keeps one (hwmon energy*_input, PAC193x accumulators, RAPL), else None."""

    rail: str
    power_w: float | None
    energy_j: float | None = None


@dataclass(frozen=True)
class PowerReading:
    """All selected rails read together; `t_s` is time.monotonic() at the read."""

    t_s: float
    rails: tuple[RailSample, ...]

    @property
    def power_w(self) -> float | None:
        """Board power: the sum of the rails' power, None when any rail has none."""
        values = [r.power_w for r in self.rails]
        return None if not values or any(v is None for v in values) else float(sum(values))

    @property
    def energy_j(self) -> float | None:
        """The sum of the rails' counters, None unless every rail has one."""
        values = [r.energy_j for r in self.rails]
        return None if not values or any(v is None for v in values) else float(sum(values))


@dataclass(frozen=True)
class ChannelInfo:
    """A rail as discovered, for `edgeoffloadctl sensors`: where it is read and in what raw unit."""

    source: str  # "hwmon" | "iio" | "rapl" | "joulescope"
    chip: str  # hwmon/iio `name` (ina226, ina3221, pac1934), or the RAPL zone's name
    rail: str  # unique within the reader; RailSample.rail uses the same string
    unit: str  # the raw file's unit before conversion (µW, mV×mA, µJ ...)
    path: str  # the sysfs directory (or topic) it is read from

    def to_dict(self) -> dict:
        return {"source": self.source, "chip": self.chip, "rail": self.rail, "unit": self.unit, "path": self.path}


class PowerReader(Protocol):
    """A measured source. `read()` raises SensorError naming the file when a rail vanished or returned
    garbage; the caller marks energy unknown and keeps calling, and the next good read recovers."""

    label: str

    def channels(self) -> list[ChannelInfo]: ...

    def read(self) -> PowerReading: ...

    def close(self) -> None: ...


class PowerSource(Protocol):
    """Where the daemon's energy figures come from; `label` goes into every output that uses them."""

    label: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def active_power_w(self, target: str) -> float:
        """Board power while `target` runs an inference."""

    def idle_power_w(self, mode: IdleMode) -> float:
        """Board power while waiting for an offloaded result (the study's P_idle, high or low idle)."""

    def describe(self) -> dict:
        """What this source is, for status and `edgeoffloadctl sensors`."""
