"""The interface every power source implements. Measured sources (hwmon, iio, rapl, joulescope) come later."""

from __future__ import annotations

from typing import Protocol

from edgeoffload.decide.types import IdleMode


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
