"""Rails read from Linux hwmon: INA2xx (power1_input), INA3221 (bus voltage x current), and any chip that
exposes `power*_input`, `power*_average` or `in*_input` with `curr*_input` of the same number.

    <root>/class/hwmon/hwmon*/name              chip name (ina226, ina3221)
        power<N>_input | power<N>_average   uW           used first
        in<N>_input x curr<N>_input         mV x mA      else (INA3221 has no power file)
        energy<N>_input                     uJ           cumulative, when present
        power<N>_label | curr<N>_label | in<N>_label     the rail's label; else its number N

A rail is named `chip/label` (`ina3221/VDD_SOC`); where two chips share a name the chip is told apart as
`name@<device>` (`ina226@1-0040`), from the hwmon directory's `device` link.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgeoffload.config.power import HwmonPowerConfig, HwmonRailConfig
from edgeoffload.errors import SensorError
from edgeoffload.sensors.base import ChannelInfo, RailSample
from edgeoffload.sensors.sysfs import (
    SysfsReader, SysfsRoot, checked_energy_j, checked_power_w, found_text, scan_chips, unique_rail_names,
)

HWMON_DIR = "class/hwmon"
_CHIP_DIR = re.compile(r"hwmon[0-9]+")
_ATTR = re.compile(r"(power|curr|in|energy)([0-9]+)_(input|average|label)")


@dataclass(frozen=True)
class HwmonRail:
    """One channel that yields power, as discovered: which files to read (relative to the sysfs root)."""

    chip: str  # the hwmon `name`
    chip_id: str  # unique: the name, or name@device where names repeat
    channel: int
    label: str
    rail: str
    dir: str
    power_file: str | None  # uW; else volt_file x curr_file
    volt_file: str | None  # mV
    curr_file: str | None  # mA
    energy_file: str | None  # uJ, cumulative


@dataclass(frozen=True)
class HwmonChip:
    chip: str
    chip_id: str
    dir: str
    rails: tuple[HwmonRail, ...]


class HwmonPower(SysfsReader[HwmonRail]):
    """A `PowerReader` over hwmon rails: those selected by `config.rails`, else every channel with power."""

    source = "hwmon"

    def __init__(self, config: HwmonPowerConfig, sysfs: SysfsRoot | str | os.PathLike[str] | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        super().__init__(config.sysfs if sysfs is None else sysfs, clock)

    def _info(self, rail: HwmonRail) -> ChannelInfo:
        unit = "µW" if rail.power_file else "mV×mA"
        unit += ", µJ" if rail.energy_file else ""
        return ChannelInfo(source="hwmon", chip=rail.chip, rail=rail.rail, unit=unit,
                           path=str(self.sysfs.full(rail.dir)))

    def _sample(self, rail: HwmonRail, t_s: float) -> RailSample:
        root = self.sysfs
        if rail.power_file:
            power_w = checked_power_w(root.read_int(rail.power_file) / 1e6, str(root.full(rail.power_file)))
        else:
            volt_mv, curr_ma = root.read_int(rail.volt_file), root.read_int(rail.curr_file)
            where = f"{root.full(rail.volt_file)} x {os.path.basename(rail.curr_file)}"
            power_w = checked_power_w(volt_mv * curr_ma / 1e6, where)
        energy_j = None
        if rail.energy_file:
            energy_j = checked_energy_j(root.read_int(rail.energy_file) / 1e6, str(root.full(rail.energy_file)))
        return RailSample(rail=rail.rail, power_w=power_w, energy_j=energy_j)

    def _discover(self) -> list[HwmonRail]:
        chips = scan_hwmon(self.sysfs)
        found = [rail for chip in chips for rail in chip.rails]
        where = f"under {self.sysfs.full(HWMON_DIR)}; {found_text(chips, 'hwmon chips')}"
        if not self.config.rails:
            if not found:
                raise SensorError(f"hwmon: no channel with power {where}: is the driver (ina2xx, ina3221) loaded?")
            return found
        selected: list[HwmonRail] = []
        for i, wanted in enumerate(self.config.rails):
            matches = [rail for rail in found if _matches(wanted, rail)]
            if not matches:
                raise SensorError(f"hwmon: power.rails[{i}] ({_describe(wanted)}) matches no channel {where}. "
                                  "Fix power.rails in the config")
            selected += [rail for rail in matches if rail not in selected]
        return selected


def scan_hwmon(root: SysfsRoot) -> list[HwmonChip]:
    """Every hwmon chip under `root` with the channels that yield power."""
    return [HwmonChip(name, chip_id, d, _chip_rails(root, name, chip_id, d))
            for name, chip_id, d in scan_chips(root, f"{HWMON_DIR}/hwmon*", _CHIP_DIR)]


def _chip_rails(root: SysfsRoot, chip: str, chip_id: str, rel: str) -> tuple[HwmonRail, ...]:
    files = {os.path.basename(p) for p in root.glob(f"{rel}/*_*")}
    attrs: dict[tuple[str, int], set[str]] = {}
    for name in files:
        m = _ATTR.fullmatch(name)
        if m:
            attrs.setdefault((m[1], int(m[2])), set()).add(m[3])
    numbers = sorted({n for (kind, n), ends in attrs.items() if kind == "power" and ends & {"input", "average"}}
                     | {n for (kind, n), ends in attrs.items() if kind == "curr" and "input" in ends
                        and "input" in attrs.get(("in", n), ())})
    rails = []
    for n in numbers:
        power = next((f"power{n}_{end}" for end in ("input", "average") if f"power{n}_{end}" in files), None)
        label = next((root.read_text(f"{rel}/{kind}{n}_label") for kind in ("power", "curr", "in")
                      if f"{kind}{n}_label" in files), "") or str(n)
        rails.append(HwmonRail(
            chip=chip, chip_id=chip_id, channel=n, label=label, rail=f"{chip_id}/{label}", dir=rel,
            power_file=f"{rel}/{power}" if power else None,
            volt_file=None if power else f"{rel}/in{n}_input",
            curr_file=None if power else f"{rel}/curr{n}_input",
            energy_file=f"{rel}/energy{n}_input" if f"energy{n}_input" in files else None,
        ))
    return unique_rail_names(rails)


def _matches(wanted: HwmonRailConfig, rail: HwmonRail) -> bool:
    if wanted.chip not in (rail.chip, rail.chip_id):
        return False
    return rail.label == wanted.label if wanted.label is not None else rail.channel == wanted.channel


def _describe(wanted: HwmonRailConfig) -> str:
    which = f"label: {wanted.label}" if wanted.label is not None else f"channel: {wanted.channel}"
    return f"chip: {wanted.chip}, {which}"
