"""JSON bodies the daemon reports (MQTT now, D-Bus later): units in key names, UTC timestamps."""

from __future__ import annotations

import math
import platform

from edgeoffload import __version__
from edgeoffload.decide.types import IdleMode
from edgeoffload.engine.executor import Outcome, prediction_dict
from edgeoffload.engine.profiles import utc_iso


def status_message(svc) -> dict:
    policy = svc.policy.current
    return {
        "state": svc.state,
        "versions": {"edgeoffload": __version__, "python": platform.python_version(),
                     "runtime": svc.runtime_version},
        "boot_id": svc.boot_id,
        "started_utc": utc_iso(svc.started_unix_s),
        "policy": {
            "schema_version": getattr(policy, "version", None),
            "digest": getattr(policy, "digest", None),
            "revision": getattr(policy, "revision", None),
            "objective": policy.objective.value if policy else None,
            "file": str(svc.policy.path),
            "error": svc.policy.error,
        },
        "energy_source": svc.energy.label,
        "energy": svc.energy.describe(),
        "environment": svc.environment_now(),
        "models": [{"name": m.name, "sha256": m.sha256, "remote_name": m.remote_name,
                    "input_shape": list(m.input_shape), "input_dtype": str(m.input_dtype)}
                   for m in svc.executor.models.values()] if svc.executor else [],
        "model_errors": dict(svc.model_errors),
        "targets": svc.describe_targets(),
        "degraded": svc.degraded_reasons(),
    }


def power_message(energy) -> dict:
    """The latest reading per rail and in total (W, and J for counters), with the source and whether known."""
    meter, problem = energy.meter, energy.unknown_reason()
    latest = meter.latest() if meter is not None and problem is None else None  # no stale watts when unknown
    rails = [] if latest is None else [{"rail": r.rail, "power_w": r.power_w, "energy_j": r.energy_j}
                                       for r in latest.rails]
    return {"source": energy.label, "known": problem is None, "problem": problem,
            "power_w": None if latest is None else latest.power_w, "rails": rails,
            "idle_power_w": energy.idle_power_w(IdleMode.LOW) if meter is not None else None}


def profile_message(profiles) -> dict:
    return {"profiles": [p.to_dict() for p in profiles]}


def decision_message(o: Outcome) -> dict:
    d = o.decision
    return {
        "seq": o.seq,
        "request_id": o.request_id,
        "model": o.model,
        "target": o.target,
        "decided_target": d.target,
        "fallback": o.fallback,
        "fallback_reason": o.fallback_reason,
        "objective": d.objective.value,
        "objective_fallback": d.objective_fallback,
        "deadline_ms": d.deadline_ms,
        "deadline_miss_predicted": d.deadline_miss,
        "deadline_met": o.deadline_met,
        "predicted_latency_ms": _finite(o.predicted_latency_ms),
        "actual_latency_ms": o.latency_ms,
        "energy_mj": o.energy_mj,
        "energy_source": o.energy_source,
        "reason": d.reason,
        "options": [prediction_dict(p) for p in d.predictions],
        "excluded": [{"target": t, "reason": r} for t, r in d.excluded],
        "started_utc": utc_iso(o.started_unix_s),
        "ended_utc": utc_iso(o.ended_unix_s),
    }


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None
