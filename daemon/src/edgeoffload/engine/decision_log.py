"""Every executed request as a JSON line, with the energy the meter measured over the request's own window.

The line is written off the request path: a writer thread waits until the meter has a reading after the
request ended (so the window is covered), integrates, and appends. `edgeoffload-host energy` aligns these
lines with a Joulescope recording by UTC or by the GPIO marker's pulses (`marker`: true when the line was
driven during the request). A full queue drops lines (counted) rather than slow requests down.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
from pathlib import Path

from edgeoffload.engine.executor import Outcome
from edgeoffload.engine.profiles import utc_iso
from edgeoffload.errors import SensorError

log = logging.getLogger(__name__)

SCHEMA = 1
QUEUE_MAX = 10_000
GPI_WAIT_S = 0.5  # the bridge publishes a marked window a few tens of ms after its falling edge
GPI_MISSES_BEFORE_NO_WAIT = 3  # then look without waiting until a window turns up again (no backlog)


def log_line(o: Outcome, measured: dict | None) -> dict:
    """Format A of the decision log (see host_tools' energy command)."""
    line = {
        "schema": SCHEMA, "seq": o.seq, "request_id": o.request_id, "model": o.model, "target": o.target,
        "kind": "remote" if (o.decision.chosen is not None and o.decision.chosen.kind == "remote"
                             and not o.fallback) else "local",
        "start_utc": utc_iso(o.started_unix_s), "end_utc": utc_iso(o.ended_unix_s),
        "start_unix_s": o.started_unix_s, "end_unix_s": o.ended_unix_s, "latency_ms": o.latency_ms,
        "ok": True, "fallback": o.fallback, "marker": o.marked,
        "energy_mj_estimated": o.energy_mj, "energy_source": o.energy_source,
    }
    if measured is not None:
        line.update(measured)
    return line


class DecisionLog:
    """Appends to `path` (created with its folder). `meter` (sensors.meter.Meter or None) measures each
    request's window; `idle_power_w()` gives the baseline for active energy (or None)."""

    def __init__(self, path: Path, *, meter=None, idle_power_w=lambda: None) -> None:
        self.path = Path(path)
        self.meter = meter
        self._idle_power_w = idle_power_w
        self._queue: queue.Queue[Outcome | None] = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._file = None
        self.dropped = 0
        self.written = 0
        self._gpi_misses = 0

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        self._thread = threading.Thread(target=self._loop, name="decision-log", daemon=True)
        self._thread.start()
        log.info("logging executed requests to %s", self.path)

    def add(self, outcome: Outcome) -> None:
        try:
            self._queue.put_nowait(outcome)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("decision log %s cannot keep up: %d lines dropped", self.path, self.dropped)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout_s)
        if self._file is not None:
            self._file.close()
            self._file = None

    def _loop(self) -> None:
        while True:
            outcome = self._queue.get()
            if outcome is None:
                return
            try:
                measured = self._measure(outcome)
                gpi = self._gpi_window(outcome)
                if gpi is not None:
                    measured = {**(measured or {}), "energy_gpi_window": gpi}
                self._file.write(json.dumps(log_line(outcome, measured), allow_nan=False) + "\n")
                self.written += 1
            except (OSError, ValueError) as e:
                log.warning("decision log %s: cannot write request %d: %s", self.path, outcome.seq, e)

    def _gpi_window(self, o: Outcome) -> dict | None:
        """The instrument's sample-accurate energy of a marked request (the bridge's GPI window), if any."""
        finder = getattr(self.meter.reader, "window_for", None) if self.meter is not None else None
        if not o.marked or finder is None:
            return None
        wait_s = GPI_WAIT_S if self._gpi_misses < GPI_MISSES_BEFORE_NO_WAIT else 0.0
        window = finder(o.started_unix_s, o.ended_unix_s, timeout_s=wait_s)
        self._gpi_misses = 0 if window is not None else self._gpi_misses + 1
        return window

    def _measure(self, o: Outcome) -> dict | None:
        """The meter's energy over [start, end] of the request, or why there is none."""
        if self.meter is None or not math.isfinite(o.mono_end_s):
            return None
        if not self.meter.wait_for_sample_after(o.mono_end_s, timeout_s=5 * self.meter.period_s + 0.5):
            return {"energy_measured": None, "energy_problem": f"no reading after the request ({self.meter.problem})"}
        try:
            w = self.meter.window(o.mono_start_s, o.mono_end_s, idle_power_w=self._idle_power_w())
        except SensorError as e:
            return {"energy_measured": None, "energy_problem": str(e)}
        return {"energy_measured": {"total_energy_mj": w.total_j * 1e3,
                                    "active_energy_mj": None if w.active_j is None else w.active_j * 1e3,
                                    "mean_power_w": w.mean_power_w, "method": w.method,
                                    "samples": w.n_samples, "source": self.meter.label}}
