"""The `power:` section: one config dataclass per power source type, picked by its `type:` key.

To add a source, write its frozen dataclass with a `type` field and add one row to POWER_TYPES; the
sensor registry in `edgeoffload.sensors` maps the same names to readers.

    power: {type: hwmon, rails: [{chip: ina3221, label: VDD_SOC}, {chip: ina226, channel: 1}]}
    power: {type: iio, devices: [{name: pac1934, channels: [1, 2], labels: {'1': VDD_ARM}, units: {power: uW}}]}
    power: {type: rapl, zones: [package-0]}
    power: {type: joulescope}
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .schema import (
    Ctx, choice, fmt, integer, list_of, map_of, number, optional, path_value, record, spec, string, tagged, valid,
)
from .yamlsrc import INVALID

DEFAULT_SYSFS = Path("/sys")  # the one place the real sysfs root is named
MAX_CHANNEL = 1000
# IIO unit overrides: what one unit of a channel's value is after (raw + offset) x scale, as a factor to SI.
UNIT_FACTORS = {
    "uV": 1e-6, "mV": 1e-3, "V": 1.0,
    "uA": 1e-6, "mA": 1e-3, "A": 1.0,
    "uW": 1e-6, "mW": 1e-3, "W": 1.0,
    "uJ": 1e-6, "mJ": 1e-3, "J": 1.0,
}


@dataclass(frozen=True, kw_only=True)
class ModelledPowerConfig:
    """No meter: power comes from fixed figures (idle and per-target active power)."""

    type: str = spec(choice(["modelled"]), "modelled")
    idle_high_w: float = spec(number(gt=0), 2.5)
    idle_low_w: float = spec(number(gt=0), 1.0)
    active_w: dict[str, float] = spec(map_of(number(gt=0), key=string()), factory=dict)
    default_active_w: float = spec(number(gt=0), 3.5)

    def active_power_w(self, target: str) -> float:
        """Power drawn while `target` runs an inference."""
        return self.active_w.get(target, self.default_active_w)

    @staticmethod
    def complete(values: dict[str, Any], given: frozenset[str]) -> Iterator[tuple[str, str]]:
        if valid(values["idle_low_w"], values["idle_high_w"]) and values["idle_low_w"] > values["idle_high_w"]:
            high = fmt(values["idle_high_w"])
            yield "idle_low_w", f"must be at most idle_high_w ({high}), got {fmt(values['idle_low_w'])}"


@dataclass(frozen=True, kw_only=True)
class HwmonRailConfig:
    """One hwmon channel: a chip (`name`, or `name@device` where two chips share a name) and the
    channel's label (`in1_label` ...) or number (the N of power N / curr N)."""

    chip: str = spec(string())
    label: str | None = spec(optional(string()), None)
    channel: int | None = spec(optional(integer(1, MAX_CHANNEL)), None)

    @staticmethod
    def complete(values: dict[str, Any], given: frozenset[str]) -> Iterator[tuple[str, str]]:
        label, channel = values["label"], values["channel"]
        if label is None and channel is None:
            yield "label", "give label (the channel's name, e.g. VDD_SOC) or channel (its number)"
        elif valid(label, channel) and label is not None and channel is not None:
            yield "channel", "give either label or channel, not both"


@dataclass(frozen=True, kw_only=True)
class HwmonPowerConfig:
    """Rails read from Linux hwmon (INA2xx, INA3221 ...); no `rails`: every channel that yields power."""

    type: str = spec(choice(["hwmon"]), "hwmon")
    sysfs: Path = spec(path_value, DEFAULT_SYSFS)
    sample_hz: float = spec(number(gt=0, le=1000), 50.0)
    rails: tuple[HwmonRailConfig, ...] = spec(list_of(record(HwmonRailConfig), min_len=1), ())

    @staticmethod
    def complete(values: dict[str, Any], given: frozenset[str]) -> Iterator[tuple[str, str]]:
        rails = values["rails"]
        if rails is INVALID:
            return
        for i, rail in enumerate(rails):
            if rail in rails[:i]:
                yield f"rails[{i}]", f"the same channel as rails[{rails.index(rail)}]: list each channel once"


def _channel_key(v: Any, path: str, ctx: Ctx) -> Any:
    """A mapping key that names a channel number: '1' (YAML keys are strings here)."""
    if isinstance(v, str) and v.isascii() and v.isdigit() and (v == "0" or not v.startswith("0")):
        if int(v) <= MAX_CHANNEL:
            return int(v)
    return ctx.report(path, f"expected a channel number (0 to {MAX_CHANNEL}) as the key, got {v[:40]!r}")


