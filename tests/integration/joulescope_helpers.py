"""Building blocks for the Joulescope energy tests: the real `edgeoffload-host joulescope` bridge with a
synthetic instrument drawing a constant power, run on a thread, and the daemon config sections that read it
(`power: {type: joulescope}`)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host_tools" / "joulescope"))

from joulescope_fakes import STATS_FREQ_HZ, VOLTAGE_V, v1_statistics  # noqa: E402

from edgeoffload_host.joulescope.bridge import Bridge, BridgeSummary, BrokerSettings  # noqa: E402

DEVICE = "test-board"  # loop_helpers.write_config's device_id
TOPIC = f"edgeoffload/v1/{DEVICE}/power/joulescope"  # JoulescopePowerConfig's default topic for DEVICE
POWER_W = 3.2  # what the fake board draws, constantly
STATS_HZ = 20.0  # statistics messages per second (the JS220 offers up to 100)
PERIOD_S = 1.0 / STATS_HZ
FIRST_ID = 2_000_000  # the instrument's sample counter (at STATS_FREQ_HZ) when the bridge starts it


class SteadyJoulescope:
    """Our `Instrument`: joulescope 1.5.0 statistics of a board drawing `power_w`, each period `period_s` of
    wall-clock time, its accumulator growing by power_w x period_s.

    Periods are paced on absolute deadlines (start + k x period), as a real instrument's sample clock paces
    them: a message delayed by a busy machine is late, but the next one is on time again. (joulescope_fakes'
    FakeJoulescope waits one period after each message, so under load its time base slips against the
    board's clock and the board sees less power than it draws.) No sample blocks: the bridge runs without GPI.
    """

    def __init__(self, power_w: float = POWER_W, period_s: float = PERIOD_S, name: str = "JS220-000042") -> None:
        self.name = name
        self.power_w = power_w
        self.period_ids = int(round(period_s * STATS_FREQ_HZ))
        self.period_s = self.period_ids / STATS_FREQ_HZ
        self.statistics_sent = 0
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_statistics, on_samples) -> None:
        self._thread = threading.Thread(target=self._run, args=(on_statistics, time.monotonic(), time.time()),
                                        name="steady-joulescope", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self, on_statistics, start_s: float, start_unix_s: float) -> None:
        k = 0
        while not self._halt.wait(max(0.0, start_s + (k + 1) * self.period_s - time.monotonic())):
            id_start = FIRST_ID + k * self.period_ids
            k += 1
            energy_j = self.power_w * k * self.period_s
            on_statistics(v1_statistics(
                id_start=id_start, id_end=id_start + self.period_ids, first_id=FIRST_ID, power_w=self.power_w,
                utc_start_s=start_unix_s + (k - 1) * self.period_s, power_min_w=self.power_w,
                power_max_w=self.power_w, energy_j=energy_j, charge_c=energy_j / VOLTAGE_V))
            self.statistics_sent += 1


class RunningBridge:
    """`Bridge.run()` of one SteadyJoulescope on a thread until `stop()`."""

    def __init__(self, broker, *, power_w: float = POWER_W, stats_hz: float = STATS_HZ) -> None:
        self.instrument = SteadyJoulescope(power_w, 1.0 / stats_hz)
        self.bridge = Bridge(self.instrument, BrokerSettings(broker.host, broker.port, keepalive_s=5), DEVICE)
        self.summary: BridgeSummary | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="joulescope-bridge", daemon=True)
        self._thread.start()
        if not self.bridge.wait_connected(5):
            self.stop()
            raise AssertionError(f"the Joulescope bridge did not connect to {broker.host}:{broker.port} in 5 s")

    def _run(self) -> None:
        self.summary = self.bridge.run(self._stop)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> BridgeSummary:
        """Stop the instrument and publish availability 'stopped', as Ctrl-C on the host does."""
        self._stop.set()
        self._thread.join(10)
        if self.summary is None:
            raise AssertionError("the Joulescope bridge did not stop within 10 s")
        return self.summary


def joulescope_overrides(folder: Path, *, stale_after_s: float = 0.5, energy_duration_s: float = 1.0,
                         idle_baseline_s: float = 0.5) -> dict:
    """write_config overrides: the Joulescope as power source (default topic), short energy profiling, the
    tiny float model on the cpu1 target only (no unavailable NPU in `degraded`)."""
    return {
        "power": {"type": "joulescope", "stale_after_s": stale_after_s},
        "profiling": {"warmup_runs": 2, "runs": 10, "energy_duration_s": energy_duration_s,
                      "idle_baseline_s": idle_baseline_s},
        "targets": [{"name": "cpu1", "type": "tflite_cpu", "threads": 1}],
        "models": [{"name": "tiny_16", "file": str(folder / "tiny_16.tflite")}],
    }
