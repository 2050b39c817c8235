"""Energy counters of Intel (and AMD) RAPL zones through powercap, for the PC side of a comparison.

    <root>/class/powercap/intel-rapl:<N>/               package-N, psys
        name, energy_uj, max_energy_range_uj             counter in uJ; wraps at max_energy_range_uj
        intel-rapl:<N>:<M>/                             sub-zones (core, uncore, dram), inside the package

A sub-zone's rail is `package-0/core`. The counter is unwrapped, so `energy_j` only grows; `power_w` is the
energy since the previous read over the time between them (None on the first read). energy_uj is often
root-only (0400): reading it then fails with a SensorError that says how to allow it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgeoffload.config.power import RaplPowerConfig
from edgeoffload.errors import SensorError
from edgeoffload.sensors.base import ChannelInfo, RailSample
from edgeoffload.sensors.sysfs import SysfsReader, SysfsRoot, checked_energy_j, checked_power_w

POWERCAP_DIR = "class/powercap"
PSYS = "psys"  # the whole platform: it already holds the packages' energy
_ZONE = re.compile(r"intel-rapl:[0-9]+(:[0-9]+)?")
RAPL_DENIED_HINT = (
    "RAPL counters are often readable by root only (mode 0400): run edgeoffloadd as root, or make energy_uj "
    "readable at boot with a udev rule (ACTION==\"add\", SUBSYSTEM==\"powercap\", "
    "RUN+=\"/bin/chmod a+r /sys%p/energy_uj\") or `chmod a+r` on the file"
)


@dataclass(frozen=True)
class RaplZone:
    zone_id: str  # intel-rapl:0, intel-rapl:0:0
    name: str  # package-0, core
    rail: str  # package-0, package-0/core
    dir: str
    parent_id: str | None
    max_range_uj: int


@dataclass
class _Counter:
    """Unwrapping state of one zone's counter, kept across re-discovery (the hardware keeps counting)."""

    max_range_uj: int
    last_raw_uj: int
    offset_uj: int = 0
    last_t_s: float = 0.0


class RaplPower(SysfsReader[RaplZone]):
    """A `PowerReader` over RAPL zones: those named by `config.zones`, else every top-level zone but psys."""

    source = "rapl"

    def __init__(self, config: RaplPowerConfig, sysfs: SysfsRoot | str | os.PathLike[str] | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._counters: dict[str, _Counter] = {}
        super().__init__(config.sysfs if sysfs is None else sysfs, clock)

    def _info(self, zone: RaplZone) -> ChannelInfo:
        return ChannelInfo(source="rapl", chip=zone.name, rail=zone.rail, unit="µJ",
                           path=str(self.sysfs.full(zone.dir)))

    def _sample(self, zone: RaplZone, t_s: float) -> RailSample:
        file = f"{zone.dir}/energy_uj"
        where = str(self.sysfs.full(file))
        raw_uj = self.sysfs.read_int(file, RAPL_DENIED_HINT)
        if not 0 <= raw_uj <= zone.max_range_uj:
            raise SensorError(f"{where}: {raw_uj} is outside 0 to max_energy_range_uj ({zone.max_range_uj})")
        counter = self._counters.get(zone.zone_id)
        if counter is None or counter.max_range_uj != zone.max_range_uj:
            self._counters[zone.zone_id] = _Counter(zone.max_range_uj, raw_uj, last_t_s=t_s)
            return RailSample(rail=zone.rail, power_w=None, energy_j=raw_uj / 1e6)
        before_j = (counter.offset_uj + counter.last_raw_uj) / 1e6
        if raw_uj < counter.last_raw_uj:  # wrapped (at most once between two reads at any sane rate)
            counter.offset_uj += zone.max_range_uj
        energy_j = checked_energy_j((counter.offset_uj + raw_uj) / 1e6, where)
        dt_s, counter.last_raw_uj, counter.last_t_s = t_s - counter.last_t_s, raw_uj, t_s
        power_w = checked_power_w((energy_j - before_j) / dt_s, where) if dt_s > 0 else None
        return RailSample(rail=zone.rail, power_w=power_w, energy_j=energy_j)

    def _discover(self) -> list[RaplZone]:
        zones = scan_rapl(self.sysfs)
        found = "found: " + (", ".join(f"{z.rail} ({z.zone_id})" for z in zones) or "no RAPL zones")
        where = f"under {self.sysfs.full(POWERCAP_DIR)}; {found}"
        if not self.config.zones:
            selected = [z for z in zones if z.parent_id is None and z.name != PSYS]
            if not selected:
                raise SensorError(f"rapl: no package zone {where}: is the intel_rapl_msr driver loaded (Intel, and "
                                  "AMD since Linux 5.8)? Name zones in power.zones to use others")
        else:
            selected = []
            for i, wanted in enumerate(self.config.zones):
                matches = [z for z in zones if wanted in (z.rail, z.name, z.zone_id)]
                if not matches:
                    raise SensorError(f"rapl: power.zones[{i}] ({wanted}) matches no zone {where}. "
                                      "Fix power.zones in the config")
                selected += [z for z in matches if z not in selected]
        _refuse_double_counting(selected)
        for zone in selected:  # fail now, not at the first read, when the counter is root-only
            self.sysfs.read_int(f"{zone.dir}/energy_uj", RAPL_DENIED_HINT)
        return selected


def scan_rapl(root: SysfsRoot) -> list[RaplZone]:
    """Every RAPL zone under `root`: top-level ones and their sub-zones (listed at the top in real sysfs as
    links, and inside their package; each is taken once)."""
    dirs: dict[str, str] = {}
    for rel in root.glob(f"{POWERCAP_DIR}/intel-rapl:*") + root.glob(f"{POWERCAP_DIR}/intel-rapl:*/intel-rapl:*"):
        zone_id = os.path.basename(rel)
        if _ZONE.fullmatch(zone_id) and root.exists(rel):  # not a link left dangling by a vanished package
            dirs.setdefault(zone_id, rel)
    names = {zone_id: root.read_text(f"{rel}/name") for zone_id, rel in dirs.items()}
    zones = []
    for zone_id, rel in sorted(dirs.items(), key=lambda item: [int(x) for x in item[0].split(":")[1:]]):
        parent_id = zone_id.rpartition(":")[0] if zone_id.count(":") == 2 else None
        name = names[zone_id]
        rail = f"{names[parent_id]}/{name}" if parent_id in names else name
        max_range_uj = root.read_int(f"{rel}/max_energy_range_uj")
        if max_range_uj <= 0:
            raise SensorError(f"{root.full(rel)}/max_energy_range_uj: must be positive, got {max_range_uj}")
        zones.append(RaplZone(zone_id, name, rail, rel, parent_id, max_range_uj))
    return zones


def _refuse_double_counting(zones: list[RaplZone]) -> None:
    """Board power is the sum of the rails: a zone and a zone inside it would count energy twice."""
    by_id = {z.zone_id: z for z in zones}
    for zone in zones:
        parent = by_id.get(zone.parent_id or "")
        if parent:
            raise SensorError(f"rapl: power.zones selects both {parent.rail} and {zone.rail}, which is part of it: "
                              "their sum would count its energy twice; list only one of them")
    if any(z.name == PSYS for z in zones) and len(zones) > 1:
        others = ", ".join(z.rail for z in zones if z.name != PSYS)
        raise SensorError(f"rapl: power.zones selects psys with {others}: psys already holds the packages' "
                          "energy, so their sum would count it twice; list psys alone or leave it out")
