"""The `joulescope` power reader: a Joulescope's statistics, as published by ``edgeoffload-host joulescope``.

The instrument hangs off a PC, not the board, so the bridge on that PC publishes what it measures and
this reader takes it from the broker (``power.topic``, default ``edgeoffload/v1/<device_id>/power/joulescope``):
one rail, ``joulescope``, whose power is the mean over the last statistics period and whose energy is the
instrument's accumulator (kept increasing across bridge restarts). ``read()`` hands out the latest message;
none for ``stale_after_s`` is a SensorError. Messages that do not parse are counted and logged and never
replace the last good one.

GPI-marked windows (``<topic>/window``: sample-accurate energy of each period the daemon's GPIO marker was
high) are kept for a while, so that a marked request can be given its measured energy: `window_for()`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from edgeoffload.api.mqtt import MqttSettings, new_client
from edgeoffload.api.mqtt_payloads import device_topic, resolve_password
from edgeoffload.errors import ConfigError, SensorError
from edgeoffload.sensors.base import LABEL_JOULESCOPE, ChannelInfo, PowerReading, RailSample

log = logging.getLogger(__name__)

RAIL = "joulescope"
SCHEMA = 1
MAX_PAYLOAD_BYTES = 16 * 1024  # a statistics message is about 400 bytes
WINDOW_HISTORY = 256  # window messages kept for window_for()
WINDOW_TOLERANCE_S = 0.02  # clock difference between the board and the bridge's PC that window_for() allows
STATS_KEYS = ("power_w", "energy_j", "utc_unix_s", "sample_id_start", "sample_id_end")
WINDOW_KEYS = ("start_unix_s", "end_unix_s", "sample_id_start", "sample_id_end", "duration_ms", "seq", "gpi")


class JoulescopeConfig(Protocol):
    """What the reader takes from the ``power:`` section (``type: joulescope``)."""

    type: str
    topic: str | None
    stale_after_s: float


def default_topic(device_id: str) -> str:
    return device_topic(device_id, "power/joulescope")


def parse_statistics(payload: bytes, topic: str) -> dict[str, Any]:
    """A statistics message, checked; SensorError saying what is wrong with it."""
    message = _parse_object(payload, topic)
    _require_numbers(message, STATS_KEYS, topic)
    if message["sample_id_end"] < message["sample_id_start"]:
        raise SensorError(f"message on {topic}: sample_id_end {message['sample_id_end']} is before "
                          f"sample_id_start {message['sample_id_start']}")
    return message


def parse_window(payload: bytes, topic: str) -> dict[str, Any]:
    """A window message, checked (energy_mj and mean_power_w may be null); SensorError otherwise."""
    message = _parse_object(payload, topic)
    _require_numbers(message, WINDOW_KEYS, topic)
    for key in ("energy_mj", "mean_power_w"):
        value = message.get(key)
        if value is not None and not _finite(value):
            raise SensorError(f"message on {topic}: {key} is {value!r}, not a finite number or null")
    if message["end_unix_s"] < message["start_unix_s"]:
        raise SensorError(f"message on {topic}: the window ends before it starts")
    return message


@dataclass(frozen=True)
class _Latest:
    message: dict[str, Any]
    received_s: float  # clock() when it arrived
    energy_j: float  # the accumulator, plus what earlier bridge runs had counted


class JoulescopePower:
    """`PowerReader` over the bridge's MQTT messages. Connects in the background at construction."""

    label = LABEL_JOULESCOPE

    def __init__(self, config: JoulescopeConfig, mqtt_settings: MqttSettings, device_id: str, *,
                 connect: bool = True, clock: Callable[[], float] = time.monotonic):
        self.topic = config.topic or default_topic(device_id)
        self.window_topic = f"{self.topic}/window"
        self.availability_topic = f"{self.topic}/availability"
        self._stale_after_s = float(config.stale_after_s)
        self._settings = mqtt_settings
        self._clock = clock
        self._started_s = clock()
        self._cond = threading.Condition()
        self._latest: _Latest | None = None
        self._energy_offset_j = 0.0
        self._windows: deque[dict[str, Any]] = deque(maxlen=WINDOW_HISTORY)
        self._bridge_state: str | None = None
        self._malformed = 0
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None
        if connect:
            if not mqtt_settings.enabled:
                raise SensorError("power.type joulescope reads the Joulescope bridge through the MQTT broker, "
                                  "but mqtt.enabled is false: enable mqtt (host, port) or pick another power.type")
            try:
                self._client = self._start_client(device_id)
            except ConfigError as exc:  # a password file or CA file it cannot read: this sensor cannot work
                raise SensorError(str(exc)) from exc

    # -- PowerReader ------------------------------------------------------------------------------

    def channels(self) -> list[ChannelInfo]:
        with self._cond:
            instrument = self._latest.message.get("instrument") if self._latest else None
        return [ChannelInfo(source="joulescope", chip=str(instrument or "joulescope"), rail=RAIL,
                            unit="W, J (MQTT)", path=self.topic)]

    def read(self) -> PowerReading:
        """The latest statistics as one rail; SensorError when none arrived for `stale_after_s`."""
        with self._cond:
            latest, state = self._latest, self._bridge_state
        now = self._clock()
        silent_s = now - (latest.received_s if latest else self._started_s)
        if latest is None or silent_s > self._stale_after_s:
            said = f" (the bridge said '{state}')" if state and state != "online" else ""
            raise SensorError(f"no Joulescope statistics on {self.topic} for {silent_s:.1f} s{said}: "
                              "is edgeoffload-host joulescope running?")
        rail = RailSample(rail=RAIL, power_w=float(latest.message["power_w"]), energy_j=latest.energy_j)
        return PowerReading(t_s=latest.received_s, rails=(rail,))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.disable_logger()  # paho 2.2 logs a spurious "not connected" error when its loop ends
        for what, step in (("disconnect", client.disconnect), ("stop the network loop", client.loop_stop)):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - each stop step logs and the next one still runs
                log.warning("Joulescope reader: %s failed: %s", what, exc)
        self._connected.clear()

    # -- windows ----------------------------------------------------------------------------------

    def window_for(self, start_unix_s: float, end_unix_s: float, *, tolerance_s: float = WINDOW_TOLERANCE_S,
                   timeout_s: float = 0.0) -> dict[str, Any] | None:
        """The window message that best overlaps [start, end] (each widened by `tolerance_s`), or None.

        Waits up to `timeout_s` for it to arrive (the bridge publishes a window a few tens of ms after
        its falling edge). Returns a copy of the message (the window format).
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = _best_window(self._windows, start_unix_s - tolerance_s, end_unix_s + tolerance_s)
                remaining = deadline - time.monotonic()
                if found is not None or remaining <= 0:
                    return dict(found) if found is not None else None
                self._cond.wait(remaining)

    # -- status -----------------------------------------------------------------------------------

    @property
    def malformed_messages(self) -> int:
        """Messages on our topics that did not parse, since start."""
        return self._malformed

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    # -- messages (paho's thread, or a test) --------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> None:
        """Take one message from `topic`; malformed ones are counted and logged, never raised."""
        try:
            if topic == self.topic:
                self._take_statistics(parse_statistics(payload, topic))
            elif topic == self.window_topic:
                window = parse_window(payload, topic)
                with self._cond:
                    self._windows.append(window)
                    self._cond.notify_all()
            elif topic == self.availability_topic:
                state = _parse_object(payload, topic).get("state")
                with self._cond:
                    self._bridge_state = str(state) if state is not None else None
        except SensorError as exc:
            self._malformed += 1
            level = logging.WARNING if self._malformed <= 10 or self._malformed % 1000 == 0 else logging.DEBUG
            log.log(level, "malformed Joulescope message %d skipped: %s", self._malformed, exc)

    def _take_statistics(self, message: dict[str, Any]) -> None:
        now = self._clock()
        with self._cond:
            previous = self._latest
            if previous is not None and _restarted(previous.message, message):
                self._energy_offset_j = previous.energy_j
                log.info("Joulescope statistics restarted on %s (bridge or instrument restart); the energy "
                         "counter continues from %.3f J", self.topic, previous.energy_j)
            energy_j = self._energy_offset_j + float(message["energy_j"])
            self._latest = _Latest(message, now, energy_j)
            self._cond.notify_all()

    # -- MQTT -------------------------------------------------------------------------------------

    def _start_client(self, device_id: str) -> mqtt.Client:
        s = self._settings
        base = s.client_id or f"edgeoffload-{device_id}"
        client = new_client(s, f"{base}-joulescope-{uuid.uuid4().hex[:8]}", resolve_password(s.password_file),
                            f"{__name__}.paho")
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *args: self._connected.clear()
        client.on_message = lambda _c, _u, message: self.handle(message.topic, bytes(message.payload))
        client.connect_async(s.host, int(s.port), keepalive=int(s.keepalive_s))
        client.loop_start()
        log.info("Joulescope reader: statistics from %s on broker %s:%s", self.topic, s.host, s.port)
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("Joulescope reader: broker %s:%s refused the connection: %s", self._settings.host,
                      self._settings.port, reason)
            return
        client.subscribe([(self.topic, 0), (self.window_topic, 1), (self.availability_topic, 1)])
        self._connected.set()


def _parse_object(payload: bytes, topic: str) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise SensorError(f"message on {topic}: {len(payload)} bytes, more than the {MAX_PAYLOAD_BYTES} "
                          "a Joulescope message can be")
    try:
        message = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SensorError(f"message on {topic}: not JSON ({exc}): {payload[:80]!r}") from None
    if not isinstance(message, dict):
        raise SensorError(f"message on {topic}: a JSON {type(message).__name__}, not an object")
    if message.get("schema") != SCHEMA:
        raise SensorError(f"message on {topic}: schema {message.get('schema')!r}, this daemon reads schema "
                          f"{SCHEMA}: update edgeoffload-host or the daemon so that they match")
    return message


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require_numbers(message: Mapping[str, Any], keys: tuple[str, ...], topic: str) -> None:
    missing = [k for k in keys if k not in message]
    if missing:
        raise SensorError(f"message on {topic}: missing {', '.join(missing)}")
    for key in keys:
        if not _finite(message[key]):
            raise SensorError(f"message on {topic}: {key} is {message[key]!r}, not a finite number")


def _restarted(previous: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """The accumulator went back, or the instrument's sample counter did: a new bridge run."""
    return (current["energy_j"] < previous["energy_j"] or current["sample_id_start"] < previous["sample_id_start"]
            or current.get("instrument") != previous.get("instrument"))


def _best_window(windows: deque[dict[str, Any]], lo: float, hi: float) -> dict[str, Any] | None:
    """The window with the largest overlap with [lo, hi]; the latest among equals; None without overlap."""
    best, best_overlap = None, 0.0
    for window in windows:
        overlap = min(hi, window["end_unix_s"]) - max(lo, window["start_unix_s"])
        if overlap > 0 and overlap >= best_overlap:
            best, best_overlap = window, overlap
    return best
