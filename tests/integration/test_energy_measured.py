"""Measured energy in the running daemon (issue 7): a copy of a sysfs fixture tree is the power source, with
a real mosquitto and real TFLite models. Power in a hwmon fixture tree is constant, so the energy of any
window is P x duration: the figures below are exact up to float rounding."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from energy_helpers import (  # noqa: E402
    BOARD_W, CHIP_DIR, RAILS_W, RAPL_ZONE, RaplRamp, Unplugged, energy_config, event, image, sysfs_copy, wait_until,
)
from loop_helpers import model_dir, write_config, write_policy  # noqa: E402

from edgeoffload.api import messages  # noqa: E402
from edgeoffload.decide.types import IdleMode  # noqa: E402
from edgeoffload.service import Service  # noqa: E402

TOPIC = "edgeoffload/v1/test-board/"
RAIL = "measured rail"
EXACT = 1e-9  # relative: constant power integrates exactly, up to float rounding
UNKNOWN = "energy unknown, energy/EDP decided on latency: power source measured rail: "
NO_CHANNEL = ("hwmon: no channel with power under {root}/class/hwmon; found: cpu_thermal (hwmon0): no power channels: "
              "is the driver (ina2xx, ina3221) loaded?")


@pytest.fixture
def models(tmp_path, tiny_models):
    return model_dir(tmp_path, tiny_models)


@pytest.fixture
def start_service(tmp_path, models, run_service):
    """``make(root, broker=None, kind="hwmon", model_names=None, power_interval_s=None, **config) -> Service``,
    started with `root` as its power source; stopped at teardown."""

    def make(root: Path, *, broker=None, kind: str = "hwmon", model_names=None, power_interval_s=None,
             **extra) -> Service:
        if broker is not None and power_interval_s is not None:
            extra["mqtt"] = {"host": broker[0], "port": broker[1], "summary_interval_s": 0.5, "keepalive_s": 5,
                             "power_interval_s": power_interval_s}
        overrides = energy_config(root, kind=kind, models=model_names, folder=models, **extra)
        svc = run_service(write_config(tmp_path, models, endpoint_url=None, broker=broker, **overrides))
        if broker is not None:
            assert svc.reporter.wait_connected(5)
        return svc

    return make


def energy_reasons(svc) -> list[str]:
    return [r for r in svc.degraded_reasons() if r.startswith("energy unknown")]


# --- 1. profiling with a rail ------------------------------------------------------------------------------
@pytest.mark.parametrize("tree", ["ina226", "ina3221"])
def test_profiles_decisions_and_idle_power_carry_what_the_rail_measured(tree, tmp_path, start_service, mosquitto,
                                                                        mqtt_probe):
    p_w = BOARD_W[tree]
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "#",))
    svc = start_service(sysfs_copy(tmp_path, tree), broker=(mosquitto.host, mosquitto.port),
                        model_names=["tiny_16", "tiny_q_16"])
    assert set(svc.profiles) == {("tiny_16", "cpu1"), ("tiny_q_16", "cpu1")}
    for prof in svc.profiles.values():
        e = prof.energy
        assert e["source"] == RAIL and e["method"] == "trapezoid"  # hwmon power, no energy*_input counter
        assert e["duration_s"] >= 0.5 and e["inferences"] >= 1 and e["samples"] >= 5
        assert e["total_energy_mj"] == pytest.approx(p_w * e["duration_s"] * 1e3 / e["inferences"], rel=EXACT)
        assert e["mean_power_w"] == pytest.approx(p_w, rel=EXACT)
        assert e["idle_power_w"] == pytest.approx(p_w, rel=EXACT) and e["idle_stdev_w"] == pytest.approx(0, abs=1e-9)
        assert e["active_energy_mj"] == pytest.approx(0, abs=1e-9)  # constant power: nothing above idle
        assert prof.power_w == pytest.approx(p_w, rel=EXACT) and prof.energy_source == RAIL
    assert svc.energy.idle_power_w(IdleMode.LOW) == pytest.approx(p_w, rel=EXACT)
    assert svc.energy.idle_label() == "measured rail (idle baseline)"

    probe.wait_for(TOPIC + "profile")  # the broker has it: one subscribing now gets it retained
    msg = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "profile",)).wait_for(TOPIC + "profile")
    assert msg.retained
    for p in msg.json()["profiles"]:
        mine = svc.profiles[(p["model"], p["target"])]
        assert p["energy_source"] == RAIL and p["energy"]["source"] == RAIL
        assert p["energy_mj"] == pytest.approx(mine.energy["total_energy_mj"], rel=EXACT)

    o = svc.infer("tiny_16", image())
    local = next(p for p in o.decision.predictions if p.kind == "local")
    assert local.breakdown["power_w"] == pytest.approx(p_w, rel=EXACT)
    assert local.energy_mj == pytest.approx(p_w * local.latency_ms, rel=EXACT)
    assert o.energy_source == RAIL and o.energy_mj == pytest.approx(p_w * o.latency_ms, rel=EXACT)
    decision = probe.wait_for(TOPIC + "decision").json()
    assert decision["energy_source"] == RAIL and decision["objective_fallback"] is None
    assert decision["options"][0]["target"] == "cpu1"
    assert decision["options"][0]["power_w"] == pytest.approx(p_w, rel=EXACT)


def test_decision_options_name_the_source_of_their_power(tmp_path, start_service):
    svc = start_service(sysfs_copy(tmp_path, "ina226"))
    [option] = messages.decision_message(svc.infer("tiny_16", image()))["options"]
    assert option["power_w"] == pytest.approx(BOARD_W["ina226"], rel=EXACT)
    assert option.get("energy_source") == RAIL


# --- 2. the rail vanishes mid-run, and returns ----------------------------------------------------------------
def test_a_vanished_rail_makes_energy_unknown_until_it_returns(tmp_path, start_service, mosquitto, mqtt_probe):
    write_policy(tmp_path / "policy.yaml", objective="energy")
    root = sysfs_copy(tmp_path, "ina226")
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "#",))
    svc = start_service(root, broker=(mosquitto.host, mosquitto.port))
    first = svc.decide("tiny_16")
    assert first.objective.value == "energy" and first.objective_fallback is None
    assert svc.degraded_reasons() == []

    chip = Unplugged(root, CHIP_DIR["ina226"]).unplug()
    lost = event(probe, "energy_unknown")
    assert lost["reason"] == f"{root}/{CHIP_DIR['ina226']}/power1_input: vanished (the sensor was removed or its " \
                             "driver unloaded)"
    status = probe.wait_for(TOPIC + "status", lambda m: any(r.startswith(UNKNOWN) for r in m.json()["degraded"]))
    assert status.json()["energy"]["known"] is False
    assert status.json()["degraded"] == [UNKNOWN + lost["reason"]]
    # Read again, the tree has no power channel left; the reason says where it looked.
    wait_until(lambda: energy_reasons(svc) == [UNKNOWN + NO_CHANNEL.format(root=root)], 2, "the rediscovery's reason")
    late = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "status",))
    retained = late.wait_for(TOPIC + "status", lambda m: m.retained).json()
    # the retained status follows the reason as it changes (a late subscriber sees the current one)
    assert retained["degraded"] == [UNKNOWN + NO_CHANNEL.format(root=root)] and not retained["energy"]["known"]

    o = svc.infer("tiny_16", image())
    assert o.decision.objective.value == "latency"
    assert o.decision.objective_fallback.startswith("energy unknown (power source measured rail: ")
    assert o.decision.objective_fallback.endswith("): energy decided on latency") and str(root) in \
        o.decision.objective_fallback
    decision = probe.wait_for(TOPIC + "decision", lambda m: m.json()["seq"] == o.seq).json()
    assert decision["objective"] == "latency" and decision["objective_fallback"] == o.decision.objective_fallback

    probe.clear()
    chip.plug()
    assert event(probe, "energy_known")["reason"] is None
    assert svc.degraded_reasons() == []
    assert probe.wait_for(TOPIC + "status", lambda m: m.json()["energy"]["known"] and not m.json()["degraded"])
    again = svc.infer("tiny_16", image(1))
    assert again.decision.objective.value == "energy" and again.decision.objective_fallback is None
    assert again.energy_source == RAIL


def test_a_vanished_power_file_is_read_again_as_bus_voltage_times_current(tmp_path, start_service, mosquitto,
                                                                        mqtt_probe):
    """The INA226's in1 (bus, mV) x curr1 (mA) is the same 6.26 W: one failed read, then known again."""
    root = sysfs_copy(tmp_path, "ina226")
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "events",))
    svc = start_service(root, broker=(mosquitto.host, mosquitto.port))
    assert svc.sensors()["channels"][0]["unit"] == "µW"
    (root / CHIP_DIR["ina226"] / "power1_input").unlink()
    assert "power1_input: vanished" in event(probe, "energy_unknown")["reason"]
    event(probe, "energy_known")
    [channel] = svc.sensors()["channels"]
    assert channel["rail"] == "ina226/1" and channel["unit"] == "mV×mA"
    assert channel["power_w"] == pytest.approx(5008 * 1250 / 1e6, rel=EXACT) == pytest.approx(6.26)


