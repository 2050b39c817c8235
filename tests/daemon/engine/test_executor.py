"""The executor with fakes of our own interfaces: decision caching, fallback, timeouts from deadlines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgeoffload.config import parse_policy_text
from edgeoffload.decide.estimators import Epoch
from edgeoffload.decide.types import NETWORK_PROFILES, RemoteOption
from edgeoffload.config.power import ModelledPowerConfig
from edgeoffload.engine import executor as ex_mod
from edgeoffload.engine.energy import EnergyBook
from edgeoffload.engine.executor import Executor, ModelEntry, _timeout_s
from edgeoffload.errors import RequestError, TransportError
from edgeoffload.sensors.modelled import ModelledPower

SHAPE = (1, 4, 4, 3)


class FakeBackend:
    kind = "local"

    def __init__(self, name, available=True):
        self.name, self.available, self.unavailable_reason = name, available, None if available else "absent"
        self.calls = 0

    def loaded(self, model):
        return self.available

    def run(self, model, x):
        self.calls += 1
        return np.full((1, 3), 1 / 3, np.float32)


def energy_book():
    """The real EnergyBook over modelled figures: 3 W active, idle 1 W (low) / 2 W (high)."""
    return EnergyBook(ModelledPower(ModelledPowerConfig(idle_high_w=2.0, idle_low_w=1.0, default_active_w=3.0)))


@dataclass
class EndpointCfg:
    timeout_ms: float = 2000.0
    min_timeout_ms: float = 20.0


class FakeRemote:
    kind = "remote"

    def __init__(self, epoch, server_ms=1.0, fail=False):
        self.config, self.epoch, self.server_ms, self.fail = EndpointCfg(), epoch, server_ms, fail
        self.reachable, self.failures, self.timeouts = True, [], []

    def option(self, remote_model, shape, dtype):
        if not self.reachable:
            return "unreachable"
        return RemoteOption("gpu", NETWORK_PROFILES["5g"], self.server_ms, 48, 12)

    def infer(self, remote_model, x, *, timeout_s, request_id=None):
        self.timeouts.append(timeout_s)
        if self.fail:
            raise TransportError("connection refused")
        from edgeoffload.backends.remote import RemoteResult
        return RemoteResult({"y": np.ones((1, 3), np.float32)}, 100, 50, 3.0, self.server_ms, True)

    def mark_failed(self, reason):
        self.reachable = False
        self.failures.append(reason)


def make(policy_text="version: 1\nobjective: latency\n", remote_fail=False, local_ms=10.0):
    holder = {"policy": parse_policy_text(policy_text, "p.yaml")}
    local = {"cpu1": FakeBackend("cpu1"), "npu": FakeBackend("npu", available=False)}
    ex = Executor(models={"m": ModelEntry("m", "0" * 64, "m", SHAPE, np.dtype(np.uint8))}, local_targets=local,
                  remote_targets={}, energy=energy_book(), policy=lambda: holder["policy"])
    remote = FakeRemote(ex.epoch, fail=remote_fail)
    ex.remote["gpu"] = remote
    ex.seed_local("m", "cpu1", local_ms)
    return ex, local, remote, holder


def test_decisions_are_reused_until_something_changes(monkeypatch):
    ex, _, remote, holder = make()
    first = ex.decide("m")
    assert ex.decide("m") is first and ex.decisions_computed == 1
    remote.epoch.bump()  # an estimate moved materially
    assert ex.decide("m") is not first and ex.decisions_computed == 2
    holder["policy"] = parse_policy_text("version: 1\nobjective: energy\n", "p.yaml")
    assert ex.decide("m").objective.value == "energy"
    monkeypatch.setattr(ex_mod, "DECISION_REFRESH_S", 0.0)  # older than the refresh interval
    ex.decide("m")
    assert ex.decisions_computed == 4


def test_remote_is_chosen_and_run_with_a_timeout_from_the_deadline():
    ex, local, remote, _ = make("version: 1\nobjective: latency\ndefault_deadline_ms: 50\n")
    out = ex.run("m", np.zeros(SHAPE[1:], np.uint8))
    assert out.target == "gpu" and not out.fallback and local["cpu1"].calls == 0
    # deadline 50 ms minus the fastest local option (10 ms) = 40 ms for the offload
    assert remote.timeouts == [pytest.approx(0.040)]
    assert ("npu", "unavailable: absent") in out.decision.excluded


def test_a_failed_offload_falls_back_to_the_best_local_and_marks_the_endpoint():
    ex, local, remote, _ = make(remote_fail=True)
    out = ex.run("m", np.zeros(SHAPE, np.uint8))
    assert out.target == "cpu1" and out.fallback and "connection refused" in out.fallback_reason
    assert remote.failures == ["connection refused"] and local["cpu1"].calls == 1
    assert out.energy_mj > 0


def test_policy_allowing_only_an_unreachable_endpoint_still_answers_locally():
    ex, local, remote, _ = make("version: 1\nobjective: latency\nallowed_targets: [gpu]\n")
    remote.reachable = False
    out = ex.run("m", np.zeros(SHAPE, np.uint8))
    assert out.target == "cpu1" and out.fallback
    assert out.fallback_reason.startswith("ran locally: no usable target")


def test_bad_requests_name_the_model_and_shape():
    ex, *_ = make()
    with pytest.raises(RequestError, match="unknown model 'x'; configured models: m"):
        ex.run("x", np.zeros(SHAPE, np.uint8))
    with pytest.raises(RequestError, match=r"model m takes shape \[1, 4, 4, 3\], got \[2, 4, 4, 3\]"):
        ex.run("m", np.zeros((2, 4, 4, 3), np.uint8))


def test_timeout_is_clamped_to_the_endpoint_bounds():
    ex, *_ = make("version: 1\nobjective: latency\ndefault_deadline_ms: 12\n")
    d = ex.decide("m")
    assert _timeout_s(d, EndpointCfg()) == pytest.approx(0.020)  # 12 - 10 = 2 ms, raised to the 20 ms floor
    no_deadline = make()[0].decide("m")
    assert _timeout_s(no_deadline, EndpointCfg()) == 2.0


def test_epoch_is_shared():
    e = Epoch()
    e.bump()
    assert e.value == 1
