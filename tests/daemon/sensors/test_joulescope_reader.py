"""The `joulescope` power reader fed the bridge's messages directly (the broker path is in tests/integration)."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass

import pytest

from edgeoffload.errors import SensorError
from edgeoffload.sensors.base import LABEL_JOULESCOPE
from edgeoffload.sensors.joulescope import JoulescopePower, default_topic

TOPIC = "edgeoffload/v1/board1/power/joulescope"


@dataclass(frozen=True)
class Config:
    type: str = "joulescope"
    topic: str | None = None
    stale_after_s: float = 2.0


@dataclass(frozen=True)
class Mqtt:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1
    username: str | None = None
    password_file: str | None = None
    tls: bool = False
    ca_file: str | None = None
    keepalive_s: int = 30
    queue_max: int = 100
    client_id: str | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stats(energy_j=1.0, power_w=2.5, sample_id_start=0, **extra) -> bytes:
    message = {"schema": 1, "utc": "2026-11-23T10:00:00.100Z", "utc_unix_s": 1795428000.1,
               "instrument": "JS220-001234", "sample_id_start": sample_id_start,
               "sample_id_end": sample_id_start + 200000, "sample_rate_hz": 2000000, "period_s": 0.1,
               "power_w": power_w, "current_a": power_w / 5, "voltage_v": 5.0, "power_min_w": 1.0,
               "power_max_w": 4.0, "energy_j": energy_j, "charge_c": energy_j / 5, **extra}
    return json.dumps(message).encode()


def window(seq, start, end, energy_mj=25.3) -> bytes:
    return json.dumps({"schema": 1, "gpi": 0, "start_utc": "x", "end_utc": "y", "start_unix_s": start,
                       "end_unix_s": end, "sample_id_start": seq * 1000, "sample_id_end": seq * 1000 + 7020,
                       "duration_ms": (end - start) * 1e3, "energy_mj": energy_mj, "mean_power_w": 3.6,
                       "seq": seq}).encode()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def reader(clock):
    return JoulescopePower(Config(), Mqtt(), "board1", connect=False, clock=clock)


def test_the_latest_statistics_are_one_rail(reader, clock):
    assert reader.label == LABEL_JOULESCOPE
    assert reader.topic == TOPIC == default_topic("board1")
    reader.handle(TOPIC, stats(energy_j=1.0, power_w=2.0))
    clock.now += 0.1
    reader.handle(TOPIC, stats(energy_j=1.3, power_w=3.0, sample_id_start=200000))
    clock.now += 0.05
    reading = reader.read()
    assert reading.t_s == 100.1  # when the message came, not when it was read
    assert [(r.rail, r.power_w, r.energy_j) for r in reading.rails] == [("joulescope", 3.0, 1.3)]
    assert reading.power_w == 3.0 and reading.energy_j == 1.3
    (channel,) = reader.channels()
    assert channel.to_dict() == {"source": "joulescope", "chip": "JS220-001234", "rail": "joulescope",
                                 "unit": "W, J (MQTT)", "path": TOPIC}


def test_nothing_yet_or_nothing_lately_is_an_error_that_names_the_topic_and_recovers(reader, clock):
    clock.now += 0.5
    with pytest.raises(SensorError) as caught:
        reader.read()
    assert str(caught.value) == (f"no Joulescope statistics on {TOPIC} for 0.5 s: "
                                 "is edgeoffload-host joulescope running?")
    reader.handle(TOPIC, stats())
    clock.now += 2.0
    assert reader.read().power_w == 2.5  # exactly stale_after_s: still good
    clock.now += 1.5
    with pytest.raises(SensorError, match=f"no Joulescope statistics on {TOPIC} for 3.5 s: is edgeoffload-host"):
        reader.read()
    reader.handle(TOPIC, stats(energy_j=2.0, power_w=4.0, sample_id_start=200000))
    assert reader.read().power_w == 4.0


def test_the_stale_error_says_when_the_bridge_stopped(reader, clock):
    reader.handle(TOPIC, stats())
    reader.handle(f"{TOPIC}/availability", b'{"schema": 1, "state": "stopped", "instrument": "JS220-1"}')
    clock.now += 5
    with pytest.raises(SensorError, match=r"for 5.0 s \(the bridge said 'stopped'\): is edgeoffload-host"):
        reader.read()


def test_a_configured_topic_replaces_the_default(clock):
    reader = JoulescopePower(Config(topic="lab/js220"), Mqtt(), "board1", connect=False, clock=clock)
    reader.handle(TOPIC, stats(power_w=9.0))  # not ours
    reader.handle("lab/js220", stats(power_w=3.0))
    assert reader.read().power_w == 3.0
    assert reader.window_topic == "lab/js220/window"


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe garbage", "not JSON"),
    (b"[1, 2]", "a JSON list, not an object"),
    (b"", "not JSON"),
    (stats(schema=2), "schema 2, this daemon reads schema 1: update edgeoffload-host or the daemon"),
    (stats().replace(b'"power_w": 2.5', b'"power_w": NaN'), "not JSON (NaN is not a number"),
    (stats().replace(b'"energy_j": 1.0', b'"energy_j": Infinity'), "not JSON (Infinity is not a number"),
    (stats().replace(b'"energy_j": 1.0', b'"energy_j": 1e999'), "energy_j is inf, not a finite number"),
    (stats().replace(b'"power_w": 2.5', b'"power_w": "2.5"'), "power_w is '2.5', not a finite number"),
    (stats().replace(b'"power_w": 2.5', b'"power_w": true'), "power_w is True, not a finite number"),
    (stats().replace(b'"energy_j": 1.0, ', b""), "missing energy_j"),
    (stats(sample_id_end=-1), "sample_id_end -1 is before sample_id_start 0"),
    (stats(padding="x" * 20000), "more than the 16384 a Joulescope message can be"),
])
def test_malformed_messages_are_counted_logged_and_keep_the_last_good_one(reader, caplog, payload, reason):
    reader.handle(TOPIC, stats(power_w=2.5, energy_j=1.0))
    with caplog.at_level(logging.WARNING, logger="edgeoffload.sensors.joulescope"):
        reader.handle(TOPIC, payload)
    assert reader.malformed_messages == 1
    assert f"malformed Joulescope message 1 skipped: message on {TOPIC}: " in caplog.text
    assert reason in caplog.text
    assert (reader.read().power_w, reader.read().energy_j) == (2.5, 1.0)


def test_the_energy_counter_keeps_increasing_across_bridge_restarts(reader, clock):
    reader.handle(TOPIC, stats(energy_j=5.0, sample_id_start=4_000_000))
    reader.handle(TOPIC, stats(energy_j=5.5, sample_id_start=4_200_000))
    reader.handle(TOPIC, stats(energy_j=0.1, sample_id_start=100))  # a new bridge run: accumulators from 0
    assert reader.read().energy_j == pytest.approx(5.6)
    reader.handle(TOPIC, stats(energy_j=0.4, sample_id_start=200100))
    assert reader.read().energy_j == pytest.approx(5.9)
    reader.handle(TOPIC, stats(energy_j=0.9, sample_id_start=300, instrument="JS220-999"))  # another instrument
    assert reader.read().energy_j == pytest.approx(6.8)


def test_window_for_picks_the_window_that_overlaps_the_request_most(reader):
    w = f"{TOPIC}/window"
    reader.handle(w, window(1, 1000.000, 1000.007))
    reader.handle(w, window(2, 1000.050, 1000.057, energy_mj=None))
    reader.handle(w, window(3, 1000.100, 1000.107, energy_mj=30.0))
    assert reader.window_for(1000.101, 1000.108)["seq"] == 3
    assert reader.window_for(1000.0502, 1000.0571) == json.loads(window(2, 1000.050, 1000.057, energy_mj=None))
    assert reader.window_for(1000.0105, 1000.0175)["seq"] == 1  # 3.5 ms late: within the 20 ms tolerance
    assert reader.window_for(1000.0105, 1000.0175, tolerance_s=0.001) is None
    assert reader.window_for(2000.0, 2000.007) is None


def test_window_for_waits_for_a_window_still_on_its_way(reader):
    later = threading.Timer(0.05, reader.handle, args=(f"{TOPIC}/window", window(7, 50.0, 50.01)))
    later.start()
    try:
        assert reader.window_for(50.0, 50.01) is None
        assert reader.window_for(50.0, 50.01, timeout_s=2.0)["seq"] == 7
    finally:
        later.cancel()


@pytest.mark.parametrize("payload, reason", [
    (window(1, 10.0, 9.0), "the window ends before it starts"),
    (window(1, 10.0, 10.1).replace(b'"energy_mj": 25.3', b'"energy_mj": "lots"'),
     "energy_mj is 'lots', not a finite number or null"),
    (window(1, 10.0, 10.1).replace(b', "seq": 1', b""), "missing seq"),
])
def test_malformed_windows_are_counted_and_not_kept(reader, payload, reason, caplog):
    with caplog.at_level(logging.WARNING, logger="edgeoffload.sensors.joulescope"):
        reader.handle(f"{TOPIC}/window", payload)
    assert reader.malformed_messages == 1 and reason in caplog.text
    assert reader.window_for(0.0, 100.0) is None


def test_a_disabled_mqtt_section_is_a_sensor_error_that_says_what_to_change():
    with pytest.raises(SensorError, match="power.type joulescope reads the Joulescope bridge through the MQTT "
                                          "broker, but mqtt.enabled is false"):
        JoulescopePower(Config(), Mqtt(enabled=False), "board1")


def test_an_unreadable_password_file_is_named(tmp_path):
    with pytest.raises(SensorError, match=f"mqtt.password_file: cannot read {tmp_path / 'pw'}"):
        JoulescopePower(Config(), Mqtt(username="u", password_file=str(tmp_path / "pw")), "board1")


def test_without_a_broker_it_starts_and_reports_stale(clock):
    reader = JoulescopePower(Config(stale_after_s=0.5), Mqtt(), "board1", clock=clock)
    try:
        clock.now += 1
        with pytest.raises(SensorError, match="no Joulescope statistics on .* for 1.0 s"):
            reader.read()
        assert not reader.connected
    finally:
        reader.close()
        reader.close()
