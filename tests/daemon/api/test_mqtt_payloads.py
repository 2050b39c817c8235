"""Payload, topic and credential helpers of the MQTT reporter, and the disabled reporter (no broker needed)."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path

import numpy as np
import pytest

from edgeoffload.api.mqtt import MqttReporter
from edgeoffload.api.mqtt_payloads import (
    CREDENTIAL_NAME,
    availability_payload,
    default_client_id,
    device_topic,
    encode,
    envelope,
    json_ready,
    resolve_password,
    utc_timestamp,
)
from edgeoffload.errors import ConfigError

NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass
class Settings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1
    username: str | None = None
    password_file: str | None = None
    tls: bool = False
    ca_file: str | None = None
    keepalive_s: int = 5
    queue_max: int = 10
    client_id: str | None = None


class Colour(Enum):
    RED = "red"


@dataclass(frozen=True)
class Sample:
    power_w: float
    where: Path


def test_utc_timestamp_is_iso_8601_with_z():
    assert utc_timestamp(NOW) == "2024-05-01T12:00:00.123Z"
    assert utc_timestamp(NOW.astimezone(timezone(timedelta(hours=2)))) == "2024-05-01T12:00:00.123Z"
    assert ISO_Z.match(utc_timestamp())


def test_json_ready_converts_numpy_scalars_and_arrays():
    out = json_ready({"f32": np.float32(0.5), "i64": np.int64(7), "b": np.bool_(False),
                      "arr": np.arange(3, dtype=np.uint8), "m": np.eye(2)})
    assert out == {"f32": 0.5, "i64": 7, "b": False, "arr": [0, 1, 2], "m": [[1.0, 0.0], [0.0, 1.0]]}
    assert type(out["i64"]) is int and type(out["b"]) is bool
    json.dumps(out, allow_nan=False)


def test_json_ready_turns_nan_and_infinity_into_null_at_any_depth():
    out = json_ready({"a": float("nan"), "b": [1.0, float("-inf")], "c": np.array([np.inf, 2.0]),
                      "d": {"e": np.float64("nan")}, "t": (np.float32("nan"),)})
    assert out == {"a": None, "b": [1.0, None], "c": [None, 2.0], "d": {"e": None}, "t": [None]}


def test_json_ready_handles_dataclasses_enums_paths_dates_and_unknowns():
    out = json_ready({"s": Sample(1.25, Path("/x/y")), "c": Colour.RED, "when": NOW, 3: object})
    assert out["s"] == {"power_w": 1.25, "where": "/x/y"}
    assert out["c"] == "red" and out["when"] == "2024-05-01T12:00:00.123Z"
    assert out["3"] == str(object)


def test_envelope_adds_missing_fields_and_keeps_given_ones():
    payload = {"target": "npu", "timestamp_utc": "2020-01-01T00:00:00.000Z"}
    body = envelope(payload, "dev1", "b00t", NOW)
    assert body == {"target": "npu", "timestamp_utc": "2020-01-01T00:00:00.000Z", "schema": 1,
                    "device_id": "dev1", "boot_id": "b00t"}
    assert payload == {"target": "npu", "timestamp_utc": "2020-01-01T00:00:00.000Z"}  # caller's dict untouched
    assert envelope({}, "dev1", "b00t", NOW)["timestamp_utc"] == "2024-05-01T12:00:00.123Z"


def test_envelope_wraps_a_non_object_payload():
    assert envelope([1, 2], "d", "b", NOW)["value"] == [1, 2]


def test_encode_is_strict_compact_json():
    data = encode({"x": float("nan"), "y": np.float32(2.0)}, "d", "b", NOW)
    assert b"NaN" not in data and b" " not in data
    assert json.loads(data) == {"x": None, "y": 2.0, "schema": 1, "device_id": "d", "boot_id": "b",
                                "timestamp_utc": "2024-05-01T12:00:00.123Z"}


def test_availability_payload():
    assert availability_payload("offline", "dev1", "b00t", NOW) == {
        "schema": 1, "state": "offline", "device_id": "dev1", "boot_id": "b00t",
        "timestamp_utc": "2024-05-01T12:00:00.123Z"}


def test_topics_and_client_id():
    assert device_topic("dev1", "decisions/summary") == "edgeoffload/v1/dev1/decisions/summary"
    assert default_client_id("dev1", "0123456789abcdef") == "edgeoffload-dev1-01234567"


def test_password_from_file_strips_one_line_break(tmp_path):
    (tmp_path / "pw").write_text("  s3cret \n")
    assert resolve_password(tmp_path / "pw", environ={}) == "  s3cret "


def test_password_from_systemd_credential_when_no_file_is_configured(tmp_path):
    (tmp_path / CREDENTIAL_NAME).write_text("from-credstore")
    (tmp_path / "pw").write_text("from-file")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert resolve_password(None, environ=env) == "from-credstore"
    assert resolve_password(str(tmp_path / "pw"), environ=env) == "from-file"


def test_no_password_configured(tmp_path):
    assert resolve_password(None, environ={}) is None
    assert resolve_password(None, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None


def test_unreadable_password_file_names_the_file(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=rf"^mqtt.password_file: cannot read {re.escape(str(missing))}: "
                                          r"No such file or directory; create it"):
        resolve_password(missing, environ={})


def test_start_with_unreadable_password_file_raises_before_connecting(tmp_path):
    reporter = MqttReporter(Settings(username="u", password_file=str(tmp_path / "nope")), "dev1", "b00t")
    with pytest.raises(ConfigError, match="mqtt.password_file: cannot read"):
        reporter.start()
    assert not reporter.connected


@pytest.mark.parametrize("device_id", ["a/b", "a+", "#", ""])
def test_device_id_must_be_usable_in_a_topic(device_id):
    with pytest.raises(ConfigError, match=r"cannot be used in an MQTT topic: .*no '/', '\+' or '#'"):
        MqttReporter(Settings(), device_id, "b00t")


def test_disabled_reporter_does_nothing():
    threads_before = threading.active_count()
    reporter = MqttReporter(Settings(enabled=False, password_file="/does/not/exist"), "a/b", "b00t")
    reporter.start()
    reporter.set_status({"x": 1})
    reporter.set_profile({"x": 1})
    reporter.publish_decision({"x": 1})
    reporter.publish_summary({"x": 1})
    reporter.publish_event({"x": 1})
    reporter.subscribe("policy/set", lambda payload: None)
    reporter.stop()
    assert not reporter.connected and reporter.dropped_messages == 0
    assert threading.active_count() == threads_before


def test_tls_with_missing_ca_file_names_the_file(tmp_path):
    missing = tmp_path / "ca.pem"
    reporter = MqttReporter(Settings(tls=True, ca_file=str(missing)), "dev1", "b00t")
    with pytest.raises(ConfigError, match=rf"^mqtt.ca_file: cannot load CA certificates from {re.escape(str(missing))}"):
        reporter.start()


def test_an_empty_credential_means_no_password(tmp_path):
    # conf/mqtt-password is installed empty: no password until an operator writes one.
    (tmp_path / CREDENTIAL_NAME).write_text("")
    assert resolve_password(None, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None
