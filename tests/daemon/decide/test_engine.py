"""The decision rule on hand-built snapshots."""

import math

from edgeoffload.decide.engine import decide
from edgeoffload.decide.types import NETWORK_PROFILES, DecisionRequest, LocalOption, Objective, RemoteOption

ETH = NETWORK_PROFILES["ethernet"]


def request(objective=Objective.LATENCY, deadline_ms=None, local=None, remote=None, **kw):
    local = local if local is not None else (LocalOption("cpu1", 40.0, 3.0), LocalOption("npu", 5.0, 3.5))
    remote = remote if remote is not None else (RemoteOption("gpu", ETH, 1.0, 3072, 400),)
    return DecisionRequest("m", objective, deadline_ms, 1.0, tuple(local), tuple(remote), **kw)


def test_latency_objective_picks_the_fastest_and_ranks_every_option():
    d = decide(request())
    assert d.target == "npu"
    assert [p.target for p in d.predictions] == ["npu", "gpu", "cpu1"]
    assert not d.deadline_miss
    assert d.reason.startswith("npu: lowest latency (5.0 ms)")


def test_offload_wins_when_local_exceeds_the_threshold():
    d = decide(request(local=(LocalOption("cpu1", 40.0, 3.0),)))
    assert d.target == "gpu"   # 22 ms offloaded vs 40 ms local: the study's ~31 ms Ethernet threshold
    assert d.chosen.kind == "remote"


def test_energy_objective_can_prefer_a_slower_target():
    # Offload: 22.07 ms at 1 W idle ≈ 22.3 mJ; local cpu1: 25 ms at 3 W = 75 mJ; npu 10 ms at 3.5 W = 35 mJ.
    d = decide(request(Objective.ENERGY, local=(LocalOption("cpu1", 25.0, 3.0), LocalOption("npu", 10.0, 3.5))))
    assert d.target == "gpu"
    d = decide(request(Objective.LATENCY, local=(LocalOption("cpu1", 25.0, 3.0), LocalOption("npu", 10.0, 3.5))))
    assert d.target == "npu"


def test_edp_objective():
    # npu: 10 ms · 35 mJ = 350; gpu: 22.07 · 22.29 ≈ 492; cpu1 25 · 75 = 1875
    d = decide(request(Objective.EDP, local=(LocalOption("cpu1", 25.0, 3.0), LocalOption("npu", 10.0, 3.5))))
    assert d.target == "npu"
    assert d.reason.startswith("npu: lowest edp")


def test_deadline_excludes_the_cheaper_option():
    local = (LocalOption("cpu1", 25.0, 3.0),)
    assert decide(request(Objective.ENERGY, local=local)).target == "gpu"
    d = decide(request(Objective.ENERGY, deadline_ms=21.0, local=(LocalOption("cpu1", 20.0, 3.0),)))
    assert d.target == "cpu1" and not d.deadline_miss
    assert "within the 21 ms deadline" in d.reason


def test_no_option_meets_the_deadline_then_the_fastest_is_flagged_a_miss():
    d = decide(request(Objective.ENERGY, deadline_ms=3.0))
    assert d.target == "npu"
    assert d.deadline_miss
    assert "deadline miss" in d.reason
    assert d.predictions[0].target == "npu"


def test_never_offload_removes_remote_options_with_a_reason():
    d = decide(request(local=(LocalOption("cpu1", 40.0, 3.0),), never_offload=True))
    assert d.target == "cpu1"
    assert ("gpu", "policy never offloads m") in d.excluded


def test_allowed_targets_and_unusable_estimates():
    d = decide(request(allowed_targets=frozenset({"cpu1", "gpu"}),
                       local=(LocalOption("cpu1", 40.0, 3.0), LocalOption("npu", math.nan, 3.5))))
    assert d.target == "gpu"
    assert ("npu", "not in the policy's allowed_targets") in d.excluded


def test_nan_estimates_are_excluded_not_chosen():
    d = decide(request(local=(LocalOption("cpu1", 40.0, 3.0), LocalOption("npu", math.nan, 3.5)), remote=()))
    assert d.target == "cpu1"
    assert ("npu", "no usable latency or power estimate") in d.excluded


def test_nothing_available_gives_no_target_and_says_why():
    d = decide(request(local=(), remote=(), excluded=(("npu", "delegate not found"),)))
    assert d.target is None and d.deadline_miss
    assert d.reason == "no usable target: npu delegate not found"


def test_unknown_energy_decides_energy_and_edp_on_latency_and_says_why():
    local = (LocalOption("cpu1", 25.0, 3.0), LocalOption("npu", 10.0, 3.5))
    assert decide(request(Objective.ENERGY, local=local)).target == "gpu"  # energy known: the offload
    why = "hwmon: /sys/class/hwmon/hwmon2/power1_input: vanished"
    for objective in (Objective.ENERGY, Objective.EDP):
        d = decide(request(objective, local=local, energy_unknown=why))
        assert d.target == "npu" and d.objective is Objective.LATENCY
        assert d.objective_fallback == f"energy unknown ({why}): {objective.value} decided on latency"
        assert d.reason.startswith("npu: lowest latency (10.0 ms)") and d.reason.endswith(f"({d.objective_fallback})")
    d = decide(request(Objective.LATENCY, local=local, energy_unknown=why))
    assert d.objective_fallback is None and d.reason.startswith("npu: lowest latency")


def test_unknown_energy_with_no_usable_target_still_says_both():
    d = decide(request(Objective.ENERGY, local=(), remote=(), energy_unknown="no reading yet"))
    assert d.target is None and d.objective_fallback.startswith("energy unknown (no reading yet)")
    assert d.reason.startswith("no usable target") and "decided on latency" in d.reason
