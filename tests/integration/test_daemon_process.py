"""`edgeoffloadd` as a real process: signals, broker restarts, the last will, a workload from a folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from loop_helpers import model_dir, write_config, write_policy  # noqa: E402

TOPIC = "edgeoffload/v1/test-board/"
DAEMON = Path(sys.executable).parent / "edgeoffloadd"


@pytest.fixture
def daemon(tmp_path, tiny_models, mosquitto):
    """Start edgeoffloadd with the tiny models against the test broker; killed at the end if still alive."""
    procs = []

    def start(*args: str, env: dict | None = None, **config_extra) -> subprocess.Popen:
        folder = model_dir(tmp_path, tiny_models)
        cfg = write_config(tmp_path, folder, endpoint_url=None, broker=(mosquitto.host, mosquitto.port),
                           **config_extra)
        cmd = [str(DAEMON), "--config", str(cfg), *args] if DAEMON.exists() else \
            [sys.executable, "-c", "import sys; from edgeoffload.cli import daemon_main; sys.exit(daemon_main())",
             "--config", str(cfg), *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **(env or {})})
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def retained_state(mqtt_probe, mosquitto) -> str:
    """What a subscriber arriving now is told about availability (the broker's retained message)."""
    fresh = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "availability",))
    msg = fresh.wait_for(TOPIC + "availability", timeout=5)
    assert msg.retained
    return msg.json()["state"]


def wait_running(probe, timeout=30):
    return probe.wait_for(TOPIC + "status", lambda m: m.json()["state"] == "running", timeout=timeout).json()


def test_signals_broker_restart_and_clean_stop(daemon, mosquitto, mqtt_probe, tmp_path):
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "#",))
    proc = daemon()
    boot_id = wait_running(probe)["boot_id"]
    # The broker goes away and comes back: the daemon reconnects and republishes its retained state.
    mosquitto.stop()
    mosquitto.start()
    probe2 = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "#",))
    online = probe2.wait_for(TOPIC + "availability", lambda m: m.json()["state"] == "online", timeout=40)
    assert online.json()["boot_id"] == boot_id
    assert wait_running(probe2)["boot_id"] == boot_id
    # SIGHUP reloads the policy.
    write_policy(tmp_path / "policy.yaml", objective="edp", revision="pushed")
    proc.send_signal(signal.SIGHUP)
    assert probe2.wait_for(TOPIC + "status", lambda m: m.json()["policy"]["revision"] == "pushed", timeout=10)
    # SIGUSR1 re-profiles on demand: a newer retained profile follows.
    first = probe2.wait_for(TOPIC + "profile").json()["profiles"][0]["measured_utc"]
    proc.send_signal(signal.SIGUSR1)
    assert probe2.wait_for(TOPIC + "profile", lambda m: m.json()["profiles"][0]["measured_utc"] > first, timeout=20)
    # SIGTERM: a clean stop leaves retained availability "stopped".
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.stdout.read()
    assert probe2.wait_for(TOPIC + "availability", lambda m: m.json()["state"] == "stopped", timeout=10)
    assert retained_state(mqtt_probe, mosquitto) == "stopped"


def test_a_killed_daemon_leaves_its_last_will(daemon, mosquitto, mqtt_probe):
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "#",))
    proc = daemon()
    wait_running(probe)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert probe.wait_for(TOPIC + "availability", lambda m: m.json()["state"] == "offline", timeout=12)
    assert retained_state(mqtt_probe, mosquitto) == "offline"


def write_png(path: Path, img: np.ndarray) -> None:
    import matplotlib.image
    matplotlib.image.imsave(path, img)


def test_workload_from_an_image_folder_runs_and_exits(daemon, mosquitto, mqtt_probe, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(3)
    write_png(inputs / "a.png", rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    np.save(inputs / "b.npy", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (inputs / "notes.txt").write_text("ignored")
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "#",))
    proc = daemon("--exit-after-workload", workload={"requests": 6, "inputs": str(inputs)})
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "workload done: 6 completed, 0 failed" in out
    deadline = time.monotonic() + 5
    while len(probe.messages(TOPIC + "decision")) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(m.json()["request_id"] for m in probe.messages(TOPIC + "decision")) == \
        sorted(f"wl-{i}" for i in range(1, 7))
    assert probe.wait_for(TOPIC + "availability", lambda m: m.json()["state"] == "stopped")
    assert retained_state(mqtt_probe, mosquitto) == "stopped"


def test_daemon_exits_2_with_every_problem_of_a_bad_config(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("version: 1\ndevice_id: 'a/b'\nmodels: []\nmqtt:\n  port: 70000\n")
    cmd = [sys.executable, "-c", "import sys; from edgeoffload.cli import daemon_main; sys.exit(daemon_main())",
           "--config", str(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert any(f"{cfg}:2: device_id:" in line for line in lines)
    assert any(f"{cfg}:5: mqtt.port:" in line for line in lines)
    assert any(f"{cfg}:3: models:" in line for line in lines)


def test_systemd_notify_ready_watchdog_and_stopping(daemon, tmp_path):
    import socket

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        proc = daemon(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})

        def next_message() -> dict:
            return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())

        messages = [next_message()]
        while "READY" not in messages[-1]:
            messages.append(next_message())
        assert messages[-1]["STATUS"].startswith("2 models; targets cpu1")
        assert "degraded: target npu" in messages[-1]["STATUS"]
        assert next_message() == {"WATCHDOG": "1"}  # every 0.2 s: half of WatchdogSec
        proc.send_signal(signal.SIGTERM)
        while "STOPPING" not in (m := next_message()):
            assert m == {"WATCHDOG": "1"}
        assert m["STOPPING"] == "1"
        assert proc.wait(timeout=20) == 0