# --- 3. power messages ----------------------------------------------------------------------------------------
def test_power_messages_give_each_rail_and_the_board_and_say_when_unknown(tmp_path, start_service, mosquitto,
                                                                         mqtt_probe):
    root = sysfs_copy(tmp_path, "ina3221")
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "power",))
    start_service(root, broker=(mosquitto.host, mosquitto.port), power_interval_s=0.2)
    wait_until(lambda: len(probe.messages(TOPIC + "power")) >= 3, 3, "three power messages")
    body = probe.messages(TOPIC + "power")[-1].json()
    assert body["device_id"] == "test-board" and body["source"] == RAIL
    assert body["known"] is True and body["problem"] is None
    assert {r["rail"]: r["power_w"] for r in body["rails"]} == pytest.approx(RAILS_W["ina3221"], rel=EXACT)
    assert all(r["energy_j"] is None for r in body["rails"])
    assert body["power_w"] == pytest.approx(BOARD_W["ina3221"], rel=EXACT)
    assert body["idle_power_w"] == pytest.approx(BOARD_W["ina3221"], rel=EXACT)  # the profiling baseline

    Unplugged(root, CHIP_DIR["ina3221"]).unplug()
    gone = probe.wait_for(TOPIC + "power", lambda m: not m.json()["known"], 3).json()
    assert gone["source"] == RAIL
    assert gone["problem"].startswith("power source measured rail: ") and str(root) in gone["problem"]


