"""Snapshots the decision core works on: frozen dataclasses, no I/O, no clocks.

Units are in the names: ms, mj (millijoules), w (watts), bytes_per_s, nj_per_byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from enum import Enum


class Objective(str, Enum):
    LATENCY = "latency"
    ENERGY = "energy"
    EDP = "edp"


class IdleMode(str, Enum):
    HIGH = "high"
    LOW = "low"


@dataclass(frozen=True)
class NetworkProfile:
    """A link as the study's section 2.4 describes it (one-way latency, per-direction bandwidth and energy)."""

    one_way_latency_ms: float
    upload_bytes_per_s: float
    download_bytes_per_s: float
    upload_nj_per_byte: float
    download_nj_per_byte: float
    name: str = "custom"


# The study's measured links (Frennborn & Oliv 2022, section 3.x). The Ethernet energy-per-byte pair is
# ambiguous in the text (57 / 128 nJ/B); we read 57 as upload. 5G energy per byte is not given by the
# study: we assume the radio figures, which is labelled in the profile name's documentation (README).
NETWORK_PROFILES: dict[str, NetworkProfile] = {
    "ethernet": NetworkProfile(10.0, 3.04e6, 7.13e6, 57.0, 128.0, name="ethernet"),
    "radio": NetworkProfile(29.0, 1.0e6, 3.53e6, 139.0, 110.0, name="radio"),
    "5g": NetworkProfile(1.0, 202e6 / 8, 202e6 / 8, 139.0, 110.0, name="5g"),
}


@dataclass(frozen=True)
class LocalOption:
    """A local target that can run the model, with its measured (or modelled) cost per inference."""

    target: str
    latency_ms: float
    power_w: float
    energy_source: str = "modelled"


@dataclass(frozen=True)
class RemoteOption:
    """An offload endpoint that serves the model, with the live (or assumed) link and server estimates."""

    target: str
    network: NetworkProfile
    server_ms: float
    input_bytes: int
    output_bytes: int
    network_source: str = "profile"


@dataclass(frozen=True)
class DecisionRequest:
    """Everything the decision needs about one request, frozen at the moment of deciding."""

    model: str
    objective: Objective
    deadline_ms: float | None
    idle_power_w: float
    local: tuple[LocalOption, ...] = ()
    remote: tuple[RemoteOption, ...] = ()
    never_offload: bool = False
    allowed_targets: frozenset[str] | None = None
    excluded: tuple[tuple[str, str], ...] = ()  # (target, reason) ruled out before the decision
    # Why energy cannot be trusted now (a measured source failed), or None: energy and EDP objectives are
    # then decided on latency, and the decision says so.
    energy_unknown: str | None = None


@dataclass(frozen=True)
class Prediction:
    """The predicted cost of running the request on one target."""

    target: str
    kind: str  # "local" | "remote"
    latency_ms: float
    energy_mj: float
    meets_deadline: bool
    breakdown: dict[str, float] = field(default_factory=dict)
    energy_source: str = ""  # where the energy figure's power came from ("measured rail", "modelled", ...)

    @property
    def edp_mj_ms(self) -> float:
        return self.energy_mj * self.latency_ms


@dataclass(frozen=True)
class Decision:
    """Where to run, why, and what every considered option was predicted to cost (best first)."""

    model: str
    target: str | None
    objective: Objective
    deadline_ms: float | None
    deadline_miss: bool
    predictions: tuple[Prediction, ...]
    excluded: tuple[tuple[str, str], ...] = ()
    # Set when the policy's objective could not be used: the objective decided on instead is `objective`.
    objective_fallback: str | None = None

    @property
    def chosen(self) -> Prediction | None:
        return next((p for p in self.predictions if p.target == self.target), None)

    @cached_property
    def reason(self) -> str:
        """One line saying why; worked out when first asked for (reporting), not while deciding."""
        from edgeoffload.decide.engine import explain
        return explain(self)
