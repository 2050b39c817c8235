"""A modelled power source: fixed active power per target and idle power from config. Always labelled so."""

from __future__ import annotations

from edgeoffload.decide.types import IdleMode


class ModelledPower:
    """Power from configuration, not measurement (config `power: {type: modelled, ...}`)."""

    label = "modelled"

    def __init__(self, config) -> None:
        self._config = config

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def active_power_w(self, target: str) -> float:
        return float(self._config.active_w.get(target, self._config.default_active_w))

    def idle_power_w(self, mode: IdleMode) -> float:
        return float(self._config.idle_low_w if mode is IdleMode.LOW else self._config.idle_high_w)

    def describe(self) -> dict:
        return {"type": "modelled", "label": self.label, "idle_high_w": self._config.idle_high_w,
                "idle_low_w": self._config.idle_low_w, "active_w": dict(self._config.active_w),
                "default_active_w": self._config.default_active_w}
