"""Integration fixtures for MQTT: a private mosquitto broker per test, and a real subscriber to watch it.

Fixtures:

``mosquitto``
    A broker on ``127.0.0.1:<free port>``, anonymous access allowed, no persistence. The object has
    ``.host``, ``.port``, ``.stop()``, ``.start()`` (restart on the same port; retained messages are
    gone, as after a real broker restart), ``.kill()``, ``.log_text()`` (the log spans restarts) and
    ``.wait_for_log(text, count=1, timeout=5)`` (e.g. until a client's SUBSCRIBE has arrived:
    ``"edgeoffload/v1/dev1/policy/set (QoS 1)"``).
``mosquitto_factory``
    ``mosquitto_factory(users=None, extra_conf=())`` for brokers with other settings. ``users``
    (``{"name": "password"}``) makes a broker that refuses anonymous clients (the password file is made
    with ``mosquitto_passwd``; the test skips without it). ``extra_conf`` lines are appended to the
    config. Started; stopped at teardown.
``mqtt_probe``
    ``mqtt_probe(host, port, topics=("#",), username=None, password=None) -> MqttProbe``: a subscriber
    connected and subscribed before it is returned; closed at teardown.

``MqttProbe`` collects every message per topic (thread-safe) with its ``retained`` flag;
``probe.wait_for(topic, predicate=None, timeout=5)`` returns the first collected message on ``topic``
(earlier ones included; ``probe.clear()`` forgets them) for which ``predicate(message)`` is true.
``message.json()`` decodes the payload.

Without the ``mosquitto`` binary these tests skip, unless ``EDGEOFFLOAD_REQUIRE_MOSQUITTO=1`` (CI),
which makes a missing broker an error.

``dbus_session``
    A private ``dbus-daemon`` (session-type config, ``unix:dir=`` in a short temporary folder, EXTERNAL
    auth, everything allowed) for this test; ``DBUS_SESSION_BUS_ADDRESS`` points at it for the test's
    duration (so a Service with ``dbus.bus: session`` and child processes use it) and the fixture yields
    the address. Connect clients with ``dbus_helpers.Client(address)`` (a private connection), never
    ``pydbus.SessionBus()`` (a process-wide singleton that would outlive the bus) nor ``pydbus.connect()``
    (it can deadlock the test process: ``edgeoffload.api.dbus_client.private_connection`` says why). Without
    ``dbus-daemon``, PyGObject or pydbus these tests skip, unless ``EDGEOFFLOAD_REQUIRE_DBUS=1`` (CI).
``dbus_service``, ``dbus_client``, ``dbus_signals``
    A Service factory publishing on that bus, a client connection, and a recorder of the daemon's signals
    (see ``dbus_helpers``).
``run_service``
    ``run_service(config_path) -> Service``: an in-process daemon from a config file, started; the test
    suites' own service factories build on it. Stopped at teardown (or ``run_service.stop_all()``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from support import free_port
from paho.mqtt.enums import CallbackAPIVersion

BROKER_START_TIMEOUT_S = 5.0
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def find_tool(name: str) -> str | None:
    """Path of a mosquitto tool; brokers live in sbin, which a non-root PATH often lacks."""
    return shutil.which(name, path=_SEARCH_PATH)


@pytest.fixture(scope="session")
def mosquitto_binary() -> str:
    """Path of ``mosquitto``; skips (or fails with EDGEOFFLOAD_REQUIRE_MOSQUITTO=1) when absent."""
    path = find_tool("mosquitto")
    if path is None:
        reason = "mosquitto is not installed (apt-get install mosquitto mosquitto-clients)"
        if os.environ.get("EDGEOFFLOAD_REQUIRE_MOSQUITTO") == "1":
            pytest.fail(f"EDGEOFFLOAD_REQUIRE_MOSQUITTO=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


class Mosquitto:
    """One mosquitto process on a fixed port, restartable."""

    def __init__(self, binary: str, workdir: Path, password_file: Path | None = None,
                 extra_conf: Iterable[str] = ()):
        self.host = "127.0.0.1"
        self.port = free_port()
        self._binary = binary
        self._log = workdir / "mosquitto.log"
        self._conf = workdir / "mosquitto.conf"
        self._proc: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} {self.host}", "persistence false",
                 "log_dest stderr", "log_type all", "connection_messages true"]  # stderr: unbuffered
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to 'mosquitto' and cannot write our tmp dir
        if password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        self._conf.write_text("\n".join([*lines, *extra_conf]) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart) on the same port and wait until it accepts connections."""
        if self.running:
            return
        with self._log.open("ab") as log_file:  # the child keeps its own copy of the descriptor
            self._proc = subprocess.Popen([self._binary, "-c", str(self._conf)],
                                          stdout=subprocess.DEVNULL, stderr=log_file)
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}:\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {BROKER_START_TIMEOUT_S} s\n"
                           f"{self.log_text()}")

    def stop(self) -> None:
        """Stop cleanly (SIGTERM); clients see their connection close."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self.stop()

    def log_text(self) -> str:
        """The broker's log so far ('' before it wrote one)."""
        try:
            return self._log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``text`` occurs ``count`` times in the log; AssertionError with the log otherwise."""
        deadline = time.monotonic() + timeout
        while self.log_text().count(text) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not {count}x in the mosquitto log within {timeout} s:\n"
                                     f"{self.log_text()}")
            time.sleep(0.02)


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file for ``users``; skips the test when ``mosquitto_passwd`` is missing."""
    tool = find_tool("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
    for i, (name, password) in enumerate(users.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run([tool, "-b", *create, str(path), name, password], check=True, capture_output=True)
    return path


@pytest.fixture
def mosquitto_factory(mosquitto_binary, tmp_path_factory) -> Iterator[Callable[..., Mosquitto]]:
    """``make(users=None, extra_conf=()) -> Mosquitto``, started; all stopped at teardown."""
    brokers: list[Mosquitto] = []

    def make(users: dict[str, str] | None = None, extra_conf: Iterable[str] = ()) -> Mosquitto:
        workdir = tmp_path_factory.mktemp("mosquitto")
        password_file = write_password_file(workdir / "passwd", users) if users else None
        broker = Mosquitto(mosquitto_binary, workdir, password_file, extra_conf)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory) -> Mosquitto:
    """A running anonymous broker on 127.0.0.1 for this test."""
    return mosquitto_factory()


@dataclass(frozen=True)
class ProbeMessage:
    topic: str
    payload: bytes
    qos: int
    retained: bool
    received_monotonic: float

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttProbe:
    """A real paho subscriber that records messages per topic; also publishes for tests."""

    def __init__(self, host: str, port: int, topics: Iterable[str] = ("#",), username: str | None = None,
                 password: str | None = None, timeout: float = 5.0):
        self._topics = list(topics)
        self._cond = threading.Condition()
        self._messages: dict[str, list[ProbeMessage]] = {}
        self._subscribed = threading.Event()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=f"probe-{os.getpid()}-{id(self):x}")
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"probe could not subscribe to {self._topics} on {host}:{port}")

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client, userdata, message) -> None:
        msg = ProbeMessage(message.topic, bytes(message.payload), message.qos, bool(message.retain),
                           time.monotonic())
        with self._cond:
            self._messages.setdefault(msg.topic, []).append(msg)
            self._cond.notify_all()

    def messages(self, topic: str) -> list[ProbeMessage]:
        """Everything received on ``topic`` so far, oldest first."""
        with self._cond:
            return list(self._messages.get(topic, []))

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def wait_for(self, topic: str, predicate: Callable[[ProbeMessage], bool] | None = None,
                 timeout: float = 5.0) -> ProbeMessage:
        """The first message on ``topic`` matching ``predicate``; AssertionError listing what came otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in self._messages.get(topic, []):
                    if predicate is None or predicate(msg):
                        return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [m.payload[:200] for m in self._messages.get(topic, [])]
                    raise AssertionError(f"no matching message on {topic} within {timeout} s; saw {seen}")
                self._cond.wait(remaining)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publish and wait until the broker has it."""
        self._client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def mqtt_probe() -> Iterator[Callable[..., MqttProbe]]:
    """``make(host, port, topics=("#",), username=None, password=None) -> MqttProbe``; closed at teardown."""
    probes: list[MqttProbe] = []

    def make(host: str, port: int, **kwargs: Any) -> MqttProbe:
        probe = MqttProbe(host, port, **kwargs)
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()


