"""MQTT reporter: the daemon's state, decisions and events on a broker, for dashboards and fleets.

Topics under ``edgeoffload/v1/<device_id>/`` (QoS, retained): ``availability`` (1, yes: ``online``,
``offline`` as the last will, ``stopped``), ``status`` (1, yes), ``profile`` (1, yes), ``decision`` (0, no),
``decisions/summary`` (0, no), ``events`` (1, no).

Every payload is a JSON object carrying ``schema``, ``device_id``, ``boot_id`` and ``timestamp_utc``.
The daemon starts and works without a broker: paho connects in the background and retries by itself.
Retained state set while offline is remembered and republished on every (re)connect; decisions,
summaries and events published while offline are dropped and counted, never queued without bound.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edgeoffload.api.mqtt_payloads import (
    availability_payload, default_client_id, device_topic, encode, resolve_password,
)
from edgeoffload.errors import ConfigError

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
RETAINED_SUBTOPICS = ("status", "profile")
"""Retained state the reporter remembers and republishes after each connect, in this order."""

MessageHandler = Callable[[bytes], None]


class MqttSettings(Protocol):
    """What the reporter reads from its config (``edgeoffload.config`` provides ``MqttConfig``)."""

    enabled: bool
    host: str
    port: int
    username: str | None
    password_file: str | os.PathLike[str] | None
    tls: bool
    ca_file: str | os.PathLike[str] | None
    keepalive_s: int
    queue_max: int
    client_id: str | None


# -- payload helpers (pure) ---------------------------------------------------------------------


def new_client(settings: MqttSettings, client_id: str, password: str | None, logger: str) -> mqtt.Client:
    """A paho (callback API v2) client for the `mqtt:` settings: logging, reconnect back-off, credentials and
    TLS; the caller adds its callbacks and connects. ConfigError when the CA file cannot be loaded."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
    client.enable_logger(logging.getLogger(logger))
    client.suppress_exceptions = True
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    if settings.username:
        client.username_pw_set(settings.username, password)
    elif password is not None:
        log.warning("an MQTT password is configured but no mqtt.username; connecting without credentials")
    if settings.tls:
        ca_file = str(settings.ca_file) if settings.ca_file else None
        try:
            client.tls_set(ca_certs=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"mqtt.ca_file: cannot load CA certificates from {ca_file}: {exc}") from exc
    return client


