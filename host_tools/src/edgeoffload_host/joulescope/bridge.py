"""The publishing loop: an instrument's statistics (and GPI-marked windows) onto MQTT, for edgeoffloadd.

Topics, under ``edgeoffload/v1/<device_id>/power/joulescope`` (see `messages` for the payloads):
the topic itself (statistics, QoS 0, one per statistics period), ``/window`` (QoS 1, one per GPI-high
window) and ``/availability`` (QoS 1, retained: ``online``, ``offline`` as the last will, ``stopped``).

The bridge depends on the `Instrument` interface only. The instrument's callbacks (its USB thread) just
queue what they get; the caller's thread converts and publishes. paho reconnects by itself: while the
broker is away statistics are dropped and counted (they are superseded every period anyway), windows are
queued (bounded) and sent after the reconnect, and the instrument keeps streaming throughout.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edgeoffload.errors import SensorError
from edgeoffload_host.joulescope.messages import (
    SampleClock, availability_message, statistics_message, statistics_topic, window_message,
)
from edgeoffload_host.joulescope.windows import GpiWindow, SampleBlock, WindowTracker

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
QUEUE_MAX_ITEMS = 10000  # statistics and sample blocks waiting for the publishing thread
PENDING_WINDOWS_MAX = 1000  # windows waiting for the first statistics message (their UTC needs it)
SILENT_INSTRUMENT_S = 5.0  # warn when no statistics arrive for this long
STOP_PUBLISH_TIMEOUT_S = 2.0
CONNECT_WAIT_S = 2.0  # how long the instrument waits for the broker at start (then it streams anyway)

StatisticsCallback = Callable[[Mapping[str, Any]], None]
SamplesCallback = Callable[[SampleBlock], None]


class Instrument(Protocol):
    """A source of statistics (and, when asked, sample blocks). Callbacks may come from any thread."""

    name: str  # e.g. "JS220-001234"

    def start(self, on_statistics: StatisticsCallback, on_samples: SamplesCallback | None) -> None:
        """Begin streaming: `on_statistics(dict)` once per period, in the joulescope v1 statistics layout;
        `on_samples(block)` for consecutive sample blocks with power and the marked GPI, when given."""

    def stop(self) -> None:
        """Stop streaming and release the instrument (and close a recording); safe to call twice."""


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    queue_max: int = 1000  # QoS 1 messages paho holds while the broker is away
    client_id: str | None = None


@dataclass(frozen=True)
class BridgeSummary:
    duration_s: float
    statistics_published: int
    statistics_dropped: int  # not sent: broker away or the queue was full
    statistics_malformed: int
    windows_published: int
    windows_dropped: int
    blocks_dropped: int  # sample blocks lost before the publishing thread saw them (gaps in windows)


class Bridge:
    """One instrument to one broker. `run()` blocks until `stop` is set or `duration_s` has passed."""

    def __init__(self, instrument: Instrument, broker: BrokerSettings, device_id: str, gpi: int | None = None):
        self._instrument = instrument
        self._broker = broker
        self.topic = statistics_topic(device_id)
        self._gpi = gpi
        self._tracker = WindowTracker(gpi) if gpi is not None else None
        self._clock = SampleClock()
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(QUEUE_MAX_ITEMS)
        self._pending: list[GpiWindow] = []
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._link = "new"
        self._stopping = False
        # each counter is written by one thread only: "*_full" by the instrument's, the rest by run()'s
        self._counts = dict.fromkeys(("published", "dropped", "stats_full", "malformed", "windows",
                                      "windows_dropped", "blocks_full"), 0)
        self._last_stats_s = time.monotonic()
        self._silent_warned = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def run(self, stop: threading.Event, duration_s: float | None = None) -> BridgeSummary:
        """Connect (waiting up to CONNECT_WAIT_S), stream for `duration_s` or until `stop`, then stop the
        instrument, publish what it had sent, availability ``stopped``, and disconnect."""
        self._connect()
        try:
            self._wait_for_broker(stop)
            started = time.monotonic()
            deadline = None if duration_s is None else started + duration_s
            self._instrument.start(self._on_statistics, self._on_samples if self._tracker else None)
            try:
                while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                    self._process_one(timeout_s=0.1)
                    self._check_silence()
            finally:
                _step("stop the instrument", self._instrument.stop)
                self._drain()
        finally:
            self._disconnect()
        c = self._counts
        return BridgeSummary(time.monotonic() - started, c["published"], c["dropped"] + c["stats_full"],
                             c["malformed"], c["windows"], c["windows_dropped"], c["blocks_full"])

    def _wait_for_broker(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + CONNECT_WAIT_S
        while not self._connected.wait(0.05):
            if stop.is_set() or time.monotonic() > deadline:
                log.warning("broker %s:%s not connected yet; starting the instrument anyway (statistics are "
                            "dropped until it connects)", self._broker.host, self._broker.port)
                return

    # -- instrument side (its thread): queue only ---------------------------------------------

    def _on_statistics(self, stats: Mapping[str, Any]) -> None:
        try:
            self._queue.put_nowait(("stats", stats))
        except queue.Full:
            self._counts["stats_full"] += 1

    def _on_samples(self, block: SampleBlock) -> None:
        try:
            self._queue.put_nowait(("block", block))
        except queue.Full:
            self._counts["blocks_full"] += 1

    # -- publishing thread --------------------------------------------------------------------

    def _process_one(self, timeout_s: float) -> bool:
        try:
            kind, item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return False
        if kind == "stats":
            self._handle_statistics(item)
        else:
            self._handle_block(item)
        return True

    def _drain(self) -> None:
        while self._process_one(timeout_s=0.0):
            pass

    def _handle_statistics(self, stats: Mapping[str, Any]) -> None:
        self._last_stats_s, self._silent_warned = time.monotonic(), False
        try:
            message = statistics_message(stats, self._instrument.name)
        except SensorError as exc:
            self._counts["malformed"] += 1
            level = logging.WARNING if self._counts["malformed"] <= 10 else logging.DEBUG
            log.log(level, "statistics message %d skipped: %s", self._counts["malformed"], exc)
            return
        self._clock.update(message)
        key = "published" if self._publish(self.topic, message, qos=0) else "dropped"
        self._counts[key] += 1
        self._flush_windows()

    def _handle_block(self, block: SampleBlock) -> None:
        if self._tracker is None:  # blocks are only requested with a tracker
            return
        try:
            windows = self._tracker.feed(block)
        except SensorError as exc:
            log.warning("sample block skipped: %s", exc)
            return
        self._pending.extend(windows)
        if len(self._pending) > PENDING_WINDOWS_MAX:
            lost = len(self._pending) - PENDING_WINDOWS_MAX
            self._counts["windows_dropped"] += lost
            del self._pending[:lost]
            log.warning("%d GPI windows dropped: no statistics message yet to give them a UTC time", lost)
        self._flush_windows()

    def _flush_windows(self) -> None:
        if not self._clock.ready:
            return
        for window in self._pending:
            start = self._clock.unix_s(window.sample_id_start, window.sample_rate_hz)
            end = self._clock.unix_s(window.sample_id_end, window.sample_rate_hz)
            sent = self._publish(f"{self.topic}/window", window_message(window, start, end), qos=1)
            self._counts["windows" if sent else "windows_dropped"] += 1
        self._pending.clear()

    def _check_silence(self) -> None:
        silent_s = time.monotonic() - self._last_stats_s
        if silent_s > SILENT_INSTRUMENT_S and not self._silent_warned:
            self._silent_warned = True
            log.warning("no statistics from %s for %.0f s: is it still connected?", self._instrument.name, silent_s)

    # -- MQTT -----------------------------------------------------------------------------------

    def _publish(self, topic: str, payload: Mapping[str, Any], qos: int, retain: bool = False) -> bool:
        """Hand one message to paho; False when it was not accepted (QoS 0 while away, queue full)."""
        client = self._client
        if client is None or (qos == 0 and not self._connected.is_set()):
            return False
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        info = client.publish(topic, data, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN)

    def _connect(self) -> None:
        b = self._broker
        client_id = b.client_id or f"edgeoffload-joulescope-{uuid.uuid4().hex[:8]}"
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        client.suppress_exceptions = True
        client.max_queued_messages_set(b.queue_max)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        if b.username:
            client.username_pw_set(b.username, b.password)
        offline = availability_message("offline", self._instrument.name, time.time())
        client.will_set(f"{self.topic}/availability", json.dumps(offline), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self._client = client
        client.connect_async(b.host, b.port, keepalive=b.keepalive_s)
        client.loop_start()

    def _disconnect(self) -> None:
        client = self._client
        if client is None:
            return
        self._stopping = True
        if self._connected.is_set():
            stopped = availability_message("stopped", self._instrument.name, time.time())
            info = client.publish(f"{self.topic}/availability", json.dumps(stopped), qos=1, retain=True)
            _step("publish availability 'stopped'", info.wait_for_publish, STOP_PUBLISH_TIMEOUT_S)
        else:
            log.info("not connected to the broker; availability 'stopped' not published")
        client.disable_logger()  # paho logs a spurious "not connected" error when its loop ends
        _step("disconnect", client.disconnect)
        _step("stop the network loop", client.loop_stop)
        self._connected.clear()
        self._client = None

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        b = self._broker
        if reason.is_failure:
            self._log_change(f"refused:{reason}", logging.ERROR, "broker %s:%s refused the connection: %s "
                             "(check --username and --password-file); retrying", b.host, b.port, reason)
            return
        online = availability_message("online", self._instrument.name, time.time())
        client.publish(f"{self.topic}/availability", json.dumps(online), qos=1, retain=True)
        self._connected.set()
        self._log_change("up", logging.INFO, "connected to broker %s:%s", b.host, b.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_up = self._connected.is_set()
        self._connected.clear()
        if was_up and not self._stopping:
            self._log_change("down", logging.WARNING, "lost the broker %s:%s (%s); reconnecting, the instrument "
                             "keeps streaming", self._broker.host, self._broker.port, reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._log_change("unreachable", logging.WARNING, "broker %s:%s not reachable; retrying in the background",
                         self._broker.host, self._broker.port)

    def _log_change(self, state: str, level: int, msg: str, *args: Any) -> None:
        if state != self._link:
            self._link = state
            log.log(level, msg, *args)


def _step(what: str, action: Callable[..., Any], *args: Any) -> None:
    """One stop step: log and continue on error."""
    try:
        action(*args)
    except Exception as exc:  # noqa: BLE001 - each stop step runs whatever the previous one did
        log.warning("stopping the bridge: %s failed: %s", what, exc)
