"""The Joulescope bridge and the daemon's `joulescope` reader through a real mosquitto.

The instrument is `FakeJoulescope` (tests/host_tools/joulescope/joulescope_fakes.py): our `Instrument`
interface producing joulescope 1.5.0's statistics dicts and sample blocks with GPI pulses of known energy.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host_tools" / "joulescope"))

from joulescope_fakes import STATS_FREQ_HZ, STREAM_RATE_HZ, FakeJoulescope, Pulse  # noqa: E402
from support import wait_until  # noqa: E402

from edgeoffload.errors import SensorError  # noqa: E402
from edgeoffload.sensors.joulescope import JoulescopePower  # noqa: E402
from edgeoffload_host.joulescope.bridge import Bridge, BridgeSummary, BrokerSettings  # noqa: E402

DEVICE = "board1"
TOPIC = f"edgeoffload/v1/{DEVICE}/power/joulescope"
FIRST_ID = 1_000_000
STATS_KEYS = {"schema", "utc", "utc_unix_s", "instrument", "sample_id_start", "sample_id_end", "sample_rate_hz",
              "period_s", "power_w", "current_a", "voltage_v", "power_min_w", "power_max_w", "energy_j", "charge_c"}
WINDOW_KEYS = {"schema", "gpi", "start_utc", "end_utc", "start_unix_s", "end_unix_s", "sample_id_start",
               "sample_id_end", "duration_ms", "energy_mj", "mean_power_w", "seq"}


@dataclass(frozen=True)
class PowerConfig:
    type: str = "joulescope"
    topic: str | None = None
    stale_after_s: float = 0.5


@dataclass(frozen=True)
class Mqtt:
    host: str
    port: int
    enabled: bool = True
    username: str | None = None
    password_file: str | None = None
    tls: bool = False
    ca_file: str | None = None
    keepalive_s: int = 5
    queue_max: int = 100
    client_id: str | None = None


class RunningBridge:
    """`Bridge.run()` on a thread until `stop()`."""

    def __init__(self, bridge: Bridge):
        self.bridge = bridge
        self._stop = threading.Event()
        self.summary: BridgeSummary | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.summary = self.bridge.run(self._stop)

    def stop(self) -> BridgeSummary:
        self._stop.set()
        self._thread.join(10)
        assert self.summary is not None, "the bridge did not stop within 10 s"
        return self.summary


@pytest.fixture
def start_bridge():
    running: list[RunningBridge] = []

    def start(broker, fake: FakeJoulescope, gpi: int | None = 0) -> RunningBridge:
        bridge = Bridge(fake, BrokerSettings(broker.host, broker.port, keepalive_s=5), DEVICE, gpi=gpi)
        running.append(RunningBridge(bridge))
        assert bridge.wait_connected(5), "the bridge did not connect"
        return running[-1]

    yield start
    for r in running:
        r.stop()


@pytest.fixture
def make_reader():
    readers: list[JoulescopePower] = []

    def make(broker, **config) -> JoulescopePower:
        reader = JoulescopePower(PowerConfig(**config), Mqtt(broker.host, broker.port), DEVICE)
        readers.append(reader)
        assert reader.wait_connected(5), "the reader did not connect"
        return reader

    yield make
    for reader in readers:
        reader.close()


def window_payloads(probe):
    return [m.json() for m in probe.messages(f"{TOPIC}/window")]


def test_statistics_and_windows_reach_the_daemon(mosquitto, mqtt_probe, start_bridge, make_reader):
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(f"{TOPIC}/#", TOPIC))
    reader = make_reader(mosquitto)
    pulses = (Pulse(FIRST_ID + 100_000, 7_020, 1.6),  # 7.02 ms at 3.6 W
              Pulse(FIRST_ID + 215_000, 10_000, 0.5),  # across the block boundary inside a period
              Pulse(FIRST_ID + 299_990, 25, 3.0))  # across a statistics period
    fake = FakeJoulescope(stats_rate_hz=50, base_power_w=2.0, pulses=pulses, first_id=FIRST_ID)
    running = start_bridge(mosquitto, fake)
    assert probe.wait_for(f"{TOPIC}/availability").json()["state"] == "online"
    wait_until(lambda: len(window_payloads(probe)) == 3, 5, "three window messages")

    windows = window_payloads(probe)
    assert all(set(w) == WINDOW_KEYS for w in windows)
    assert [(w["seq"], w["gpi"], w["sample_id_start"], w["sample_id_end"]) for w in windows] == [
        (i + 1, 0, p.start_id, p.start_id + p.length) for i, p in enumerate(pulses)]
    assert [w["energy_mj"] for w in windows] == pytest.approx([p.expected_energy_j(2.0) * 1e3 for p in pulses],
                                                              rel=1e-6)
    assert windows[0]["duration_ms"] == pytest.approx(7.02)
    assert windows[0]["mean_power_w"] == pytest.approx(3.6, rel=1e-6)
    for w, p in zip(windows, pulses):  # UTC from the statistics' time base (2 MHz) for 1 MHz stream ids
        assert w["start_unix_s"] == pytest.approx(fake.t0 + (p.start_id - FIRST_ID) / STREAM_RATE_HZ, abs=2e-6)
        assert w["end_unix_s"] - w["start_unix_s"] == pytest.approx(p.length / STREAM_RATE_HZ, abs=2e-6)

    quiet_from = 2 * (FIRST_ID + 400_000)  # statistics ids (2 MHz) past the last pulse
    wait_until(lambda: probe.messages(TOPIC)[-1].json()["sample_id_start"] > quiet_from + 100_000, 5, "quiet periods")
    stats = [m.json() for m in probe.messages(TOPIC)]
    assert len(stats) >= 20 and all(set(s) == STATS_KEYS for s in stats)
    assert all(b["sample_id_start"] == a["sample_id_end"] for a, b in zip(stats, stats[1:]))
    assert all(b["energy_j"] > a["energy_j"] for a, b in zip(stats, stats[1:]))
    assert {(s["instrument"], s["sample_rate_hz"], round(s["period_s"], 9)) for s in stats} == {
        ("JS220-000042", STATS_FREQ_HZ, 0.02)}
    quiet = [s for s in stats if s["sample_id_start"] >= quiet_from]
    assert len(quiet) >= 2 and all(s["power_w"] == pytest.approx(2.0) for s in quiet)

    reading = wait_until(lambda: _read_or_none(reader), 2, "a reading")
    assert reading.power_w == pytest.approx(2.0)
    assert reading.energy_j == pytest.approx(stats[-1]["energy_j"], rel=0.2)
    match = reader.window_for(windows[1]["start_unix_s"] + 0.001, windows[1]["end_unix_s"] - 0.001)
    assert match == windows[1]

    summary = running.stop()
    stopped = probe.wait_for(f"{TOPIC}/availability", lambda m: m.json()["state"] == "stopped")
    assert stopped.json()["instrument"] == "JS220-000042"
    assert fake.stopped.is_set()
    assert (summary.windows_published, summary.statistics_malformed, summary.blocks_dropped) == (3, 0, 0)
    assert summary.statistics_published == fake.statistics_sent


def _read_or_none(reader):
    try:
        return reader.read()
    except SensorError:
        return None


def test_the_reader_reports_silence_and_recovers(mosquitto, start_bridge, make_reader):
    reader = make_reader(mosquitto, stale_after_s=0.3)
    fake = FakeJoulescope(stats_rate_hz=20, first_id=FIRST_ID)
    start_bridge(mosquitto, fake, gpi=None)
    wait_until(lambda: _read_or_none(reader), 3, "a first reading")
    fake.pause()
    with pytest.raises(SensorError) as caught:
        wait_until(lambda: _read_or_none(reader) is None and reader.read(), 3, "the reading to go stale")
    assert str(caught.value).startswith(f"no Joulescope statistics on {TOPIC} for 0.")
    assert str(caught.value).endswith(" s: is edgeoffload-host joulescope running?")
    fake.resume()
    assert wait_until(lambda: _read_or_none(reader), 3, "readings again").power_w == pytest.approx(2.0)


def test_a_broker_restart_loses_nothing_of_the_instrument_stream(mosquitto, mqtt_probe, start_bridge, make_reader):
    pulses = tuple(Pulse(FIRST_ID + 50_000 + k * 200_000, 4_000, 1.0) for k in range(60))  # every 0.2 s
    fake = FakeJoulescope(stats_rate_hz=20, pulses=pulses, first_id=FIRST_ID)
    reader = make_reader(mosquitto)
    running = start_bridge(mosquitto, fake)
    wait_until(lambda: reader.window_for(0, 1e10) is not None, 3, "a first window at the reader")
    before = reader.read()
    mosquitto.stop()
    time.sleep(0.6)
    with pytest.raises(SensorError, match="no Joulescope statistics"):
        reader.read()
    mosquitto.start()
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(f"{TOPIC}/#", TOPIC))
    wait_until(lambda: running.bridge.connected and reader.connected, 10, "bridge and reader to reconnect")
    wait_until(lambda: len(probe.messages(TOPIC)) >= 3 and len(window_payloads(probe)) >= 2, 5, "traffic again")

    after = reader.read()
    assert after.energy_j > before.energy_j  # the same accumulator, not restarted
    first_after = probe.messages(TOPIC)[0].json()
    assert first_after["sample_id_start"] > 2 * FIRST_ID  # the instrument's counter ran on
    seqs = [w["seq"] for w in window_payloads(probe)]
    # numbering continued through the outage, with no gap: the windows queued meanwhile all came. Not always in
    # order: paho may send a new window before the queued ones; the reader looks windows up by time, not order.
    assert sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1)) and min(seqs) > 1, seqs
    summary = running.stop()
    assert summary.statistics_dropped > 0 and summary.blocks_dropped == 0