class MqttReporter:
    """Publishes the daemon's state to an MQTT broker; every method is a cheap no-op when disabled.

    Call ``start()`` and ``stop()`` from the owner's thread, never from a message handler. Publishing
    methods are thread-safe. One instance is started once.
    """

    def __init__(self, settings: MqttSettings, device_id: str, boot_id: str):
        self._enabled = bool(settings.enabled)
        self._settings = settings
        self._device_id = device_id
        self._boot_id = boot_id
        if self._enabled and (not device_id or any(c in device_id for c in "/+#")):
            raise ConfigError(f"device_id {device_id!r} cannot be used in an MQTT topic: "
                              "it must be non-empty and contain no '/', '+' or '#'")
        self._lock = threading.RLock()
        self._client: mqtt.Client | None = None
        self._connected = False
        self._up = threading.Event()
        self._stopping = False
        self._link = "new"  # last connection state logged: new, up, down, unreachable, refused:<why>
        self._retained: dict[str, bytes] = {}
        self._handlers: dict[str, MessageHandler] = {}
        self._dropped = 0

    @property
    def connected(self) -> bool:
        """True while a session with the broker is up."""
        return self._connected

    def wait_connected(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` for a session with the broker; False if none (or MQTT is disabled)."""
        return self._enabled and self._up.wait(timeout_s)

    @property
    def dropped_messages(self) -> int:
        """Decisions, summaries and events not sent (offline, queue full or unencodable) since start."""
        return self._dropped

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in the background; returns at once, with or without a broker."""
        if not self._enabled or self._client is not None:
            return
        s = self._settings
        password = resolve_password(s.password_file)
        client = self._make_client(password)
        will = encode(availability_payload("offline", self._device_id, self._boot_id), self._device_id, self._boot_id)
        client.will_set(self._topic("availability"), will, qos=1, retain=True)
        self._client = client
        client.connect_async(s.host, int(s.port), keepalive=int(s.keepalive_s))
        client.loop_start()
        log.info("MQTT reporter started: broker %s:%s, tls %s, auth %s, client id %s",
                 s.host, s.port, "on" if s.tls else "off", "password" if password is not None else "none",
                 self._client_id())

    def stop(self, timeout_s: float = 2.0) -> None:
        """Publish retained ``stopped``, wait up to ``timeout_s`` for the broker to take it, disconnect."""
        client = self._client
        if client is None or self._stopping:
            return
        self._stopping = True
        self._stop_step("publish availability 'stopped'", self._publish_stopped, timeout_s)
        client.disable_logger()  # paho 2.2 logs a spurious "not connected" error when its loop ends
        self._stop_step("disconnect", client.disconnect)
        self._stop_step("stop the network loop", client.loop_stop)
        with self._lock:
            self._connected = False
        log.info("MQTT reporter stopped")

    # -- publishing -----------------------------------------------------------------------------

    def set_status(self, payload: Mapping[str, Any]) -> None:
        """Retained ``status``: published now if connected, and again after every reconnect."""
        self._set_retained("status", payload)

    def set_profile(self, payload: Mapping[str, Any]) -> None:
        """Retained ``profile``: published now if connected, and again after every reconnect."""
        self._set_retained("profile", payload)

    def publish_decision(self, payload: Any) -> None:
        """One decision on ``decision`` (QoS 0); dropped and counted while offline."""
        self._publish_transient("decision", payload, qos=0)

    def publish_summary(self, payload: Any) -> None:
        """A summary on ``decisions/summary`` (QoS 0); dropped and counted while offline."""
        self._publish_transient("decisions/summary", payload, qos=0)

    def publish_power(self, payload: Any) -> None:
        """Power per rail and in total on ``power`` (QoS 0, every mqtt.power_interval_s); dropped offline."""
        self._publish_transient("power", payload, qos=0)

    def publish_event(self, payload: Any) -> None:
        """An event on ``events`` (QoS 1, not retained); dropped and counted while offline."""
        self._publish_transient("events", payload, qos=1)

    def subscribe(self, subtopic: str, handler: MessageHandler) -> None:
        """Call ``handler(payload_bytes)`` on paho's thread for messages on ``<device topic>/<subtopic>``.

        The subscription is renewed on every reconnect. Exceptions from ``handler`` are logged and
        swallowed. Handlers must return quickly and must not call ``stop()``.
        """
        if not self._enabled:
            return
        with self._lock:
            self._handlers[subtopic] = handler
            if self._client is not None:
                self._client.message_callback_add(self._topic(subtopic), self._dispatcher(subtopic, handler))
                if self._connected:
                    self._client.subscribe(self._topic(subtopic), qos=1)

    # -- internals ------------------------------------------------------------------------------

    def _topic(self, subtopic: str) -> str:
        return device_topic(self._device_id, subtopic)

    def _encode(self, payload: Any) -> bytes | None:
        try:
            return encode(payload, self._device_id, self._boot_id)
        except Exception as exc:  # noqa: BLE001 - reporting must never take the daemon down
            log.warning("cannot encode an MQTT payload (%s): %s", type(payload).__name__, exc)
            return None

    def _client_id(self) -> str:
        return self._settings.client_id or default_client_id(self._device_id, self._boot_id)

    def _make_client(self, password: str | None) -> mqtt.Client:
        client = new_client(self._settings, self._client_id(), password, f"{__name__}.paho")
        client.max_queued_messages_set(int(self._settings.queue_max))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        for subtopic, handler in self._handlers.items():
            client.message_callback_add(self._topic(subtopic), self._dispatcher(subtopic, handler))
        return client

    def _send(self, subtopic: str, data: bytes, qos: int, retain: bool) -> mqtt.MQTTMessageInfo | None:
        """Hand one message to paho (caller holds the lock); None when it was not accepted."""
        if self._client is None:
            return None
        try:
            info = self._client.publish(self._topic(subtopic), data, qos=qos, retain=retain)
        except (ValueError, OSError) as exc:
            log.warning("cannot publish on %s: %s", subtopic, exc)
            return None
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE or (qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS):
            log.debug("MQTT message on %s not sent: %s", subtopic, mqtt.error_string(info.rc))
            return None
        return info

    def _set_retained(self, subtopic: str, payload: Mapping[str, Any]) -> None:
        if not self._enabled:
            return
        data = self._encode(payload)
        if data is None:
            return
        with self._lock:
            self._retained[subtopic] = data
            if self._connected:
                self._send(subtopic, data, qos=1, retain=True)

    def _publish_transient(self, subtopic: str, payload: Any, qos: int) -> None:
        if not self._enabled:
            return
        data = self._encode(payload) if self._connected else None
        with self._lock:
            if data is None or not self._connected or self._send(subtopic, data, qos, retain=False) is None:
                self._dropped += 1

    def _publish_stopped(self, timeout_s: float) -> None:
        with self._lock:
            if not self._connected:
                log.info("not connected to the MQTT broker; availability 'stopped' not published")
                return
            data = encode(availability_payload("stopped", self._device_id, self._boot_id),
                          self._device_id, self._boot_id)
            info = self._send("availability", data, qos=1, retain=True)
        if info is None:
            log.warning("availability 'stopped' was not accepted for sending")
            return
        info.wait_for_publish(timeout_s)  # outside the lock: paho's thread delivers the PUBACK
        if not info.is_published():
            log.warning("broker did not acknowledge availability 'stopped' within %.1f s", timeout_s)

    @staticmethod
    def _stop_step(what: str, step: Callable[..., Any], *args: Any) -> None:
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001 - each stop step logs and the next one still runs
            log.warning("MQTT stop: %s failed: %s", what, exc)

    def _log_change(self, state: str, level: int, msg: str, *args: Any) -> None:
        """Log a connection change once, not on every retry."""
        if state != self._link:
            self._link = state
            log.log(level, msg, *args)

    # -- paho callbacks (paho's thread) -----------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        s = self._settings
        if reason.is_failure:
            self._log_change(f"refused:{reason}", logging.ERROR,
                             "MQTT broker %s:%s refused the connection: %s (check mqtt.username and the password); "
                             "retrying in the background", s.host, s.port, reason)
            return
        if self._stopping:
            return
        with self._lock:
            self._connected = True
            self._up.set()
            pending = client.drop_out_messages()  # stale retained state must not overwrite what follows
            self._republish(pending)
            for subtopic in self._handlers:
                client.subscribe(self._topic(subtopic), qos=1)
        self._log_change("up", logging.INFO, "connected to MQTT broker %s:%s", s.host, s.port)

    def _republish(self, pending: list[mqtt.MQTTMessage]) -> None:
        """Availability online, the latest retained state, then unacknowledged events (lock held)."""
        online = availability_payload("online", self._device_id, self._boot_id)
        self._send("availability", encode(online, self._device_id, self._boot_id), qos=1, retain=True)
        for subtopic in RETAINED_SUBTOPICS:
            if subtopic in self._retained:
                self._send(subtopic, self._retained[subtopic], qos=1, retain=True)
        ours = {self._topic(t) for t in ("availability", *RETAINED_SUBTOPICS)}
        for message in pending:
            if message.topic not in ours and self._client is not None:
                self._client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
            self._up.clear()
        if self._stopping:
            log.debug("disconnected from the MQTT broker: %s", reason)
        elif was_connected:
            self._log_change("down", logging.WARNING, "lost connection to MQTT broker %s:%s (%s); "
                             "reconnecting in the background", self._settings.host, self._settings.port, reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if self._link == "new":
            self._log_change("unreachable", logging.WARNING, "MQTT broker %s:%s not reachable yet; "
                             "retrying in the background", self._settings.host, self._settings.port)
        else:
            log.debug("MQTT broker %s:%s still not reachable", self._settings.host, self._settings.port)

    def _dispatcher(self, subtopic: str, handler: MessageHandler) -> Callable[..., None]:
        def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
            try:
                handler(message.payload)
            except Exception:  # noqa: BLE001 - a handler's bug must not kill paho's loop
                log.exception("MQTT handler for %s failed", subtopic)
        return on_message
