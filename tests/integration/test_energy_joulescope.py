"""Energy from a Joulescope in the running daemon (`power: {type: joulescope}`).

The real bridge (`edgeoffload-host joulescope`) runs a synthetic instrument (joulescope_helpers.SteadyJoulescope)
that hands it joulescope 1.5.0's statistics dicts for a board drawing a constant 3.2 W, 20 times a second,
with the energy accumulator growing by 3.2 W x 50 ms each time; the bridge publishes them through a real
mosquitto and an in-process Service with real TFLite models reads them.

Tolerance. The reader stamps each statistics message with its arrival on the board's monotonic clock, and
the meter interpolates the accumulator linearly between those stamps. An edge of a window is then off by the
power times the arrival jitter of the messages around it, under half a statistics period (25 ms) even on a
loaded machine, so both edges together stay within one period's energy: |E - P x D| < P x PERIOD_S, that is
rel = PERIOD_S / D (5 % over the 1 s runs here; one message too many or too few would be 5 % or more).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from energy_helpers import event, image, wait_until  # noqa: E402
from joulescope_helpers import PERIOD_S, POWER_W, TOPIC, RunningBridge, joulescope_overrides  # noqa: E402
from loop_helpers import model_dir, write_config, write_policy  # noqa: E402

from edgeoffload.decide.types import IdleMode  # noqa: E402
from edgeoffload.service import Service  # noqa: E402

DEVICE_TOPIC = "edgeoffload/v1/test-board/"
SOURCE = "joulescope"
INSTRUMENT = "JS220-000042"  # SteadyJoulescope's name
ENERGY_S, IDLE_S, STALE_S = 1.0, 1.0, 0.5
UNKNOWN = "energy unknown, energy/EDP decided on latency: power source joulescope: "
SILENT = re.compile(rf"no Joulescope statistics on {re.escape(TOPIC)} for (\d+\.\d) s \(the bridge said 'stopped'\): "
                    r"is edgeoffload-host joulescope running\?")


@pytest.fixture
def bridges(mosquitto):
    """``start(**kwargs) -> RunningBridge`` on the test's broker; every bridge still running is stopped at teardown."""
    started: list[RunningBridge] = []

    def start(**kwargs) -> RunningBridge:
        started.append(RunningBridge(mosquitto, **kwargs))
        return started[-1]

    yield start
    for bridge in started:
        if bridge.running:
            bridge.stop()


@pytest.fixture
def start_service(tmp_path, tiny_models, mosquitto, run_service):
    """``make(**overrides) -> Service`` reading the Joulescope through the test's broker; stopped at teardown."""
    models = model_dir(tmp_path, tiny_models)

    def make(**extra) -> Service:
        overrides = {**joulescope_overrides(models, stale_after_s=STALE_S, energy_duration_s=ENERGY_S,
                                            idle_baseline_s=IDLE_S), **extra}
        path = write_config(tmp_path, models, endpoint_url=None, broker=(mosquitto.host, mosquitto.port), **overrides)
        svc = run_service(path)
        assert svc.reporter.wait_connected(5)
        return svc

    return make


def energy_known(svc) -> bool:
    return svc.energy.unknown_reason() is None


# --- 1. profiling from the accumulator ---------------------------------------------------------------------
def test_profiles_decisions_and_status_carry_what_the_joulescope_measured(bridges, start_service, mosquitto,
                                                                          mqtt_probe):
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(DEVICE_TOPIC + "#",))
    bridges()
    probe.wait_for(TOPIC)
    svc = start_service()
    wait_until(lambda: energy_known(svc), 3, "the first Joulescope reading")
    # Profiled on demand, with readings flowing: profiling at start does not wait for the first reading
    # (test_profiling_at_start_waits_for_the_first_joulescope_reading).
    [prof] = svc.profile(force=True)

    e = prof.energy
    assert e["source"] == SOURCE and e["method"] == "accumulator"  # every reading in the run had energy_j
    assert e["duration_s"] >= ENERGY_S and e["inferences"] >= 1 and e["samples"] >= 5
    rel = PERIOD_S / e["duration_s"]
    assert e["total_energy_mj"] == pytest.approx(POWER_W * e["duration_s"] * 1e3 / e["inferences"], rel=rel)
    assert e["mean_power_w"] == pytest.approx(e["total_energy_mj"] * e["inferences"] / 1e3 / e["duration_s"])
    assert e["mean_power_w"] == pytest.approx(POWER_W, rel=rel)
    assert e["idle_power_w"] == pytest.approx(POWER_W, rel=PERIOD_S / IDLE_S)
    assert e["idle_stdev_w"] == pytest.approx(0, abs=1e-9)  # every statistics message said 3.2 W
    # constant power: nothing above idle, up to one period's energy over the whole run
    assert abs(e["active_energy_mj"] * e["inferences"]) < POWER_W * PERIOD_S * 1e3
    assert prof.energy_source == SOURCE and prof.power_w == e["mean_power_w"]
    assert svc.energy.idle_power_w(IdleMode.LOW) == e["idle_power_w"]
    assert svc.energy.idle_label() == "joulescope (idle baseline)"

    # The reading is the instrument's: its power and its accumulator, as the bridge published them.
    [channel] = wait_until(lambda: svc.sensors()["channels"], 2, "the Joulescope channel")
    assert (channel["source"], channel["chip"], channel["rail"], channel["path"]) == (SOURCE, INSTRUMENT, SOURCE,
                                                                                      TOPIC)
    assert channel["power_w"] == pytest.approx(POWER_W)
    published = {m.json()["energy_j"] for m in probe.messages(TOPIC)}
    assert channel["energy_j"] in published

    o = svc.infer("tiny_16", image())
    [local] = [p for p in o.decision.predictions if p.kind == "local"]
    assert local.energy_source == SOURCE and local.breakdown["power_w"] == prof.power_w
    assert o.energy_source == SOURCE and o.energy_mj == pytest.approx(prof.power_w * o.latency_ms)
    decision = probe.wait_for(DEVICE_TOPIC + "decision", lambda m: m.json()["seq"] == o.seq).json()
    assert decision["energy_source"] == SOURCE and decision["objective_fallback"] is None
    assert [(opt["target"], opt["energy_source"]) for opt in decision["options"]] == [("cpu1", SOURCE)]

    status = probe.wait_for(DEVICE_TOPIC + "status", lambda m: m.json()["state"] == "running").json()
    assert status["energy_source"] == SOURCE and status["degraded"] == []
    assert (status["energy"]["label"], status["energy"]["known"], status["energy"]["problem"]) == (SOURCE, True, None)
    assert status["energy"]["meter"]["known"] is True
    profile = probe.wait_for(DEVICE_TOPIC + "profile",
                             lambda m: m.json()["profiles"][0]["energy_source"] == SOURCE).json()
    assert profile["profiles"][0]["energy"]["method"] == "accumulator"