def test_power_messages_carry_no_stale_watts_while_the_sensor_is_gone(tmp_path, start_service, mosquitto,
                                                                      mqtt_probe):
    root = sysfs_copy(tmp_path, "ina3221")
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "power",))
    start_service(root, broker=(mosquitto.host, mosquitto.port), power_interval_s=0.2)
    Unplugged(root, CHIP_DIR["ina3221"]).unplug()
    gone = probe.wait_for(TOPIC + "power", lambda m: not m.json()["known"], 3).json()
    assert gone["power_w"] is None and all(r["power_w"] is None for r in gone["rails"])


# --- 4. the decision log --------------------------------------------------------------------------------------
def wait_lines(path: Path, n: int) -> list[dict]:
    """The log's lines once it has `n` complete ones (the writer appends them off the request path)."""
    def complete() -> list[str] | None:
        text = path.read_text() if path.exists() else ""
        lines = text[:text.rfind("\n") + 1].splitlines()
        return lines if len(lines) >= n else None
    return [json.loads(line) for line in wait_until(complete, 5, f"{n} lines in {path}")]


def utc(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_the_decision_log_has_each_request_with_the_energy_of_its_own_window(tmp_path, start_service):
    p_w, log_file = BOARD_W["ina3221"], tmp_path / "log" / "decisions.jsonl"
    root = sysfs_copy(tmp_path, "ina3221")
    svc = start_service(root, logging={"decisions_file": str(log_file)})
    outcomes = [svc.infer("tiny_16", image(i)) for i in range(5)]
    lines = wait_lines(log_file, 5)
    assert [line["seq"] for line in lines] == [o.seq for o in outcomes] == [1, 2, 3, 4, 5]
    for line, o in zip(lines, outcomes):
        assert line["schema"] == 1 and line["model"] == "tiny_16" and line["target"] == "cpu1"
        assert (line["kind"], line["ok"], line["fallback"], line["marker"]) == ("local", True, False, False)
        assert line["start_unix_s"] == o.started_unix_s and line["end_unix_s"] == o.ended_unix_s
        assert line["start_utc"] == utc(o.started_unix_s) and line["end_utc"] == utc(o.ended_unix_s)
        assert line["latency_ms"] == o.latency_ms and line["energy_source"] == RAIL
        assert line["energy_mj_estimated"] == pytest.approx(p_w * o.latency_ms, rel=EXACT)
        measured = line["energy_measured"]
        assert measured["source"] == RAIL and measured["method"] == "trapezoid"
        assert measured["mean_power_w"] == pytest.approx(p_w, rel=EXACT)
        assert measured["total_energy_mj"] == pytest.approx(p_w * (o.mono_end_s - o.mono_start_s) * 1e3, rel=EXACT)
        # latency_ms (perf_counter) lies inside the monotonic window, a few clock reads shorter
        window_ms = measured["total_energy_mj"] / p_w
        assert o.latency_ms <= window_ms + 1e-6 and window_ms - o.latency_ms < 5.0
        assert measured["active_energy_mj"] == pytest.approx(0, abs=1e-9)

    Unplugged(root, CHIP_DIR["ina3221"]).unplug()
    wait_until(svc.energy.unknown_reason, 2, "energy unknown")
    svc.infer("tiny_16", image(9))
    lines = wait_lines(log_file, 6)
    assert len(lines) == 6 and lines[-1]["seq"] == 6 and lines[-1]["energy_measured"] is None
    assert lines[-1]["energy_problem"].startswith("no reading after the request (") and str(root) in \
        lines[-1]["energy_problem"]


# --- 5. RAPL: a counter only -----------------------------------------------------------------------------------
def test_rapl_profiles_take_energy_from_the_counter_across_its_wrap(tmp_path, start_service):
    root = sysfs_copy(tmp_path, "rapl")
    with RaplRamp(root, RAPL_ZONE, power_w=10.0) as ramp:  # 328850 uJ below the wrap: wraps after 33 ms
        svc = start_service(root, kind="rapl", energy_duration_s=1.0)
        assert ramp.wraps == 1
        [prof] = svc.profiles.values()
    e = prof.energy
    assert e["source"] == RAIL and e["method"] == "accumulator"
    # The file steps every millisecond and is read at 100 Hz: a few ms of 10 W against a 1 s run.
    assert e["total_energy_mj"] == pytest.approx(10.0 * e["duration_s"] * 1e3 / e["inferences"], rel=0.05)
    assert e["mean_power_w"] == pytest.approx(10.0, rel=0.05) and e["idle_power_w"] == pytest.approx(10.0, rel=0.05)
    assert prof.energy_source == RAIL and prof.power_w == e["mean_power_w"]
    assert svc.sensors()["channels"][0]["rail"] == "package-0"


# --- 6. a power source absent at start --------------------------------------------------------------------------
def test_a_rail_absent_at_start_is_found_when_its_driver_loads(tmp_path, start_service, mosquitto, mqtt_probe):
    root = sysfs_copy(tmp_path, "ina226")
    chip = Unplugged(root, CHIP_DIR["ina226"]).unplug()
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "#",))
    svc = start_service(root, broker=(mosquitto.host, mosquitto.port))
    assert svc.state == "running"
    assert energy_reasons(svc) == [UNKNOWN + NO_CHANNEL.format(root=root)]
    status = probe.wait_for(TOPIC + "status", lambda m: m.json()["state"] == "running").json()
    assert status["degraded"] == energy_reasons(svc) and status["energy"]["known"] is False
    [prof] = svc.profiles.values()
    assert prof.energy is None and prof.energy_source == "modelled"  # no meter reading: the modelled figure

    chip.plug()
    assert event(probe, "energy_known")["reason"] is None
    assert svc.degraded_reasons() == [] and svc.energy.meter.known
    [channel] = svc.sensors()["channels"]
    assert channel["rail"] == "ina226/1" and channel["power_w"] == pytest.approx(6.26, rel=EXACT)
    o = svc.infer("tiny_16", image())
    assert o.energy_source == "measured rail (live, not profiled)"
    assert o.energy_mj == pytest.approx(6.26 * o.latency_ms, rel=EXACT)
