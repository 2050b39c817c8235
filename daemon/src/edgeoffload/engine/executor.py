"""One inference request end to end: snapshot the estimates, decide, run, measure, feed the estimates back.

An offload that fails or times out falls back to the best local target of the same decision; the request
is answered either way and the outcome records the fallback.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgeoffload.decide.engine import decide
from edgeoffload.decide.estimators import Epoch, Ewma, moved
from edgeoffload.decide.types import Decision, DecisionRequest, LocalOption, Prediction
from edgeoffload.errors import BackendError, RequestError, TransportError, UnknownModelError
from edgeoffload.sensors.gpio_marker import NullMarker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    """A loaded model as the executor needs it."""

    name: str
    sha256: str
    remote_name: str
    input_shape: tuple[int, ...]
    input_dtype: np.dtype


@dataclass(frozen=True)
class Outcome:
    """What actually happened to one request."""

    seq: int
    request_id: str
    model: str
    decision: Decision
    target: str
    fallback: bool
    fallback_reason: str | None
    latency_ms: float
    energy_mj: float
    energy_source: str
    output: np.ndarray
    started_unix_s: float
    ended_unix_s: float
    # The same interval on the monotonic clock (power meters time their readings with it), and whether the
    # GPIO marker line was high during it.
    mono_start_s: float = float("nan")
    mono_end_s: float = float("nan")
    marked: bool = False

    @property
    def deadline_met(self) -> bool | None:
        d = self.decision.deadline_ms
        return None if d is None else self.latency_ms <= d

    @property
    def predicted_latency_ms(self) -> float:
        chosen = next((p for p in self.decision.predictions if p.target == self.target), None)
        return chosen.latency_ms if chosen else float("nan")


# Per-request local timings are noisy (scheduling, caches); a slow average follows real shifts (thermal
# throttling, contention) within tens of requests without chasing the noise of single runs.
LOCAL_ALPHA = 0.05
LOCAL_CLIP = 2.0  # one outlier run moves the estimate by at most 5 %
# A cached decision is also refreshed after this long, so drift below the tolerance is never ignored.
DECISION_REFRESH_S = 0.1


class Executor:
    """Thread-safe: D-Bus and the workload runner may call `run` at the same time.

    Decisions are memoised per (model, input shape) and stamped with the epoch (bumped by everything they
    depend on) and the policy in force, so the per-request cost is a dictionary lookup unless something
    material changed or the decision is older than DECISION_REFRESH_S.
    """

    def __init__(self, *, models, local_targets, remote_targets, energy, policy: Callable[[], object],
                 on_outcome: Callable[[Outcome], None] | None = None, marker=None) -> None:
        self.models: dict[str, ModelEntry] = models
        self.local = local_targets      # name -> backend (kind "local")
        self.remote = remote_targets    # name -> RemoteTarget
        self.energy = energy            # engine.energy.EnergyBook: power figures and their sources
        self.marker = marker or NullMarker()  # a GPIO line high while a request executes (Joulescope GPI)
        self.policy = policy
        self.on_outcome = on_outcome
        self._local_ms: dict[tuple[str, str], Ewma] = {}
        self._local_used: dict[tuple[str, str], tuple[float]] = {}  # what cached decisions were made with
        self.epoch = Epoch()  # shared with the remote targets (see service.py)
        self._cache: dict[tuple[str, tuple[int, ...]], tuple[int, object, float, Decision]] = {}
        self.decisions_computed = 0  # cache misses: decisions worked out afresh
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def seed_local(self, model: str, target: str, latency_ms: float) -> None:
        """Start the local latency estimate from a profile (measured runs refine it)."""
        with self._lock:
            e = self._local_ms[(model, target)] = Ewma(LOCAL_ALPHA, clip=LOCAL_CLIP)
            e.update(latency_ms)
            self._local_used[(model, target)] = (latency_ms,)
            self.epoch.bump()

    # --- deciding --------------------------------------------------------------------------------
    def decide(self, model: str, x_shape: tuple[int, ...] | None = None) -> Decision:
        entry = self._entry(model)
        key = (model, x_shape or entry.input_shape)
        epoch, policy, now = self.epoch.value, self.policy(), time.monotonic()
        cached = self._cache.get(key)
        if (cached is not None and cached[0] == epoch and cached[1] is policy
                and now - cached[2] < DECISION_REFRESH_S):
            return cached[3]
        decision = decide(self._snapshot(entry, key[1]))
        self._cache[key] = (epoch, policy, now, decision)
        self.decisions_computed += 1
        return decision

    def _entry(self, model: str) -> ModelEntry:
        entry = self.models.get(model)
        if entry is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise UnknownModelError(f"unknown model {model!r}; configured models: {known}")
        return entry

    def _snapshot(self, entry: ModelEntry, x_shape: tuple[int, ...]) -> DecisionRequest:
        policy = self.policy()
        excluded: list[tuple[str, str]] = []
        remote = []  # endpoint problems first: they are the likeliest and the most actionable
        for name, target in self.remote.items():
            opt = target.option(entry.remote_name, x_shape, entry.input_dtype)
            if isinstance(opt, str):
                excluded.append((name, opt))
            else:
                remote.append(opt)
        local = []
        for name, backend in self.local.items():
            est = self._local_ms.get((entry.name, name))
            if not backend.available:
                excluded.append((name, f"unavailable: {backend.unavailable_reason}"))
            elif est is None or est.value is None:
                excluded.append((name, f"{entry.name} not loaded or not profiled here"))
            else:
                figure = self.energy.local(entry.name, name)
                local.append(LocalOption(name, est.value, figure.power_w, figure.label))
        allowed = frozenset(policy.allowed_targets) if policy.allowed_targets is not None else None
        return DecisionRequest(entry.name, policy.objective, policy.deadline_for(entry.name),
                               self.energy.idle_power_w(policy.idle_mode), tuple(local), tuple(remote),
                               entry.name in policy.never_offload, allowed, tuple(excluded),
                               self.energy.unknown_reason())

    # --- running ---------------------------------------------------------------------------------
    def run(self, model: str, x: np.ndarray, *, request_id: str | None = None) -> Outcome:
        entry = self._entry(model)
        x = _check_input(entry, x)
        decision = self.decide(model, tuple(x.shape))
        request_id = request_id or uuid.uuid4().hex[:16]
        with self.marker.mark() as marked:
            started, mono0 = time.time(), time.monotonic()
            t0 = time.perf_counter()
            if decision.target is None:  # nothing the policy allows is usable: answer locally rather than fail
                target, output = self._run_first_local(entry, x, decision)
                fallback_reason, extra_mj = f"ran locally: {decision.reason}", 0.0
            else:
                target, output, fallback_reason, extra_mj = self._execute(entry, x, decision, request_id)
            latency_ms = (time.perf_counter() - t0) * 1000.0
            ended, mono1 = time.time(), time.monotonic()
        energy_mj, energy_source = self._energy(model, target, latency_ms, extra_mj)
        outcome = Outcome(next(self._seq), request_id, model, decision, target, fallback_reason is not None,
                          fallback_reason, latency_ms, energy_mj, energy_source, output, started, ended,
                          mono0, mono1, marked)
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:  # reporting must never lose an answered request
                log.exception("reporting outcome %s failed", outcome.request_id)
        return outcome

    def _execute(self, entry: ModelEntry, x: np.ndarray, decision: Decision, request_id: str):
        chosen = decision.chosen
        if chosen.kind == "remote":
            t0 = time.perf_counter()
            try:
                return chosen.target, self._run_remote(entry, x, decision, request_id), None, 0.0
            except TransportError as exc:
                waited_ms = (time.perf_counter() - t0) * 1000.0
                reason = f"offload to {chosen.target} failed: {exc}"
                self.remote[chosen.target].mark_failed(str(exc))
                log.warning("%s; falling back to local", reason)
                extra_mj = waited_ms * self.energy.idle_power_w(self.policy().idle_mode)
                target, out = self._run_first_local(entry, x, decision)
                return target, out, reason, extra_mj
        return chosen.target, self._run_local(entry, chosen.target, x), None, 0.0

    def _run_remote(self, entry: ModelEntry, x: np.ndarray, decision: Decision, request_id: str) -> np.ndarray:
        target = self.remote[decision.target]
        timeout_s = _timeout_s(decision, target.config)
        result = target.infer(entry.remote_name, x, timeout_s=timeout_s, request_id=request_id)
        first = next(iter(result.outputs.values()))
        return np.asarray(first, dtype=np.float32)

    def _run_first_local(self, entry: ModelEntry, x: np.ndarray, decision: Decision):
        for p in decision.predictions:
            if p.kind == "local":
                return p.target, self._run_local(entry, p.target, x)
        for name, backend in self.local.items():  # policy left no local option in the ranking
            if backend.available and backend.loaded(entry.name):
                return name, self._run_local(entry, name, x)
        raise BackendError(f"no local target can run {entry.name} and offloading is not possible: {decision.reason}")

    def _run_local(self, entry: ModelEntry, target: str, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.local[target].run(entry.name, x)
        key = (entry.name, target)
        with self._lock:
            value = self._local_ms.setdefault(key, Ewma(LOCAL_ALPHA, clip=LOCAL_CLIP)).update((time.perf_counter() - t0) * 1000.0)
            if moved((value,), self._local_used.get(key)):
                self._local_used[key] = (value,)
                self.epoch.bump()
        return out

    def _energy(self, model: str, target: str, latency_ms: float, extra_mj: float) -> tuple[float, str]:
        """Estimated device energy of an executed request (mJ) and its source: power figure × latency. The
        decision log adds the meter's measurement of the request's own window (engine/decision_log.py)."""
        if target in self.remote:
            idle_w = self.energy.idle_power_w(self.policy().idle_mode)
            return latency_ms * idle_w + extra_mj, self.energy.idle_label()
        figure = self.energy.local(model, target)
        return latency_ms * figure.power_w + extra_mj, figure.label


def _check_input(entry: ModelEntry, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    shape = tuple(entry.input_shape)
    if tuple(x.shape) == shape[1:] and shape[:1] == (1,):
        x = x.reshape(shape)
    if tuple(x.shape) != shape:
        raise RequestError(f"model {entry.name} takes shape {list(shape)}, got {list(x.shape)}")
    return x


def _timeout_s(decision: Decision, endpoint) -> float:
    """Deadline minus the fastest local option, so a fallback can still make it; clamped to the endpoint's bounds."""
    if decision.deadline_ms is None:
        return endpoint.timeout_ms / 1000.0
    local = [p.latency_ms for p in decision.predictions if p.kind == "local"]
    budget_ms = decision.deadline_ms - (min(local) if local else 0.0)
    return min(max(budget_ms, endpoint.min_timeout_ms), endpoint.timeout_ms) / 1000.0


def prediction_dict(p: Prediction) -> dict:
    return {"target": p.target, "kind": p.kind, "latency_ms": p.latency_ms, "energy_mj": p.energy_mj,
            "edp_mj_ms": p.edp_mj_ms, "meets_deadline": p.meets_deadline, "energy_source": p.energy_source,
            **p.breakdown}
