"""An embedded pure-Python MQTT broker (amqtt) for the demo when no broker is configured.

Real deployments point the daemon at Mosquitto or a fleet broker; this exists so the demo needs no root.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

from edgeoffload.errors import EdgeOffloadError

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """amqtt on its own event loop in a background thread, anonymous, bound to loopback."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self._loop = asyncio.new_event_loop()
        self._broker = None
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 10.0) -> "EmbeddedBroker":
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise EdgeOffloadError("the embedded broker needs amqtt: pip install 'edgeoffload-host[demo]', "
                                   "or pass --broker HOST:PORT") from None
        cfg = {"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
               "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
        self._broker = Broker(cfg, loop=self._loop)
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            raise EdgeOffloadError(f"embedded MQTT broker did not start on {self.host}:{self.port}: {self._error}")
        _wait_port(self.host, self.port, timeout_s)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        if self._broker is None or not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(timeout=5)
        except Exception as exc:
            log.debug("embedded broker shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise EdgeOffloadError(f"embedded MQTT broker is not accepting connections on {host}:{port}")
