"""Building blocks for the measured-energy tests: sysfs fixture copies with their exact watts, a sensor that
vanishes and returns, a RAPL counter that really counts, and the daemon config sections that use them."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
from support import wait_until  # noqa: F401  (the tests import it from here)

DEVICE_TOPIC = "edgeoffload/v1/test-board/"  # the topics of the device loop_helpers.write_config names
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sysfs"

# tests/fixtures/sysfs/README.md: the rails of each hwmon tree and their exact power (W).
RAILS_W = {
    "ina226": {"ina226/1": 6.26},
    "ina3221": {"ina3221/VDD_SOC": 2.0, "ina3221/VDD_ARM": 4.1, "ina3221/VDD_DRAM": 0.495},
}
BOARD_W = {tree: sum(rails.values()) for tree, rails in RAILS_W.items()}
CHIP_DIR = {"ina226": "class/hwmon/hwmon1", "ina3221": "class/hwmon/hwmon0"}  # the power chip of each tree
RAPL_ZONE = "class/powercap/intel-rapl:0"  # package-0: the one zone read when power.zones is not given
# 20 Hz, not 100: the meter voids a window with a gap over 5 periods, and a busy tiny-model loop holding the
# GIL on a loaded machine starves the sampling thread for 50-100 ms (see the report on issue 7).
SAMPLE_HZ = 20.0


def sysfs_copy(tmp_path: Path, tree: str) -> Path:
    """A writable copy of a fixture tree (links kept as links), as the daemon's power.sysfs."""
    root = tmp_path / f"sys-{tree}"
    shutil.copytree(FIXTURES / tree, root, symlinks=True)
    return root


class Unplugged:
    """Moves a chip's directory out of the tree (its driver unloaded) and back (`plug()`), atomically."""

    def __init__(self, root: Path, rel: str) -> None:
        self.path = root / rel
        self.aside = root.parent / f"{root.name}-aside-{self.path.name}"

    def unplug(self) -> Unplugged:
        os.rename(self.path, self.aside)
        return self

    def plug(self) -> None:
        os.rename(self.aside, self.path)


def power_section(root: Path, kind: str = "hwmon") -> dict:
    return {"type": kind, "sysfs": str(root), "sample_hz": SAMPLE_HZ}


def energy_config(root: Path, *, kind: str = "hwmon", models: list[str] | None = None, folder: Path,
                  energy_duration_s: float = 0.5, **extra) -> dict:
    """write_config overrides: a measured power source, short energy profiling, only the cpu1 target (no
    unavailable NPU in `degraded`), and the named tiny models from `folder`."""
    names = models or ["tiny_16"]
    return {
        "power": power_section(root, kind),
        "profiling": {"warmup_runs": 2, "runs": 10, "energy_duration_s": energy_duration_s, "idle_baseline_s": 0.5},
        "targets": [{"name": "cpu1", "type": "tflite_cpu", "threads": 1}],
        "models": [{"name": n, "file": str(folder / f"{n}.tflite")} for n in names],
        **extra,
    }


class RaplRamp:
    """Makes a RAPL zone's energy_uj count at `power_w` from its fixture value, wrapping at
    max_energy_range_uj as the hardware does; each value is written atomically (write, then rename), so a
    reader never sees half a number. A context manager: the counting stops on exit."""

    def __init__(self, root: Path, zone: str, power_w: float, period_s: float = 0.001) -> None:
        self.dir = root / zone
        self.power_w = power_w
        self.period_s = period_s
        self.max_uj = int((self.dir / "max_energy_range_uj").read_text())
        self.start_uj = int((self.dir / "energy_uj").read_text())
        self.wraps = 0
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rapl-ramp", daemon=True)

    def __enter__(self) -> RaplRamp:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        tmp, last = self.dir / ".energy_uj.new", self.start_uj
        while not self._stop.wait(self.period_s):
            raw = (self.start_uj + int((time.monotonic() - self._t0) * self.power_w * 1e6)) % self.max_uj
            self.wraps += raw < last
            last = raw
            tmp.write_text(f"{raw}\n")
            os.replace(tmp, self.dir / "energy_uj")


def image(seed=0):
    """A 16x16x3 uint8 request for the tiny models."""
    return np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def event(probe, name: str, timeout: float = 3.0) -> dict:
    """The next `events` message named `name` (MqttProbe), as JSON."""
    return probe.wait_for(DEVICE_TOPIC + "events", lambda m: m.json()["event"] == name, timeout).json()
