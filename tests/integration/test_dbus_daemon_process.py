"""`edgeoffloadd` as a real process on a private bus: found by name, called by gdbus, stopped by SIGTERM
while calls are in flight (each gets an answer or a named error), and its MQTT availability says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dbus_helpers import (  # noqa: E402
    ERROR, GONE, Client, busctl, gdbus_bytes, gdbus_call, gdbus_value, remote_error, wait_until,
)
from loop_helpers import model_dir, write_config  # noqa: E402
from tinymodels import run_directly  # noqa: E402

from gi.repository import GLib  # noqa: E402

TOPIC = "edgeoffload/v1/test-board/"
DAEMON = Path(sys.executable).parent / "edgeoffloadd"
DEST = ["org.edgeoffload.Daemon1", "/org/edgeoffload/Daemon1", "org.edgeoffload.Daemon1"]
SHAPE = [1, 16, 16, 3]


@pytest.fixture
def daemon(tmp_path, tiny_models, mosquitto, dbus_session):
    """Start edgeoffloadd on the private bus and the test broker; killed at the end if still alive."""
    procs = []

    def start() -> subprocess.Popen:
        folder = model_dir(tmp_path, tiny_models)
        cfg = write_config(tmp_path, folder, endpoint_url=None, broker=(mosquitto.host, mosquitto.port),
                           dbus={"bus": "session", "decision_signals_per_s": 5})
        cmd = [str(DAEMON), "--config", str(cfg)] if DAEMON.exists() else \
            [sys.executable, "-c", "import sys; from edgeoffload.cli import daemon_main; sys.exit(daemon_main())",
             "--config", str(cfg)]
        with (tmp_path / "daemon.log").open("w") as log:  # a file, not a pipe nobody reads
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": dbus_session})
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def log_of(tmp_path: Path) -> str:
    return (tmp_path / "daemon.log").read_text(errors="replace")


def wait_published(proc: subprocess.Popen, client: Client, tmp_path: Path) -> None:
    """Until the daemon owns its name and says it serves (degraded: the test NPU has no delegate)."""
    def up() -> bool:
        assert proc.poll() is None, f"edgeoffloadd exited with {proc.returncode}:\n{log_of(tmp_path)}"
        return client.name_has_owner() and client.proxy().Status in ("running", "degraded")

    wait_until(up, 120, "edgeoffloadd publishing org.edgeoffload.Daemon1")


def retained_state(mqtt_probe, mosquitto) -> str:
    fresh = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "availability",))
    msg = fresh.wait_for(TOPIC + "availability", timeout=10)
    assert msg.retained
    return msg.json()["state"]


def test_the_daemon_answers_gdbus_and_busctl(daemon, dbus_session, dbus_client, tiny_models, tmp_path):
    proc = daemon()
    wait_published(proc, dbus_client, tmp_path)
    x = np.random.default_rng(5).integers(0, 256, SHAPE, dtype=np.uint8)
    got = gdbus_value(gdbus_call(dbus_session, "Infer", "tiny_16", gdbus_bytes(x.tobytes()), "@at [1, 16, 16, 3]",
                                 "uint8"), "(ayatssdds)")
    assert got[1:4] == ([1, 10], "float32", "cpu1") and got[6] == "modelled"
    scores = np.frombuffer(bytes(got[0]), "<f4").reshape(got[1])
    np.testing.assert_allclose(scores, run_directly(tiny_models["float"], x), rtol=1e-6, atol=1e-7)
    assert busctl(dbus_session, "get-property", *DEST, "Models")["data"] == ["tiny_16", "tiny_q_16"]
    assert busctl(dbus_session, "call", *DEST, "Decide", "s", "tiny_16")["data"][0] == "cpu1"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log_of(tmp_path)
    wait_until(lambda: not dbus_client.name_has_owner(), 30, "the name leaving the bus")


class Caller(threading.Thread):
    """Calls Infer on its own connection until the name is gone or a call fails otherwise than NotReady;
    checks every answer against the reference and keeps every refusal."""

    def __init__(self, address: str, x: np.ndarray, expected: np.ndarray, started: threading.Semaphore) -> None:
        super().__init__(daemon=True)
        self.address, self.x, self.expected, self.started = address, x, expected, started
        self.answers = 0
        self.wrong: list[str] = []
        self.refused: list[tuple[str, str]] = []  # (error name, message); the last one ended the loop

    def run(self) -> None:
        client = Client(self.address)
        try:
            proxy = client.proxy()
            while not self.refused or self.refused[-1][0] == ERROR + "NotReady":
                try:
                    out, shape, dtype, *_ = proxy.Infer("tiny_16", self.x.tobytes(), SHAPE, "uint8", timeout=60)
                except GLib.Error as exc:
                    self.refused.append(remote_error(exc))
                    continue
                got = np.frombuffer(bytes(out), "<f4").reshape(shape)
                if not np.allclose(got, self.expected, rtol=1e-6, atol=1e-7):
                    self.wrong.append(f"{got} != {self.expected}")
                self.answers += 1
                if self.answers == 1:
                    self.started.release()
        finally:
            client.close()


def test_sigterm_with_calls_in_flight(daemon, dbus_session, dbus_client, tiny_models, tmp_path, mosquitto,
                                      mqtt_probe):
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "availability",))
    proc = daemon()
    wait_published(proc, dbus_client, tmp_path)
    assert probe.wait_for(TOPIC + "availability", lambda m: m.json()["state"] == "online", timeout=30)
    started = threading.Semaphore(0)
    callers = []
    for seed in range(6):
        x = np.random.default_rng(seed).integers(0, 256, SHAPE, dtype=np.uint8)
        callers.append(Caller(dbus_session, x, run_directly(tiny_models["float"], x), started))
        callers[-1].start()
    for _ in callers:
        assert started.acquire(timeout=60), "a caller got no first answer"
    proc.send_signal(signal.SIGTERM)
    for c in callers:
        c.join(120)
    assert proc.wait(timeout=60) == 0, log_of(tmp_path)
    assert not any(c.is_alive() for c in callers), "a call never returned"
    assert all(c.answers > 0 and not c.wrong for c in callers), [c.wrong[:1] for c in callers]
    for c in callers:  # in flight or sent during the stop: answered or refused by name; later: no owner
        *refused, (last, message) = c.refused
        assert last in GONE and "org.edgeoffload.Daemon1" in message, c.refused[-3:]
        assert all(n == ERROR + "NotReady" and "the daemon is stopping" in m for n, m in refused), refused[:3]
    assert probe.wait_for(TOPIC + "availability", lambda m: m.json()["state"] == "stopped", timeout=30)
    assert retained_state(mqtt_probe, mosquitto) == "stopped"
