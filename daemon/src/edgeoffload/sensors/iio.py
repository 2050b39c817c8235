"""Rails read from Linux IIO power monitors (PAC1934 and others with voltage, current and power channels).

    <root>/bus/iio/devices/iio:device*/name        device name (pac1934)
        in_<kind><N>_raw   + in_<kind><N>_offset | in_<kind>_offset  (optional)
                           x in_<kind><N>_scale  | in_<kind>_scale   (optional)
        in_<kind><N>_input                       already scaled, when there is no _raw
        in_energy<N>_en                          the accumulator is used only when it reads 1
        in_<kind><N>_label                       the rail's label; else its number N

<kind> is voltage, current, power or energy. After scaling the ABI's units are mV, mA, mW and J; drivers
disagree (the PAC1934 driver's comments claim uW and mJ), so each configured device may override them.
Power comes from in_power<N> when present, else in_voltage<N> x in_current<N>. A rail is `device/label`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from edgeoffload.config.power import UNIT_FACTORS, IioDeviceConfig, IioPowerConfig, IioUnitsConfig
from edgeoffload.errors import SensorError
from edgeoffload.sensors.base import ChannelInfo, RailSample
from edgeoffload.sensors.sysfs import (
    SysfsReader, SysfsRoot, checked_energy_j, checked_power_w, found_text, scan_chips, unique_rail_names,
)

IIO_DIR = "bus/iio/devices"
_DEVICE_DIR = re.compile(r"iio:device[0-9]+")
_CHANNEL_FILE = re.compile(r"in_(voltage|current|power|energy)([0-9]+)_(raw|input)")
_LABEL_KINDS = ("power", "voltage", "current", "energy")


@dataclass(frozen=True)
class IioValue:
    """One channel's value: `(raw + offset) x scale`, or the already scaled `_input` file (`raw` False)."""

    file: str
    offset_file: str | None = None
    scale_file: str | None = None
    raw: bool = True

    def read(self, root: SysfsRoot) -> float:
        value = float(root.read_int(self.file)) if self.raw else root.read_float(self.file)
        if self.offset_file:
            value += root.read_float(self.offset_file)
        return value * root.read_float(self.scale_file) if self.scale_file else value


@dataclass(frozen=True)
class IioRail:
    chip: str
    chip_id: str
    channel: int
    label: str
    rail: str
    dir: str
    power: IioValue | None  # else voltage x current
    voltage: IioValue | None
    current: IioValue | None
    energy: IioValue | None
    energy_en: str | None  # the accumulator is used only when this file reads 1 (when it exists)
    units: IioUnitsConfig


@dataclass(frozen=True)
class IioDevice:
    chip: str
    chip_id: str
    dir: str
    rails: tuple[IioRail, ...]


