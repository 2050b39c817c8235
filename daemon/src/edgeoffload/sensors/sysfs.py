"""The one place a sysfs tree is joined and read, and what the hwmon, iio and rapl readers share.

    root = SysfsRoot(config.sysfs)            # tests: SysfsRoot(tmp_path / "sys")
    root.read_int("class/hwmon/hwmon2/power1_input")

Every failure is a SensorError naming the full path and what was wrong with it. A reader discovers its
rails when it is made; after a failed read it forgets them and discovers again on the next read, because
hwmon and iio numbering can change when a driver re-probes, so a sensor that vanishes and returns recovers.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Generic, TypeVar

from edgeoffload.errors import SensorError
from edgeoffload.sensors.base import LABEL_RAIL, ChannelInfo, PowerReading, RailSample

log = logging.getLogger(__name__)
RailT = TypeVar("RailT")

MAX_ATTR_BYTES = 4096  # a sysfs attribute is at most one page
MAX_POWER_W = 10_000.0  # more than this on a board rail is a broken reading, not a board
NOISE_POWER_W = 0.05  # shunt offset noise on an idle rail: down to -50 mW reads as 0 W; below that is an error
DEFAULT_DENIED_HINT = (
    "run edgeoffloadd as a user that may read it, or grant read access with a udev rule or chmod"
)
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(r"[+-]?(nan|inf|infinity)", re.IGNORECASE)


class SysfsRoot:
    """A sysfs tree at `path` (the real one, or a fixture copy); every path given to it is relative."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"SysfsRoot({str(self.path)!r})"

    def full(self, rel: str) -> Path:
        return self.path / rel

    def exists(self, rel: str) -> bool:
        return self.full(rel).exists()

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching `pattern`, in natural order (hwmon2 before hwmon10)."""
        try:
            found = [p.relative_to(self.path).as_posix() for p in self.path.glob(pattern)]
        except OSError as e:
            raise SensorError(f"{self.full(pattern)}: cannot list: {e.strerror or e}") from e
        return sorted(found, key=natural_key)

    def link_target(self, rel: str) -> str | None:
        """Where the symlink `rel` points (as written in the link), or None when it is not a link."""
        try:
            return os.readlink(self.full(rel))
        except OSError:
            return None

    def read_text(self, rel: str, denied_hint: str = DEFAULT_DENIED_HINT) -> str:
        """The attribute's text without surrounding whitespace."""
        path = self.full(rel)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_ATTR_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError) as e:
            raise SensorError(f"{path}: vanished (the sensor was removed or its driver unloaded)") from e
        except IsADirectoryError as e:
            raise SensorError(f"{path}: is a directory, not a sysfs attribute") from e
        except PermissionError as e:
            raise SensorError(f"{path}: permission denied: {denied_hint}") from e
        except OSError as e:
            raise SensorError(f"{path}: cannot read: {e.strerror or e}") from e
        if len(data) > MAX_ATTR_BYTES:
            raise SensorError(f"{path}: longer than {MAX_ATTR_BYTES} bytes: not a sysfs attribute")
        try:
            return data.decode("ascii").strip()
        except UnicodeDecodeError as e:
            raise SensorError(f"{path}: not text: {data[:40]!r}") from e

    def read_int(self, rel: str, denied_hint: str = DEFAULT_DENIED_HINT) -> int:
        text = self.read_text(rel, denied_hint)
        if not _INT.fullmatch(text):
            raise SensorError(f"{self.full(rel)}: not an integer: {text[:40]!r}")
        value = int(text)
        if abs(value) >= 1 << 64:  # sysfs attributes are at most 64-bit
            raise SensorError(f"{self.full(rel)}: integer out of range: {text[:40]!r}")
        return value

    def read_float(self, rel: str) -> float:
        """A finite decimal number (IIO scales and offsets: `0.48828125`, `-100`)."""
        text = self.read_text(rel)
        if _NON_FINITE.fullmatch(text):
            raise SensorError(f"{self.full(rel)}: not a finite number: {text!r}")
        if not _FLOAT.fullmatch(text):
            raise SensorError(f"{self.full(rel)}: not a number: {text[:40]!r}")
        value = float(text)
        if not math.isfinite(value):
            raise SensorError(f"{self.full(rel)}: number out of range: {text[:40]!r}")
        return value


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers by value: hwmon2 < hwmon10, intel-rapl:0:1 < intel-rapl:0:10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"([0-9]+)", text)]


def as_root(sysfs: SysfsRoot | str | os.PathLike[str]) -> SysfsRoot:
    return sysfs if isinstance(sysfs, SysfsRoot) else SysfsRoot(sysfs)


def checked_power_w(power_w: float, where: str) -> float:
    """A rail's power in W, or SensorError naming `where` when it cannot be a real reading."""
    if not math.isfinite(power_w):
        raise SensorError(f"{where}: power is not a finite number ({power_w})")
    if power_w < -NOISE_POWER_W:
        raise SensorError(f"{where}: negative power {power_w:.6g} W: is the shunt wired backwards, "
                          "or the chip misconfigured?")
    if power_w > MAX_POWER_W:
        raise SensorError(f"{where}: absurd power {power_w:.6g} W (more than {MAX_POWER_W:.0f} W): "
                          "check the chip's shunt resistor and scale settings")
    return max(power_w, 0.0)