def _dbus_missing(reason: str) -> None:
    if os.environ.get("EDGEOFFLOAD_REQUIRE_DBUS") == "1":
        pytest.fail(f"EDGEOFFLOAD_REQUIRE_DBUS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def dbus_session(monkeypatch) -> Iterator[str]:
    """A private session bus for this test; yields its address (also in DBUS_SESSION_BUS_ADDRESS)."""
    binary = shutil.which("dbus-daemon")
    if binary is None:
        _dbus_missing("dbus-daemon is not installed (apt-get install dbus-daemon)")
    try:
        import gi

        gi.require_version("Gio", "2.0")
        from gi.repository import Gio  # noqa: F401
        import pydbus  # noqa: F401
    except (ImportError, ValueError) as exc:
        _dbus_missing(f"the D-Bus tests need PyGObject and pydbus (pip install 'edgeoffload[dbus]'): {exc}")
    from dbus_helpers import PrivateBus

    bus = PrivateBus(binary)
    try:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
        yield bus.address
    finally:
        bus.stop()


@pytest.fixture
def run_service():
    """``run_service(config_path) -> Service``: loaded from that file (``service.config_path``) and started.
    Every service a test runs and has not stopped is stopped at teardown (or at ``run_service.stop_all()``),
    the last started first; one whose start failed half-way is stopped too."""
    from edgeoffload.config import load_config
    from edgeoffload.service import Service

    started = []

    def run(config_path: Path) -> Service:
        started.append(svc := Service(load_config(config_path), config_path=config_path))
        svc.start()
        return svc

    def stop_all() -> None:
        for svc in reversed(started):
            if svc.state != "stopped":
                svc.stop()

    run.stop_all = stop_all
    yield run
    stop_all()


@pytest.fixture
def dbus_service(dbus_session, tmp_path, tiny_models, run_service):
    """``make(endpoint_url=None, folder=tmp_path, dbus={}, **config) -> Service``: started, published on the
    private bus (``decision_signals_per_s`` 1000 unless ``dbus`` says otherwise), config from
    ``loop_helpers.write_config`` in ``folder``; ``service.config_path`` is that file. Stopped at teardown."""
    from loop_helpers import model_dir, write_config

    models = model_dir(tmp_path, tiny_models)

    def make(endpoint_url=None, folder: Path | None = None, dbus: dict | None = None, **extra) -> Service:
        (folder := folder or tmp_path).mkdir(exist_ok=True)
        return run_service(write_config(folder, models, endpoint_url=endpoint_url, broker=None,
                                        dbus={"bus": "session", "decision_signals_per_s": 1000, **(dbus or {})},
                                        **extra))

    return make


@pytest.fixture
def dbus_client(dbus_session):
    """``dbus_helpers.Client`` on its own connection to the private bus."""
    from dbus_helpers import Client

    client = Client(dbus_session)
    yield client
    client.close()


@pytest.fixture
def dbus_signals(dbus_client):
    """``dbus_helpers.SignalRecorder`` of every signal from /org/edgeoffload/Daemon1, on ``dbus_client``."""
    from dbus_helpers import SignalRecorder

    recorder = SignalRecorder(dbus_client.bus)
    yield recorder
    recorder.close()