class IioPower(SysfsReader[IioRail]):
    """A `PowerReader` over IIO power monitors: the configured devices and channels, else every channel
    of every device that yields power."""

    source = "iio"

    def __init__(self, config: IioPowerConfig, sysfs: SysfsRoot | str | os.PathLike[str] | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        super().__init__(config.sysfs if sysfs is None else sysfs, clock)

    def _info(self, rail: IioRail) -> ChannelInfo:
        units = rail.units
        unit = units.power if rail.power else f"{units.voltage}×{units.current}"
        unit += f", {units.energy}" if rail.energy else ""
        return ChannelInfo(source="iio", chip=rail.chip, rail=rail.rail, unit=unit.replace("u", "µ"),
                           path=str(self.sysfs.full(rail.dir)))

    def _sample(self, rail: IioRail, t_s: float) -> RailSample:
        root, units = self.sysfs, rail.units
        if rail.power:
            power_w = rail.power.read(root) * UNIT_FACTORS[units.power]
            where = str(root.full(rail.power.file))
        else:
            volt_v = rail.voltage.read(root) * UNIT_FACTORS[units.voltage]
            curr_a = rail.current.read(root) * UNIT_FACTORS[units.current]
            power_w = volt_v * curr_a
            where = f"{root.full(rail.voltage.file)} x {os.path.basename(rail.current.file)}"
        power_w = checked_power_w(power_w, where)
        energy_j = None
        if rail.energy and (rail.energy_en is None or root.read_int(rail.energy_en) == 1):
            energy = rail.energy.read(root) * UNIT_FACTORS[units.energy]
            energy_j = checked_energy_j(energy, str(root.full(rail.energy.file)))
        return RailSample(rail=rail.rail, power_w=power_w, energy_j=energy_j)

    def _discover(self) -> list[IioRail]:
        devices = scan_iio(self.sysfs)
        where = f"under {self.sysfs.full(IIO_DIR)}; {found_text(devices, 'IIO devices')}"
        if not self.config.devices:
            found = [rail for device in devices for rail in device.rails]
            if not found:
                raise SensorError(f"iio: no channel with power {where}: is the driver (pac1934 ...) loaded?")
            return found
        selected: list[IioRail] = []
        for i, wanted in enumerate(self.config.devices):
            matches = [d for d in devices if wanted.name in (d.chip, d.chip_id)]
            if not matches:
                raise SensorError(f"iio: power.devices[{i}] (name: {wanted.name}) matches no device {where}. "
                                  "Fix power.devices in the config")
            for device in matches:
                selected += [r for r in _select(wanted, device, f"power.devices[{i}]", where) if r not in selected]
        return selected


def _select(wanted: IioDeviceConfig, device: IioDevice, key: str, where: str) -> list[IioRail]:
    by_channel = {rail.channel: rail for rail in device.rails}
    for channel in wanted.channels or ():
        if channel not in by_channel:
            raise SensorError(f"iio: {key}.channels lists channel {channel}, but {device.chip_id} has no channel "
                              f"{channel} that yields power ({where}). Fix power.devices in the config")
    rails = [by_channel[c] for c in wanted.channels] if wanted.channels else list(device.rails)
    out = []
    for rail in rails:
        label = wanted.labels.get(rail.channel, rail.label)
        out.append(replace(rail, label=label, rail=f"{rail.chip_id}/{label}", units=wanted.units))
    return list(unique_rail_names(out))


def scan_iio(root: SysfsRoot) -> list[IioDevice]:
    """Every IIO device under `root` with the channels that yield power (ABI units)."""
    return [IioDevice(name, chip_id, d, _device_rails(root, name, chip_id, d))
            for name, chip_id, d in scan_chips(root, f"{IIO_DIR}/iio:device*", _DEVICE_DIR)]


def _device_rails(root: SysfsRoot, chip: str, chip_id: str, rel: str) -> tuple[IioRail, ...]:
    files = {os.path.basename(p) for p in root.glob(f"{rel}/in_*")}
    values: dict[tuple[str, int], IioValue] = {}
    for name in sorted(files):  # `_input` sorts before `_raw`: a raw value wins, being the one scaled here
        m = _CHANNEL_FILE.fullmatch(name)
        if m:
            values[(m[1], int(m[2]))] = _value(files, rel, m[1], int(m[2]), m[3])
    numbers = sorted({n for kind, n in values if kind == "power"}
                     | {n for kind, n in values if kind == "voltage" and ("current", n) in values})
    rails = []
    for n in numbers:
        label = next((root.read_text(f"{rel}/in_{kind}{n}_label") for kind in _LABEL_KINDS
                      if f"in_{kind}{n}_label" in files), "") or str(n)
        power = values.get(("power", n))
        rails.append(IioRail(
            chip=chip, chip_id=chip_id, channel=n, label=label, rail=f"{chip_id}/{label}", dir=rel, power=power,
            voltage=None if power else values[("voltage", n)], current=None if power else values[("current", n)],
            energy=values.get(("energy", n)),
            energy_en=f"{rel}/in_energy{n}_en" if f"in_energy{n}_en" in files else None,
            units=IioUnitsConfig(),
        ))
    return unique_rail_names(rails)


def _value(files: set[str], rel: str, kind: str, n: int, end: str) -> IioValue:
    if end == "input":
        return IioValue(f"{rel}/in_{kind}{n}_input", raw=False)

    def attr(what: str) -> str | None:
        own, shared = f"in_{kind}{n}_{what}", f"in_{kind}_{what}"
        return f"{rel}/{own}" if own in files else f"{rel}/{shared}" if shared in files else None

    return IioValue(f"{rel}/in_{kind}{n}_raw", offset_file=attr("offset"), scale_file=attr("scale"))
