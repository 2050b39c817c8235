"""Moving estimates of the link and the server, fed by measurements, read as frozen snapshots.

Pure: callers pass the measured values in; nothing here reads a clock, a socket or a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeoffload.decide.types import NetworkProfile

MIN_BYTES_PER_S = 1e3
MAX_BYTES_PER_S = 1e11
MIN_TRANSFER_MS = 1e-3
# A cached decision is recomputed at once when an estimate it used moved by more than this fraction;
# smaller drift is picked up when the decision is refreshed (see engine/executor.py DECISION_REFRESH_S).
ESTIMATE_TOLERANCE = 0.10


class Epoch:
    """A counter bumped whenever anything a decision depends on changed materially (estimates moved,
    availability flipped, a new profile or policy): cached decisions older than the epoch are redone."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1


def moved(values: tuple[float, ...], used: tuple[float, ...] | None) -> bool:
    """Whether estimates moved materially since `used` (None: never used)."""
    return used is None or len(values) != len(used) or any(
        abs(v - u) > ESTIMATE_TOLERANCE * abs(u) for v, u in zip(values, used))


@dataclass
class Ewma:
    """Exponentially weighted moving average; the first sample sets the value.

    With `clip` (> 1), a sample counts as at most `clip` times (at least 1/`clip` of) the current value: a
    single outlier moves the average by a bounded step, while a sustained shift still gets through.
    """

    alpha: float = 0.2
    value: float | None = None
    count: int = 0
    clip: float | None = None

    def update(self, sample: float) -> float:
        if not math.isfinite(sample):
            return self.value if self.value is not None else math.nan
        if self.value is not None and self.clip is not None and self.value > 0:
            sample = min(max(sample, self.value / self.clip), self.value * self.clip)
        self.value = sample if self.value is None else self.alpha * sample + (1 - self.alpha) * self.value
        self.count += 1
        return self.value


@dataclass
class LinkEstimator:
    """RTT from health probes; upload/download bandwidth from requests, starting from a prior profile.

    One request gives one equation (transfer time = s_in/B_up + s_out/B_down) in two unknowns, so the
    estimator keeps the prior's upload/download ratio and learns one scale factor, smoothed geometrically.
    """

    prior: NetworkProfile
    alpha: float = 0.2
    rtt: Ewma | None = None
    upload_bytes_per_s: float | None = None
    download_bytes_per_s: float | None = None
    transfer_samples: int = 0

    def __post_init__(self) -> None:
        self.rtt = Ewma(self.alpha)
        self._snapshot: NetworkProfile | None = None

    def set_prior(self, prior: NetworkProfile) -> None:
        """A new assumed link (policy change); measurements already made still take precedence."""
        self.prior = prior
        self._snapshot = None

    def add_rtt(self, rtt_ms: float) -> None:
        if math.isfinite(rtt_ms) and rtt_ms >= 0:
            self.rtt.update(rtt_ms)
            self._snapshot = None

    def add_transfer(self, total_ms: float, server_ms: float, bytes_sent: int, bytes_received: int) -> None:
        """One completed request: its wall time, the server's compute time and the bytes each way."""
        if not all(math.isfinite(v) for v in (total_ms, server_ms)) or bytes_sent + bytes_received <= 0:
            return
        up, down = self._bandwidths()
        predicted_ms = 1000.0 * (bytes_sent / up + bytes_received / down)
        actual_ms = max(total_ms - server_ms - self.rtt_ms(), MIN_TRANSFER_MS)
        factor = min(max(actual_ms / max(predicted_ms, MIN_TRANSFER_MS), 0.01), 100.0)
        step = factor ** self.alpha
        self.upload_bytes_per_s = _clamp_bw(up / step)
        self.download_bytes_per_s = _clamp_bw(down / step)
        self.transfer_samples += 1
        self._snapshot = None

    def rtt_ms(self) -> float:
        if self.rtt.value is not None:
            return self.rtt.value
        return 2.0 * self.prior.one_way_latency_ms

    def _bandwidths(self) -> tuple[float, float]:
        return (self.upload_bytes_per_s or self.prior.upload_bytes_per_s,
                self.download_bytes_per_s or self.prior.download_bytes_per_s)

    @property
    def source(self) -> str:
        if self.transfer_samples and self.rtt.count:
            return "measured"
        if self.rtt.count:
            return f"measured rtt, {self.prior.name} bandwidth"
        return f"profile {self.prior.name}"

    def snapshot(self) -> NetworkProfile:
        """The link as the decision core sees it now (energy per byte always from the profile)."""
        if self._snapshot is None:
            up, down = self._bandwidths()
            self._snapshot = NetworkProfile(self.rtt_ms() / 2.0, up, down, self.prior.upload_nj_per_byte,
                                            self.prior.download_nj_per_byte, name=self.source)
        return self._snapshot


def _clamp_bw(value: float) -> float:
    return min(max(value, MIN_BYTES_PER_S), MAX_BYTES_PER_S)
