"""The `power:` section: one config dataclass per power source type, picked by its `type:` key.

To add a source (hwmon, iio, rapl, joulescope), write its frozen dataclass with a `type` field and add
one row to POWER_TYPES; the sensor registry in `edgeoffload.sensors` maps the same names to readers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .schema import choice, fmt, map_of, number, spec, string, tagged, valid


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


PowerConfig = ModelledPowerConfig  # becomes a Union as types are added

# One row per power source type: `type:` value -> its config dataclass.
POWER_TYPES: dict[str, type] = {
    "modelled": ModelledPowerConfig,
}

power_section = tagged(POWER_TYPES, default="modelled")