def checked_energy_j(energy_j: float, where: str) -> float:
    """A cumulative energy counter in J, or SensorError naming `where`."""
    if not math.isfinite(energy_j):
        raise SensorError(f"{where}: energy is not a finite number ({energy_j})")
    if energy_j < 0:
        raise SensorError(f"{where}: negative energy counter {energy_j:.6g} J")
    return energy_j


def device_name(sysfs: SysfsRoot, rel: str) -> str | None:
    """The bus name of the device behind a class or iio directory (`1-0040` for an I2C chip at 0x40):
    the target of its `device` link (hwmon), else the folder that holds the directory's own link target
    (/sys/bus/iio/devices/iio:device0 -> .../1-0010/iio:device0)."""
    target = sysfs.link_target(f"{rel}/device")
    if target:
        return PurePosixPath(target).name
    target = sysfs.link_target(rel)
    return PurePosixPath(target).parent.name if target and "/" in target else None


def unique_chip_ids(sysfs: SysfsRoot, chips: Sequence[tuple[str, str]]) -> list[str]:
    """One id per (name, directory): the name, or `name@<device>` (else `name#<n>`) where names repeat."""
    names = [name for name, _ in chips]
    ids = []
    for i, (name, rel) in enumerate(chips):
        if names.count(name) == 1:
            ids.append(name)
            continue
        device = device_name(sysfs, rel)
        ids.append(f"{name}@{device}" if device else f"{name}#{names[:i].count(name)}")
    if len(set(ids)) != len(ids):  # two chips behind the same device name: fall back to numbering
        ids = [f"{name}#{names[:i].count(name)}" if names.count(name) > 1 else name for i, name in enumerate(names)]
    return ids


def scan_chips(sysfs: SysfsRoot, pattern: str, dir_name: re.Pattern[str]) -> list[tuple[str, str, str]]:
    """(name, unique id, directory) of every chip directory matching the glob `pattern` whose base name
    fully matches `dir_name` (hwmon3, iio:device0); the `name` file, else the directory's name, names it.
    A dangling link (a chip removed while listed) is no chip."""
    dirs = [d for d in sysfs.glob(pattern) if dir_name.fullmatch(os.path.basename(d)) and sysfs.exists(d)]
    names = [sysfs.read_text(f"{d}/name") if sysfs.exists(f"{d}/name") else os.path.basename(d) for d in dirs]
    return list(zip(names, unique_chip_ids(sysfs, list(zip(names, dirs))), dirs))


def unique_rail_names(rails: Sequence[RailT]) -> tuple[RailT, ...]:
    """Rails (dataclasses with `rail` and `channel`) of one chip that share a label are named `rail#N`."""
    names = [r.rail for r in rails]
    return tuple(r if names.count(r.rail) == 1 else replace(r, rail=f"{r.rail}#{r.channel}") for r in rails)


def found_text(chips: Sequence, none: str) -> str:
    """What discovery found, for an error the user fixes the config from: `found: ina3221 (hwmon0):
    VDD_SOC (channel 1), ...; cpu_thermal (hwmon1): no power channels`. Each chip has `chip_id`, `dir`
    and `rails` (each with `channel` and `label`)."""
    if not chips:
        return f"found: no {none}"
    parts = []
    for chip in chips:
        rails = ", ".join(f"channel {r.channel}" if r.label == str(r.channel) else f"{r.label} (channel {r.channel})"
                          for r in chip.rails)
        parts.append(f"{chip.chip_id} ({PurePosixPath(chip.dir).name}): {rails or 'no power channels'}")
    return "found: " + "; ".join(parts)


class SysfsReader(Generic[RailT]):
    """Discovery, re-discovery after a failure and close, shared by HwmonPower, IioPower and RaplPower.

    A subclass sets `source` and implements `_discover() -> list[rail]` (raising SensorError that lists
    what was found when the config's selection matches nothing), `_info(rail) -> ChannelInfo` and
    `_sample(rail, t_s) -> RailSample`."""

    label = LABEL_RAIL
    source = "sysfs"

    def __init__(self, sysfs: SysfsRoot | str | os.PathLike[str], clock: Callable[[], float] = time.monotonic):
        self.sysfs = as_root(sysfs)
        self._clock = clock
        self._closed = False
        self._rails: list[RailT] | None = self._discover()
        log.info("%s: %s", self.source, ", ".join(self._info(r).rail for r in self._rails))

    def channels(self) -> list[ChannelInfo]:
        return [self._info(rail) for rail in self._current()]

    def read(self) -> PowerReading:
        rails = self._current()
        t_s = self._clock()
        try:
            samples = tuple(self._sample(rail, t_s) for rail in rails)
        except SensorError:
            self._rails = None  # discover again on the next read: the numbering may change on re-probe
            raise
        return PowerReading(t_s=t_s, rails=samples)

    def close(self) -> None:
        self._closed = True
        self._rails = None

    def _current(self) -> list[RailT]:
        if self._closed:
            raise SensorError(f"{self.source} reader on {self.sysfs.path} is closed: create a new one")
        if self._rails is None:
            self._rails = self._discover()
            log.info("%s: found again: %s", self.source, ", ".join(self._info(r).rail for r in self._rails))
        return self._rails

    def _discover(self) -> list[RailT]:
        raise NotImplementedError

    def _info(self, rail: RailT) -> ChannelInfo:
        raise NotImplementedError

    def _sample(self, rail: RailT, t_s: float) -> RailSample:
        raise NotImplementedError