@dataclass(frozen=True, kw_only=True)
class IioUnitsConfig:
    """The unit of each quantity after (raw + offset) x scale: the IIO ABI's by default. Drivers disagree
    (the PAC1934 driver's comments claim uW and mJ), so a device may override them."""

    voltage: str = spec(choice(("uV", "mV", "V")), "mV")
    current: str = spec(choice(("uA", "mA", "A")), "mA")
    power: str = spec(choice(("uW", "mW", "W")), "mW")
    energy: str = spec(choice(("uJ", "mJ", "J")), "J")


@dataclass(frozen=True, kw_only=True)
class IioDeviceConfig:
    """One IIO device by `name` (or `name@device`); no `channels`: every channel that yields power."""

    name: str = spec(string())
    channels: tuple[int, ...] | None = spec(optional(list_of(integer(0, MAX_CHANNEL), min_len=1, unique=True)), None)
    labels: dict[int, str] = spec(map_of(string(), key=_channel_key), factory=dict)
    units: IioUnitsConfig = spec(record(IioUnitsConfig), factory=IioUnitsConfig)

    @staticmethod
    def complete(values: dict[str, Any], given: frozenset[str]) -> Iterator[tuple[str, str]]:
        channels, labels = values["channels"], values["labels"]
        if channels is None or not valid(channels, labels):
            return
        for channel in labels:
            if channel not in channels:
                listed = ", ".join(str(c) for c in channels)
                yield f"labels.{channel}", f"channel {channel} is not in channels ({listed})"


@dataclass(frozen=True, kw_only=True)
class IioPowerConfig:
    """Rails read from Linux IIO power monitors (PAC1934 ...); no `devices`: every device's power channels."""

    type: str = spec(choice(["iio"]), "iio")
    sysfs: Path = spec(path_value, DEFAULT_SYSFS)
    sample_hz: float = spec(number(gt=0, le=1000), 50.0)
    devices: tuple[IioDeviceConfig, ...] = spec(list_of(record(IioDeviceConfig), min_len=1), ())

    @staticmethod
    def complete(values: dict[str, Any], given: frozenset[str]) -> Iterator[tuple[str, str]]:
        devices = values["devices"]
        if devices is INVALID:
            return
        first: dict[str, int] = {}
        for i, device in enumerate(devices):
            if device.name in first:
                yield f"devices[{i}].name", f"{device.name!r} is listed twice (first as devices[{first[device.name]}])"
            first.setdefault(device.name, i)


@dataclass(frozen=True, kw_only=True)
class RaplPowerConfig:
    """Intel RAPL energy counters (powercap); no `zones`: every top-level zone but psys (which holds them)."""

    type: str = spec(choice(["rapl"]), "rapl")
    sysfs: Path = spec(path_value, DEFAULT_SYSFS)
    sample_hz: float = spec(number(gt=0, le=1000), 50.0)
    zones: tuple[str, ...] = spec(list_of(string(), min_len=1, unique=True), ())


@dataclass(frozen=True, kw_only=True)
class JoulescopePowerConfig:
    """A Joulescope's readings, published over MQTT by the host that holds the instrument."""

    type: str = spec(choice(["joulescope"]), "joulescope")
    topic: str | None = spec(optional(string(r"[^+#\x00]+", "an MQTT topic name, without the wildcards + and #")), None)
    stale_after_s: float = spec(number(gt=0), 2.0)

    def topic_for(self, device_id: str) -> str:
        """The topic to subscribe to: the configured one, else edgeoffload/v1/<device_id>/power/joulescope."""
        return self.topic or f"edgeoffload/v1/{device_id}/power/joulescope"


PowerConfig = ModelledPowerConfig | HwmonPowerConfig | IioPowerConfig | RaplPowerConfig | JoulescopePowerConfig

# One row per power source type: `type:` value -> its config dataclass.
POWER_TYPES: dict[str, type] = {
    "modelled": ModelledPowerConfig,
    "hwmon": HwmonPowerConfig,
    "iio": IioPowerConfig,
    "rapl": RaplPowerConfig,
    "joulescope": JoulescopePowerConfig,
}

power_section = tagged(POWER_TYPES, default="modelled")
