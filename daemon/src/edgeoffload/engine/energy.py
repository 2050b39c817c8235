"""The energy figures decisions use, and where each came from.

Local power per model and target comes, best first, from: an imported measurement (a Joulescope recording
turned into a profile by `edgeoffload-host energy`), the energy measured while profiling (board power over
the run from the configured meter), or the modelled figures of the config. Idle power (what waiting for an
offloaded result costs) is the meter's last idle baseline when there is one. When the configured meter
fails, energy is unknown: decisions for the energy and EDP objectives fall back to latency with the reason.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from edgeoffload.decide.types import IdleMode
from edgeoffload.sensors.base import LABEL_MODELLED


@dataclass(frozen=True)
class PowerFigure:
    """Board power while a model runs on a target, and its source label ("measured rail", ...)."""

    power_w: float
    label: str


class EnergyBook:
    """Thread-safe. `modelled` is the config's fallback figures (ModelledPower); `meter` the measured source
    (sensors.meter.Meter) or None."""

    def __init__(self, modelled, meter=None) -> None:
        self.modelled = modelled
        self.meter = meter
        self._local: dict[tuple[str, str], PowerFigure] = {}
        self._imported: dict[tuple[str, str], PowerFigure] = {}
        self._idle_w: float | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.meter is not None:
            self.meter.start()

    def stop(self) -> None:
        if self.meter is not None:
            self.meter.stop()

    def sensors(self) -> list[dict]:
        """Every discovered rail with its latest reading (W, J), for `edgeoffloadctl sensors`."""
        if self.meter is None:
            return [{"source": LABEL_MODELLED, "chip": None, "rail": target, "unit": "W", "path": "config",
                     "power_w": power_w, "energy_j": None}
                    for target, power_w in sorted(self.modelled.describe()["active_w"].items())]
        latest = self.meter.latest()
        values = {r.rail: r for r in latest.rails} if latest is not None else {}
        out = []
        for channel in self.meter.reader.channels():
            rail = values.get(channel.rail)
            out.append({**channel.to_dict(), "power_w": None if rail is None else rail.power_w,
                        "energy_j": None if rail is None else rail.energy_j})
        return out

    @property
    def label(self) -> str:
        return self.meter.label if self.meter is not None else LABEL_MODELLED

    def unknown_reason(self) -> str | None:
        """Why energy cannot be trusted now, or None."""
        if self.meter is None or self.meter.known:
            return None
        return f"power source {self.meter.label}: {self.meter.problem}"

    def set_measured(self, model: str, target: str, power_w: float, label: str) -> None:
        with self._lock:
            self._local[(model, target)] = PowerFigure(power_w, label)

    def set_imported(self, model: str, target: str, power_w: float, label: str) -> None:
        with self._lock:
            self._imported[(model, target)] = PowerFigure(power_w, label)

    def set_idle(self, power_w: float) -> None:
        with self._lock:
            self._idle_w = power_w

    def local(self, model: str, target: str) -> PowerFigure:
        with self._lock:
            figure = self._imported.get((model, target)) or self._local.get((model, target))
        if figure is not None:
            return figure
        if self.meter is not None:
            latest = self.meter.latest()
            if latest is not None and latest.power_w is not None and self.meter.known:
                return PowerFigure(latest.power_w, f"{self.meter.label} (live, not profiled)")
        return PowerFigure(self.modelled.active_power_w(target), LABEL_MODELLED)

    def idle_power_w(self, mode: IdleMode) -> float:
        with self._lock:
            idle = self._idle_w
        return idle if idle is not None and self.meter is not None else self.modelled.idle_power_w(mode)

    def idle_label(self) -> str:
        with self._lock:
            measured = self._idle_w is not None and self.meter is not None
        return f"{self.meter.label} (idle baseline)" if measured else LABEL_MODELLED

    def describe(self) -> dict:
        out = {"label": self.label, "known": self.unknown_reason() is None, "problem": self.unknown_reason(),
               "idle_power_w": self._idle_w, "modelled": self.modelled.describe()}
        if self.meter is not None:
            out["meter"] = self.meter.describe()
        with self._lock:
            out["imported"] = [{"model": m, "target": t, "power_w": f.power_w, "label": f.label}
                               for (m, t), f in sorted(self._imported.items())]
        return out
