"""Thermal zones and CPU frequency scaling: what makes the same model slower on a hot or throttled board.

Read from sysfs (``SysfsRoot``: the real /sys, or a fixture tree in tests):

- ``class/thermal/thermal_zone*/type`` and ``temp`` (m°C). Every i.MX 8M Plus has ``cpu-thermal`` and
  ``soc-thermal`` (REFERENCE §7).
- ``devices/system/cpu/cpufreq/policy*/``: one directory per frequency domain, the kernel's layout since
  4.8 (``cpu*/cpufreq`` are symlinks to these). ``related_cpus`` lists its cores; ``scaling_cur_freq``,
  ``scaling_min_freq``, ``scaling_max_freq``, ``cpuinfo_max_freq`` and ``scaling_available_frequencies`` are
  kHz; ``scaling_governor`` is text. The i.MX 8M Plus has one policy for its four Cortex-A53 cores with
  operating points 1.2/1.6/1.8 GHz. Only where no ``policy*`` exists are ``cpu*/cpufreq`` directories read.

A reading never raises: an attribute that is missing, unreadable or garbage leaves its field None and its
zone or policy carries ``error`` (every problem, with the file), so one bad sensor hides nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from edgeoffload.errors import SensorError
from edgeoffload.sensors.sysfs import SysfsRoot, as_root

THERMAL_DIR = "class/thermal"
CPUFREQ_DIR = "devices/system/cpu/cpufreq"
CPU_DIR = "devices/system/cpu"
MIN_TEMP_C, MAX_TEMP_C = -70.0, 200.0  # outside: a sensor error code or a disconnected diode, not silicon
MAX_FREQ_KHZ = 10_000_000  # 10 GHz: above this a frequency file holds garbage


@dataclass(frozen=True)
class ThermalZone:
    """One thermal zone: `zone` is its directory name (``thermal_zone0``), `type` what it measures."""

    zone: str
    type: str | None
    temp_c: float | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"zone": self.zone, "type": self.type, "temp_c": self.temp_c, "error": self.error}


@dataclass(frozen=True)
class ThermalSnapshot:
    """Every thermal zone read once, in zone order; `error` when the zones could not even be listed."""

    zones: tuple[ThermalZone, ...]
    error: str | None = None

    def temp_c(self, zone_type: str) -> float | None:
        """The temperature of the first zone of this type (``cpu-thermal``), None when absent or unread."""
        return next((z.temp_c for z in self.zones if z.type == zone_type), None)

    @property
    def max_temp_c(self) -> float | None:
        temps = [z.temp_c for z in self.zones if z.temp_c is not None]
        return max(temps) if temps else None

    def to_dict(self) -> dict[str, Any]:
        return {"zones": [z.to_dict() for z in self.zones], "max_temp_c": self.max_temp_c, "error": self.error}


@dataclass(frozen=True)
class CpufreqPolicy:
    """One frequency domain: its directory (``policy0``), its cores, and its frequencies in MHz."""

    policy: str
    cpus: tuple[int, ...]
    governor: str | None
    cur_freq_mhz: float | None
    min_freq_mhz: float | None
    max_freq_mhz: float | None
    hw_max_freq_mhz: float | None
    available_freqs_mhz: tuple[float, ...]
    error: str | None = None

    @property
    def throttled(self) -> bool | None:
        """True when the current frequency is below the hardware's highest (DVFS or thermal throttling)."""
        if self.cur_freq_mhz is None or self.hw_max_freq_mhz is None:
            return None
        return self.cur_freq_mhz < self.hw_max_freq_mhz

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "cpus": list(self.cpus), "governor": self.governor,
                "cur_freq_mhz": self.cur_freq_mhz, "min_freq_mhz": self.min_freq_mhz,
                "max_freq_mhz": self.max_freq_mhz, "hw_max_freq_mhz": self.hw_max_freq_mhz,
                "available_freqs_mhz": list(self.available_freqs_mhz), "throttled": self.throttled,
                "error": self.error}


@dataclass(frozen=True)
class CpufreqSnapshot:
    """Every cpufreq policy read once; no policies (and no error) where the kernel has no cpufreq."""

    policies: tuple[CpufreqPolicy, ...]
    error: str | None = None

    def for_cpu(self, cpu: int) -> CpufreqPolicy | None:
        return next((p for p in self.policies if cpu in p.cpus), None)

    def to_dict(self) -> dict[str, Any]:
        return {"policies": [p.to_dict() for p in self.policies], "error": self.error}


