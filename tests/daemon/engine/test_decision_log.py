"""The decision log: one JSON line per executed request (format A), with the meter's window energy and, for a
request the GPIO marker framed, the Joulescope bridge's sample-accurate GPI window."""

from __future__ import annotations

import json
import time

import numpy as np

from edgeoffload.api.mqtt_payloads import device_topic
from edgeoffload.config.daemon import MqttConfig
from edgeoffload.config.power import JoulescopePowerConfig
from edgeoffload.decide.types import Decision, Objective, Prediction
from edgeoffload.engine import decision_log
from edgeoffload.engine.decision_log import DecisionLog
from edgeoffload.engine.executor import Outcome
from edgeoffload.sensors.joulescope import JoulescopePower
from edgeoffload.sensors.meter import Meter
from edgeoffload.sensors.registry import RetryingReader

TOPIC = device_topic("dev-1", "power/joulescope")


def outcome(seq: int, start: float, end: float, *, marked: bool) -> Outcome:
    pred = Prediction("npu", "local", 7.0, 25.0, True, {"power_w": 3.6}, "joulescope")
    decision = Decision("m", "npu", Objective.ENERGY, None, False, (pred,))
    return Outcome(seq, f"r{seq}", "m", decision, "npu", False, None, (end - start) * 1e3, 25.2, "joulescope",
                   np.zeros((1, 3), np.float32), start, end, marked=marked)


def window(seq: int, start: float, end: float, energy_mj: float) -> bytes:
    return json.dumps({"schema": 1, "gpi": 0, "start_utc": "x", "end_utc": "y", "start_unix_s": start,
                       "end_unix_s": end, "sample_id_start": seq * 1000, "sample_id_end": seq * 1000 + 7000,
                       "duration_ms": (end - start) * 1e3, "energy_mj": energy_mj, "mean_power_w": 3.6,
                       "seq": seq}).encode()


def make_log(tmp_path):
    reader = JoulescopePower(JoulescopePowerConfig(type="joulescope"), MqttConfig(), "dev-1", connect=False)
    meter = Meter(RetryingReader(lambda: reader, reader.label), sample_hz=10)
    log = DecisionLog(tmp_path / "state" / "decisions.jsonl", meter=meter)
    log.start()
    return log, reader


def lines(log: DecisionLog) -> list[dict]:
    log.stop()
    return [json.loads(line) for line in log.path.read_text().splitlines()]


def test_a_marked_request_gets_its_gpi_window_and_an_unmarked_one_does_not(tmp_path):
    log, reader = make_log(tmp_path)
    reader.handle(f"{TOPIC}/window", window(1, 1000.000, 1000.007, 25.3))
    log.add(outcome(1, 1000.001, 1000.008, marked=True))
    log.add(outcome(2, 1000.001, 1000.008, marked=False))
    first, second = lines(log)
    assert first["schema"] == 1 and first["seq"] == 1 and first["marker"] is True
    assert first["energy_gpi_window"]["energy_mj"] == 25.3 and first["energy_gpi_window"]["seq"] == 1
    assert second["marker"] is False and "energy_gpi_window" not in second
    assert first["start_utc"].endswith("Z") and first["energy_source"] == "joulescope"


def test_a_window_that_arrives_late_is_waited_for(tmp_path):
    log, reader = make_log(tmp_path)
    log.add(outcome(1, 2000.0, 2000.007, marked=True))
    time.sleep(0.1)  # the bridge publishes a marked window tens of ms after its falling edge
    reader.handle(f"{TOPIC}/window", window(7, 2000.0, 2000.007, 24.9))
    assert lines(log)[0]["energy_gpi_window"]["energy_mj"] == 24.9


def test_without_windows_the_log_stops_waiting_and_keeps_up(tmp_path, monkeypatch):
    monkeypatch.setattr(decision_log, "GPI_WAIT_S", 0.2)
    log, _ = make_log(tmp_path)
    t0 = time.monotonic()
    for i in range(10):
        log.add(outcome(i + 1, 3000.0 + i, 3000.007 + i, marked=True))
    written = lines(log)
    elapsed = time.monotonic() - t0
    assert [w["seq"] for w in written] == list(range(1, 11))
    assert all("energy_gpi_window" not in w for w in written)
    # three waits of 0.2 s, then no waiting: well under the 2 s that waiting every time would take
    assert 0.6 <= elapsed < 1.5, elapsed