# --- 2. the bridge stops, and runs again -------------------------------------------------------------------
def test_silent_statistics_make_energy_unknown_until_a_bridge_runs_again(tmp_path, bridges, start_service,
                                                                         mosquitto, mqtt_probe):
    write_policy(tmp_path / "policy.yaml", objective="energy")
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(DEVICE_TOPIC + "#",))
    first = bridges()
    probe.wait_for(TOPIC)
    svc = start_service()
    wait_until(lambda: energy_known(svc), 3, "the first Joulescope reading")
    before = svc.decide("tiny_16")
    assert before.objective.value == "energy" and before.objective_fallback is None

    first.stop()
    lost_msg = probe.wait_for(DEVICE_TOPIC + "events", lambda m: m.json()["event"] == "energy_unknown", 3)
    silent_s = lost_msg.received_monotonic - probe.messages(TOPIC)[-1].received_monotonic
    assert silent_s > STALE_S - PERIOD_S  # not before stale_after_s of silence (arrival stamps differ by < 50 ms)
    lost = lost_msg.json()
    assert SILENT.fullmatch(lost["reason"]), lost["reason"]
    assert float(SILENT.fullmatch(lost["reason"]).group(1)) >= STALE_S
    status = probe.wait_for(DEVICE_TOPIC + "status", lambda m: not m.json()["energy"]["known"]).json()
    assert status["energy"]["label"] == SOURCE
    [reason] = status["degraded"]
    assert reason.startswith(UNKNOWN) and SILENT.fullmatch(reason[len(UNKNOWN):]), reason
    assert status["energy"]["problem"] == reason[len("energy unknown, energy/EDP decided on latency: "):]

    for objective in ("energy", "edp"):
        svc.set_policy(write_policy(tmp_path / f"{objective}.yaml", objective=objective).read_text())
        o = svc.infer("tiny_16", image())
        assert o.decision.objective.value == "latency", objective
        fallback = o.decision.objective_fallback
        assert fallback.startswith(f"energy unknown (power source joulescope: no Joulescope statistics on {TOPIC} ")
        assert fallback.endswith(f"is edgeoffload-host joulescope running?): {objective} decided on latency")
        decision = probe.wait_for(DEVICE_TOPIC + "decision", lambda m: m.json()["seq"] == o.seq).json()
        assert decision["objective"] == "latency" and decision["objective_fallback"] == fallback
    counter_j = svc.energy.meter.latest().energy_j

    probe.clear()
    bridges()  # a new bridge run: the instrument's accumulator starts again from zero
    assert event(probe, "energy_known")["reason"] is None
    status = probe.wait_for(DEVICE_TOPIC + "status", lambda m: m.json()["energy"]["known"]).json()
    assert status["degraded"] == [] and status["energy"]["problem"] is None and status["energy"]["label"] == SOURCE
    again = svc.decide("tiny_16")
    assert again.objective.value == "edp" and again.objective_fallback is None
    assert svc.energy.meter.latest().energy_j > counter_j  # the daemon's counter continues across bridge runs


# --- 3. profiling at start ---------------------------------------------------------------------------------
def test_profiling_at_start_waits_for_the_first_joulescope_reading(bridges, start_service, mosquitto, mqtt_probe):
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC,))
    bridges()
    probe.wait_for(TOPIC)  # the bridge is publishing before the daemon starts, as on a bench
    svc = start_service()
    [prof] = svc.profiles.values()
    assert prof.energy_source == SOURCE
    assert prof.energy is not None and prof.energy["method"] == "accumulator"