class _Problems:
    """Reads attributes of one directory, turning each failure into a note instead of an exception."""

    def __init__(self, sysfs: SysfsRoot, rel: str):
        self.sysfs, self.rel, self.notes = sysfs, rel, []

    def text(self, name: str) -> str | None:
        try:
            return self.sysfs.read_text(f"{self.rel}/{name}")
        except SensorError as e:
            self.notes.append(str(e))
            return None

    def number(self, name: str, low: float, high: float, what: str) -> int | None:
        try:
            value = self.sysfs.read_int(f"{self.rel}/{name}")
        except SensorError as e:
            self.notes.append(str(e))
            return None
        if not low <= value <= high:
            self.notes.append(f"{self.sysfs.full(self.rel + '/' + name)}: implausible {what} {value}")
            return None
        return value

    def numbers(self, name: str, high: float, optional: bool = False) -> tuple[int, ...]:
        if optional and not self.sysfs.exists(f"{self.rel}/{name}"):
            return ()
        text = self.text(name)
        words = (text or "").split()
        if not all(w.isdigit() and 0 <= int(w) <= high for w in words):
            self.notes.append(f"{self.sysfs.full(self.rel + '/' + name)}: not a list of numbers: {text[:40]!r}")
            return ()
        return tuple(int(w) for w in words)

    @property
    def error(self) -> str | None:
        return "; ".join(self.notes) or None


def read_thermal(sysfs: SysfsRoot | str | os.PathLike[str]) -> ThermalSnapshot:
    """All ``class/thermal/thermal_zone*`` zones: type and temperature in °C (from m°C)."""
    root = as_root(sysfs)
    try:
        rels = root.glob(f"{THERMAL_DIR}/thermal_zone*")
    except SensorError as e:
        return ThermalSnapshot((), str(e))
    zones = []
    for rel in rels:
        reader = _Problems(root, rel)
        zone_type = reader.text("type")
        milli_c = reader.number("temp", MIN_TEMP_C * 1000, MAX_TEMP_C * 1000, "temperature (m°C)")
        temp_c = None if milli_c is None else milli_c / 1000.0
        zones.append(ThermalZone(rel.rsplit("/", 1)[1], zone_type or None, temp_c, reader.error))
    return ThermalSnapshot(tuple(zones))


def read_cpufreq(sysfs: SysfsRoot | str | os.PathLike[str]) -> CpufreqSnapshot:
    """All cpufreq policies (``devices/system/cpu/cpufreq/policy*``), frequencies in MHz (from kHz)."""
    root = as_root(sysfs)
    try:
        rels = root.glob(f"{CPUFREQ_DIR}/policy[0-9]*")
        legacy = not rels
        if legacy:  # before Linux 4.8: cpuN/cpufreq, the cores after the first being links to its directory
            seen, rels = set(), []
            for rel in root.glob(f"{CPU_DIR}/cpu[0-9]*/cpufreq"):
                real = root.full(rel).resolve()
                if real.is_dir() and real not in seen:
                    seen.add(real)
                    rels.append(rel)
    except SensorError as e:
        return CpufreqSnapshot((), str(e))
    policies = [_policy(root, rel, legacy) for rel in rels]
    return CpufreqSnapshot(tuple(policies))


def _policy(root: SysfsRoot, rel: str, legacy: bool) -> CpufreqPolicy:
    reader = _Problems(root, rel)
    name = rel.split("/")[-2] if legacy else rel.rsplit("/", 1)[1]
    cpus = reader.numbers("related_cpus", 4096)
    if not cpus and legacy:
        cpus = (int(name[3:]),)

    def mhz(attr: str) -> float | None:
        khz = reader.number(attr, 1, MAX_FREQ_KHZ, "frequency (kHz)")
        return None if khz is None else khz / 1000.0

    governor = reader.text("scaling_governor")
    freqs = reader.numbers("scaling_available_frequencies", MAX_FREQ_KHZ, optional=True)
    return CpufreqPolicy(
        policy=name, cpus=cpus, governor=governor or None, cur_freq_mhz=mhz("scaling_cur_freq"),
        min_freq_mhz=mhz("scaling_min_freq"), max_freq_mhz=mhz("scaling_max_freq"),
        hw_max_freq_mhz=mhz("cpuinfo_max_freq"), available_freqs_mhz=tuple(sorted(f / 1000.0 for f in freqs)),
        error=reader.error)
