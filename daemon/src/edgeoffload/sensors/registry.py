"""The one table of power sources: config `power.type` -> what reads it, and the daemon's energy book.

`modelled` needs no reader. Every other type is a `PowerReader` sampled by a `Meter`. Readers discover their
rails when built; one whose sensor is absent at start (a driver that probes late, a bridge not yet running)
is built again at the next sample, so the daemon starts anyway with energy unknown and recovers by itself.
"""

from __future__ import annotations

from typing import Callable

from edgeoffload.config.power import ModelledPowerConfig
from edgeoffload.engine.energy import EnergyBook
from edgeoffload.errors import SensorError
from edgeoffload.sensors.base import LABEL_JOULESCOPE, LABEL_RAIL, ChannelInfo, PowerReader, PowerReading
from edgeoffload.sensors.hwmon import HwmonPower
from edgeoffload.sensors.iio import IioPower
from edgeoffload.sensors.meter import Meter
from edgeoffload.sensors.modelled import ModelledPower
from edgeoffload.sensors.rapl import RaplPower

JOULESCOPE_SAMPLE_HZ = 10.0  # the reader hands out the bridge's latest statistics; the bridge sets the rate

POWER_READERS: dict[str, Callable[..., PowerReader]] = {
    "hwmon": lambda cfg, **_: HwmonPower(cfg),
    "iio": lambda cfg, **_: IioPower(cfg),
    "rapl": lambda cfg, **_: RaplPower(cfg),
    "joulescope": lambda cfg, *, mqtt, device_id: _joulescope(cfg, mqtt, device_id),
}
LABELS = {"hwmon": LABEL_RAIL, "iio": LABEL_RAIL, "rapl": LABEL_RAIL, "joulescope": LABEL_JOULESCOPE}


def _joulescope(cfg, mqtt, device_id) -> PowerReader:
    from edgeoffload.sensors.joulescope import JoulescopePower

    return JoulescopePower(cfg, mqtt, device_id)


class RetryingReader:
    """A reader built on first use and rebuilt while its construction fails (SensorError each time)."""

    def __init__(self, build: Callable[[], PowerReader], label: str) -> None:
        self._build = build
        self.label = label
        self._reader: PowerReader | None = None

    def _get(self) -> PowerReader:
        if self._reader is None:
            self._reader = self._build()
        return self._reader

    def read(self) -> PowerReading:
        return self._get().read()

    def channels(self) -> list[ChannelInfo]:
        try:
            return self._get().channels()
        except SensorError:
            return []

    def window_for(self, start_unix_s: float, end_unix_s: float, *, timeout_s: float = 0.0) -> dict | None:
        """A GPI-marked window's measurement (readers that have them: the Joulescope's), else None."""
        try:
            finder = getattr(self._get(), "window_for", None)
        except SensorError:
            return None
        return None if finder is None else finder(start_unix_s, end_unix_s, timeout_s=timeout_s)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def create_energy(config, *, on_health: Callable[[bool, str | None], None] | None = None) -> EnergyBook:
    """The energy book for the daemon config: modelled figures, plus a meter for a measured `power.type`."""
    power = config.power
    if power.type == "modelled":
        return EnergyBook(ModelledPower(power))
    build = POWER_READERS[power.type]
    reader = RetryingReader(lambda: build(power, mqtt=config.mqtt, device_id=config.device_id), LABELS[power.type])
    sample_hz = getattr(power, "sample_hz", JOULESCOPE_SAMPLE_HZ)
    # The Joulescope's readings come at the bridge's statistics rate (--rate, down to 1 Hz): a gap up to the
    # staleness limit is the rate, not a lost reading.
    max_gap_s = getattr(power, "stale_after_s", 0.0)
    meter = Meter(reader, sample_hz=sample_hz, on_health=on_health, max_gap_s=max_gap_s)
    return EnergyBook(ModelledPower(ModelledPowerConfig()), meter)
