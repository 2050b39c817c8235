"""MqttReporter against a real mosquitto: retained state, last will, broker restarts, auth, odd payloads."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import pytest

from edgeoffload.api.mqtt import MqttReporter
from edgeoffload.api.mqtt_payloads import device_topic
from support import wait_until

KEEPALIVE_S = 5
BOOT_ID = "0123456789abcdef0123456789abcdef"


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 1883
    enabled: bool = True
    username: str | None = None
    password_file: str | None = None
    tls: bool = False
    ca_file: str | None = None
    keepalive_s: int = KEEPALIVE_S
    queue_max: int = 100
    client_id: str | None = None


def state_is(state: str):
    return lambda msg: msg.json()["state"] == state


@pytest.fixture
def make_reporter():
    """``make(broker, device_id="dev1", **settings) -> MqttReporter`` (not started); stopped at teardown."""
    reporters: list[MqttReporter] = []

    def make(broker, device_id: str = "dev1", **overrides) -> MqttReporter:
        reporter = MqttReporter(Settings(host=broker.host, port=broker.port, **overrides), device_id, BOOT_ID)
        reporters.append(reporter)
        return reporter

    yield make
    for reporter in reporters:
        reporter.stop(timeout_s=0.5)


def test_online_state_decisions_and_clean_stop(mosquitto, mqtt_probe, make_reporter):
    reporter = make_reporter(mosquitto)
    reporter.set_status({"state": "running", "models": 2})  # before start: remembered, sent on connect
    reporter.start()
    wait_until(lambda: reporter.connected, 5, "the reporter to connect")
    reporter.set_profile({"cpu_latency_ms": 12.5})

    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=["edgeoffload/#"])  # joins late: sees retained
    online = probe.wait_for(device_topic("dev1", "availability"))
    assert online.retained and online.qos == 1
    assert online.json()["state"] == "online"
    assert online.json()["boot_id"] == BOOT_ID and online.json()["timestamp_utc"].endswith("Z")
    status = probe.wait_for(device_topic("dev1", "status"))
    assert status.retained and status.json()["state"] == "running" and status.json()["models"] == 2
    assert status.json()["schema"] == 1 and status.json()["device_id"] == "dev1"
    assert probe.wait_for(device_topic("dev1", "profile")).json()["cpu_latency_ms"] == 12.5

    reporter.publish_decision({"target": "npu", "seq": 1})
    reporter.publish_summary({"n": 10})
    reporter.publish_event({"kind": "config_reloaded"})
    decision = probe.wait_for(device_topic("dev1", "decision"))
    assert decision.json()["target"] == "npu" and not decision.retained and decision.qos == 0
    assert probe.wait_for(device_topic("dev1", "decisions/summary")).json()["n"] == 10
    event = probe.wait_for(device_topic("dev1", "events"))
    assert event.json()["kind"] == "config_reloaded" and event.qos == 1 and not event.retained
    assert reporter.dropped_messages == 0

    reporter.stop(timeout_s=2.0)
    assert not reporter.connected
    probe.wait_for(device_topic("dev1", "availability"), state_is("stopped"))
    late = mqtt_probe(mosquitto.host, mosquitto.port, topics=["edgeoffload/#"])
    retained = late.wait_for(device_topic("dev1", "availability"))
    assert retained.retained and retained.json()["state"] == "stopped"  # no will after a clean stop


def test_subscribe_handler_errors_do_not_kill_the_loop(mosquitto, mqtt_probe, make_reporter, caplog):
    received: list[bytes] = []

    def handler(payload: bytes) -> None:
        if payload == b"boom":
            raise ValueError("bad policy")
        received.append(payload)

    reporter = make_reporter(mosquitto)
    reporter.subscribe("policy/set", handler)
    reporter.start()
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=["edgeoffload/#"])
    probe.wait_for(device_topic("dev1", "availability"), state_is("online"))
    mosquitto.wait_for_log(f"{device_topic('dev1', 'policy/set')} (QoS 1)")
    probe.publish(device_topic("dev1", "policy/set"), b"boom")
    probe.publish(device_topic("dev1", "policy/set"), b'{"objective": "energy"}')
    wait_until(lambda: received, 5, "the handler to get the second message")
    assert received == [b'{"objective": "energy"}']
    assert "MQTT handler for policy/set failed" in caplog.text and "bad policy" in caplog.text
    assert reporter.connected


CHILD = """
import json, sys, time
from types import SimpleNamespace
from edgeoffload.api.mqtt import MqttReporter
reporter = MqttReporter(SimpleNamespace(**json.loads(sys.argv[1])), "child", sys.argv[2])
reporter.start()
reporter.set_status({"state": "running"})
time.sleep(120)
"""


def test_last_will_offline_when_the_process_is_killed(mosquitto, mqtt_probe, tmp_path):
    settings = asdict(Settings(host=mosquitto.host, port=mosquitto.port))
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=["edgeoffload/#"])
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(settings), BOOT_ID])
    try:
        probe.wait_for(device_topic("child", "status"), timeout=10)
        probe.wait_for(device_topic("child", "availability"), state_is("online"))
    finally:
        child.kill()  # SIGKILL: no clean stop, the broker must send the will
        child.wait(timeout=5)
    will = probe.wait_for(device_topic("child", "availability"), state_is("offline"), timeout=1.5 * KEEPALIVE_S + 2)
    assert will.json()["boot_id"] == BOOT_ID and will.json()["device_id"] == "child"
    late = mqtt_probe(mosquitto.host, mosquitto.port, topics=["edgeoffload/#"])
    assert late.wait_for(device_topic("child", "availability")).json()["state"] == "offline"


def test_reconnects_after_broker_restart_with_latest_state(mosquitto, mqtt_probe, make_reporter, caplog):
    caplog.set_level(logging.INFO, logger="edgeoffload.api.mqtt")
    policies: list[bytes] = []
    reporter = make_reporter(mosquitto)
    reporter.subscribe("policy/set", policies.append)
    reporter.set_status({"phase": "before"})
    reporter.start()
    mosquitto.wait_for_log(f"{device_topic('dev1', 'policy/set')} (QoS 1)")  # connected and subscribed

    mosquitto.stop()
    wait_until(lambda: not reporter.connected, 5, "the reporter to notice the broker is gone")
    reporter.set_status({"phase": "while-down"})
    reporter.publish_event({"kind": "lost"})
    reporter.publish_decision({"target": "cpu"})
    assert reporter.dropped_messages == 2
    mosquitto.start()  # same port, no retained messages left (persistence false)

    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=["edgeoffload/#"])
    probe.wait_for(device_topic("dev1", "availability"), state_is("online"), timeout=2 * 5)
    assert probe.wait_for(device_topic("dev1", "status")).json()["phase"] == "while-down"
    wait_until(lambda: reporter.connected, 5, "the reporter to report connected")
    late = mqtt_probe(mosquitto.host, mosquitto.port, topics=["edgeoffload/#"])
    status = late.wait_for(device_topic("dev1", "status"))
    assert status.retained and status.json()["phase"] == "while-down"
    mosquitto.wait_for_log(f"{device_topic('dev1', 'policy/set')} (QoS 1)", count=2)  # renewed after restart
    probe.publish(device_topic("dev1", "policy/set"), b"p1")
    wait_until(lambda: policies == [b"p1"], 5, "the subscription to be restored")
    assert caplog.text.count("lost connection to MQTT broker") == 1
    assert caplog.text.count("connected to MQTT broker") == 2


def test_starts_without_a_broker_and_connects_when_it_appears(mosquitto, mqtt_probe, make_reporter, caplog):
    caplog.set_level(logging.DEBUG, logger="edgeoffload.api.mqtt")
    mosquitto.stop()
    reporter = make_reporter(mosquitto)
    reporter.start()  # returns at once although nothing listens
    reporter.set_status({"phase": "started-offline"})
    reporter.publish_decision({"target": "npu"})
    assert not reporter.connected and reporter.dropped_messages == 1
    time.sleep(1.5)  # at least one retry has failed
    mosquitto.start()

    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=["edgeoffload/#"])
    probe.wait_for(device_topic("dev1", "availability"), state_is("online"), timeout=2 * 5)
    assert probe.wait_for(device_topic("dev1", "status")).json()["phase"] == "started-offline"
    infos = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert sum("not reachable yet" in m for m in infos) == 1  # once, not once per retry


def test_password_file_authenticates(mosquitto_factory, mqtt_probe, make_reporter, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    auth_broker = mosquitto_factory(users={"dev": "s3cret-pw"})
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret-pw\n")
    wrong = tmp_path / "wrong_password"
    wrong.write_text("nope\n")
    good = make_reporter(auth_broker, username="dev", password_file=str(secret))
    bad = make_reporter(auth_broker, device_id="dev2", username="dev", password_file=str(wrong))
    good.start()
    bad.start()

    probe = mqtt_probe(auth_broker.host, auth_broker.port, topics=["edgeoffload/#"],
                       username="dev", password="s3cret-pw")
    probe.wait_for(device_topic("dev1", "availability"), state_is("online"))
    wait_until(lambda: "refused the connection" in caplog.text, 5, "the wrong password to be refused")
    assert not bad.connected
    assert "s3cret-pw" not in caplog.text and "nope" not in caplog.text
    assert probe.messages(device_topic("dev2", "availability")) == []


def test_numpy_and_non_finite_values_are_published_as_json(mosquitto, mqtt_probe, make_reporter):
    reporter = make_reporter(mosquitto)
    reporter.start()
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=["edgeoffload/#"])
    probe.wait_for(device_topic("dev1", "availability"), state_is("online"))
    reporter.publish_decision({"latency_ms": np.float32(1.5), "n": np.int64(3), "ok": np.bool_(True),
                               "probs": np.array([0.25, np.nan]), "energy_mj": math.inf, "bad": float("nan")})
    reporter.set_status({"power_w": np.float64("nan"), "shape": (np.int32(16), 16)})

    def strict(payload: bytes):
        return json.loads(payload, parse_constant=lambda token: pytest.fail(f"{token} in JSON payload"))

    decision = strict(probe.wait_for(device_topic("dev1", "decision")).payload)
    assert decision["latency_ms"] == 1.5 and decision["n"] == 3 and decision["ok"] is True
    assert decision["probs"] == [0.25, None] and decision["energy_mj"] is None and decision["bad"] is None
    status = strict(probe.wait_for(device_topic("dev1", "status")).payload)
    assert status["power_w"] is None and status["shape"] == [16, 16]
