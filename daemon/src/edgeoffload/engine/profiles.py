"""Profiling local targets and keeping the results in the state directory across restarts.

A profile is keyed by the model's sha256, the target (name and settings) and the runtime version, so a new
model file, a changed thread count or an upgraded runtime all trigger a fresh profile; an old one is stale
after `profiling.max_age_s`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from edgeoffload.atomicfile import replace_file
from edgeoffload.profiling.stats import LatencyStats, WarmupStats, summarize, summarize_warmup

log = logging.getLogger(__name__)

STORE_SCHEMA = 1


@dataclass(frozen=True)
class Profile:
    """A measured latency profile of one model on one local target, with its energy estimate."""

    model: str
    sha256: str
    target: str
    target_signature: str
    runtime_version: str
    measured_unix_s: float
    warmup: WarmupStats
    latency: LatencyStats
    power_w: float
    energy_source: str
    # Measured with a meter (engine/energy_profile.EnergyRun.to_dict()), else None: energy is power_w × latency.
    energy: dict | None = None
    first_invoke_ms: float | None = None  # the first run alone (NPU: graph compile), apart from the warm-up
    environment: dict | None = None  # thermal zones and cpufreq while profiling

    @property
    def key(self) -> str:
        return profile_key(self.sha256, self.target_signature, self.runtime_version)

    @property
    def energy_mj(self) -> float:
        if self.energy is not None:
            return float(self.energy["total_energy_mj"])
        return self.latency.mean_ms * self.power_w

    def to_dict(self) -> dict:
        return {
            "model": self.model, "sha256": self.sha256, "target": self.target,
            "target_signature": self.target_signature, "runtime_version": self.runtime_version,
            "measured_utc": utc_iso(self.measured_unix_s), "measured_unix_s": self.measured_unix_s,
            "warmup": self.warmup.to_dict(), "latency": self.latency.to_dict(),
            "power_w": self.power_w, "energy_mj": self.energy_mj, "energy_source": self.energy_source,
            "energy": self.energy, "first_invoke_ms": self.first_invoke_ms, "environment": self.environment,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        return cls(d["model"], d["sha256"], d["target"], d["target_signature"], d["runtime_version"],
                   float(d["measured_unix_s"]), WarmupStats(**d["warmup"]), LatencyStats(**d["latency"]),
                   float(d["power_w"]), d["energy_source"], d.get("energy"), d.get("first_invoke_ms"),
                   d.get("environment"))


def profile_key(sha256: str, target_signature: str, runtime_version: str) -> str:
    return f"{sha256}|{target_signature}|{runtime_version}"


def utc_iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ProfileStore:
    """`<state_dir>/profiles.json`, written atomically; a corrupt file is set aside, never fatal."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "profiles.json"
        self._profiles: dict[str, Profile] = {}

    def load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
            entries = raw["profiles"] if raw.get("schema") == STORE_SCHEMA else {}
            self._profiles = {k: Profile.from_dict(v) for k, v in entries.items()}
        except FileNotFoundError:
            self._profiles = {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.path.with_suffix(f".corrupt-{int(time.time())}")
            log.warning("profile store %s is unreadable (%s); moved aside to %s, profiling afresh",
                        self.path, exc, aside)
            try:
                self.path.replace(aside)
            except OSError:
                pass
            self._profiles = {}

    def get(self, key: str, *, max_age_s: float, now_s: float) -> Profile | None:
        p = self._profiles.get(key)
        if p is None or now_s - p.measured_unix_s > max_age_s:
            return None
        return p

    def put(self, profile: Profile) -> None:
        self._profiles[profile.key] = profile
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"schema": STORE_SCHEMA, "profiles": {k: p.to_dict() for k, p in self._profiles.items()}},
                          indent=1, sort_keys=True)
        replace_file(self.path, body.encode())


def time_runs(run: Callable[[np.ndarray], object], x: np.ndarray, *, warmup_runs: int, runs: int,
              duration_s: float | None, clock: Callable[[], float] = time.perf_counter
              ) -> tuple[WarmupStats, LatencyStats]:
    """Warm up, then time runs: `runs` of them, or as many as fit in `duration_s` (at least one)."""
    warm = []
    for _ in range(warmup_runs):
        t0 = clock()
        run(x)
        warm.append((clock() - t0) * 1000.0)
    samples = []
    start = clock()
    while True:
        t0 = clock()
        run(x)
        t1 = clock()
        samples.append((t1 - t0) * 1000.0)
        if duration_s is None and len(samples) >= runs:
            break
        if duration_s is not None and t1 - start >= duration_s:
            break
    return summarize_warmup(warm), summarize(samples)


def sample_input(shape: tuple[int, ...], dtype: np.dtype, seed: int = 0) -> np.ndarray:
    """A deterministic request tensor of the model's input shape (uint8 images; other dtypes in 0..1)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, 0), min(info.max, 255) + 1, size=shape, dtype=dtype)
    return rng.random(size=shape).astype(dtype)
