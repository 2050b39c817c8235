"""The bridge's messages, built from the joulescope v1 statistics layout; the sample-id clock."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from joulescope_fakes import v1_statistics  # noqa: E402

from edgeoffload.errors import SensorError  # noqa: E402
from edgeoffload_host.joulescope.messages import (  # noqa: E402
    SampleClock, availability_message, statistics_message, statistics_topic, time64_to_unix_s, window_message,
)
from edgeoffload_host.joulescope.windows import GpiWindow  # noqa: E402

UTC_START = 1795428000.0  # 2026-11-23T10:00:00Z


def stats(**overrides):
    values = dict(id_start=4_000_000, id_end=4_200_000, utc_start_s=UTC_START, first_id=0, power_w=2.71,
                  power_min_w=1.9, power_max_w=4.2, energy_j=12.34, charge_c=2.47)
    return v1_statistics(**{**values, **overrides})


def test_time64_matches_the_joulescope_definition():
    time64 = pytest.importorskip("pyjoulescope_driver.time64")  # the instrument's own conversion, as the reference

    for unix_s in (UTC_START, 1514764800.0, 1700000000.123456):
        t64 = time64.as_time64(unix_s)
        assert time64_to_unix_s(t64) == pytest.approx(time64.as_timestamp(t64), abs=1e-6)
    assert time64_to_unix_s(0) == 1514764800.0


def test_statistics_message_has_format_b():
    message = statistics_message(stats(), "JS220-001234")
    assert message == {
        "schema": 1, "utc": "2026-11-23T10:00:00.100Z", "utc_unix_s": pytest.approx(UTC_START + 0.1, abs=1e-6),
        "instrument": "JS220-001234", "sample_id_start": 4_000_000, "sample_id_end": 4_200_000,
        "sample_rate_hz": 2_000_000.0, "period_s": pytest.approx(0.1), "power_w": 2.71,
        "current_a": pytest.approx(0.542), "voltage_v": 5.0, "power_min_w": 1.9, "power_max_w": 4.2,
        "energy_j": 12.34, "charge_c": 2.47,
    }
    json.dumps(message, allow_nan=False)  # what the bridge sends


def test_the_mean_falls_back_to_avg_without_the_v1_device_additions():
    raw = stats(power_w=3.5)
    for signal in raw["signals"].values():  # the binding's dict before Device._on_stats
        del signal["µ"], signal["σ2"]
    assert statistics_message(raw, "JS110-1")["power_w"] == 3.5


@pytest.mark.parametrize("path, value, message", [
    (("accumulators", "energy", "value"), float("nan"), "accumulators.energy is nan, not a finite number"),
    (("signals", "power", "µ", "value"), None, "signals.power.µ is None, not a finite number"),
    (("signals", "voltage", "µ", "value"), "5 V", "signals.voltage.µ is '5 V', not a finite number"),
    (("time", "sample_freq", "value"), 0, "time.sample_freq is 0.0, not a positive rate"),
    (("time", "samples", "value"), [5, 3], "time.samples ends (3.0) before it starts (5.0)"),
    (("time", "utc", "value"), [1], "time.utc is [1], not a [start, end] pair"),
])
def test_bad_values_are_refused_naming_the_key(path, value, message):
    raw = stats()
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SensorError) as caught:
        statistics_message(raw, "JS220-1")
    assert str(caught.value) == f"Joulescope statistics: {message}"


@pytest.mark.parametrize("drop, shown", [(("accumulators",), "accumulators"),
                                         (("signals", "current"), "signals.current"),
                                         (("time", "utc"), "time.utc")])
def test_missing_parts_are_named(drop, shown):
    raw = copy.deepcopy(stats())
    node = raw
    for key in drop[:-1]:
        node = node[key]
    del node[drop[-1]]
    with pytest.raises(SensorError, match=f"Joulescope statistics: {shown} is missing"):
        statistics_message(raw, "JS220-1")


def test_window_message_has_format_b():
    window = GpiWindow(seq=5, gpi=0, sample_id_start=1000, sample_id_end=8020, sample_rate_hz=1e6,
                       energy_j=0.0253, missing_samples=0)
    message = window_message(window, UTC_START + 0.123456, UTC_START + 0.130476)
    assert message == {
        "schema": 1, "gpi": 0, "start_utc": "2026-11-23T10:00:00.123456Z", "end_utc": "2026-11-23T10:00:00.130476Z",
        "start_unix_s": UTC_START + 0.123456, "end_unix_s": UTC_START + 0.130476, "sample_id_start": 1000,
        "sample_id_end": 8020, "duration_ms": pytest.approx(7.02), "energy_mj": pytest.approx(25.3),
        "mean_power_w": pytest.approx(0.0253 / 0.00702), "seq": 5,
    }


def test_a_window_with_lost_samples_has_null_energy():
    window = GpiWindow(seq=1, gpi=1, sample_id_start=0, sample_id_end=10, sample_rate_hz=1e3, energy_j=None,
                       missing_samples=3)
    message = window_message(window, UTC_START, UTC_START + 0.01)
    assert message["energy_mj"] is None and message["mean_power_w"] is None
    assert json.loads(json.dumps(message, allow_nan=False))["duration_ms"] == pytest.approx(10.0)


def test_the_clock_maps_stream_ids_through_the_statistics_anchor():
    clock = SampleClock()
    with pytest.raises(SensorError, match="no statistics message yet"):
        clock.unix_s(0, 1e6)
    clock.update(statistics_message(stats(id_start=4_000_000, id_end=4_200_000), "JS220-1"))
    # statistics count at 2 MHz, the stream at 1 MHz: stream id 2_100_000 is statistics id 4_200_000
    assert clock.unix_s(2_100_000, 1e6) == pytest.approx(UTC_START + 0.1, abs=1e-6)
    assert clock.unix_s(2_000_000, 1e6) == pytest.approx(UTC_START, abs=1e-6)


def test_topics_and_availability():
    assert statistics_topic("board-7") == "edgeoffload/v1/board-7/power/joulescope"
    message = availability_message("stopped", "JS220-1", UTC_START)
    assert message == {"schema": 1, "state": "stopped", "instrument": "JS220-1", "utc": "2026-11-23T10:00:00.000Z"}
