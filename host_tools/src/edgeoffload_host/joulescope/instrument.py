"""The `Instrument` over a real Joulescope (JS220, JS110), through the joulescope package's v1 API.

The only module that imports joulescope (and, for recordings, pyjoulescope_driver's JLS recorder).
Written against the joulescope 1.5.0 source (the last release for Python 3.11; 1.7, for Python 3.12+, is
meant to keep this v1 API but was not checked here):

- statistics: ``device.parameter_set('reduction_frequency', hz)`` (1, 2, 5, 10, 20, 50 or 100 Hz) and
  ``device.statistics_callback_register(fn)``; `fn` gets the v1 statistics dict on the USB thread, with
  the accumulators zeroed at registration (so energy counts from the bridge's start);
- samples for GPI windows: a stream processor (``device.stream_process_register(obj)``, then
  ``device.start()``) whose ``stream_notify(stream_buffer)`` reads ``power`` and the GPI field from
  ``stream_buffer.samples_get()``. The v1 stream buffer carries GPI 0 and 1 (its fields ``current_lsb``
  and ``voltage_lsb``), so those are the inputs a window can use;
- recording: ``pyjoulescope_driver.record.Record`` (the JLS v2 recorder the Joulescope UI uses: current,
  voltage, power, the marked GPI as ``gpi[N]``, and UTC entries so a recording lines up with the daemon's
  decision log).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgeoffload.errors import SensorError
from edgeoffload_host.joulescope.bridge import SamplesCallback, StatisticsCallback
from edgeoffload_host.joulescope.windows import SampleBlock

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'edgeoffload-host[joulescope]'"
STATISTICS_RATES_HZ = (1, 2, 5, 10, 20, 50, 100)  # joulescope v1 'reduction_frequency' options
GPI_FIELDS = {0: "current_lsb", 1: "voltage_lsb"}  # the v1 stream buffer's names for GPI 0 and 1
STREAM_BUFFER_S = 5  # samples kept in memory for window detection (consumed as they arrive)
RECORDED_SIGNALS = ("current", "voltage", "power")


def load_joulescope() -> Any:
    """The joulescope module; SensorError naming the install command when it is missing."""
    try:
        import joulescope
    except ImportError as exc:
        raise SensorError(f"the Joulescope bridge needs the joulescope package, which is not installed "
                          f"({exc}): {INSTALL_HINT}") from exc
    if not callable(getattr(joulescope, "scan", None)):  # e.g. a folder named joulescope on sys.path
        raise SensorError(f"the module 'joulescope' at {getattr(joulescope, '__path__', '?')} is not the "
                          f"Joulescope package (it has no scan()): {INSTALL_HINT}")
    return joulescope


def open_instrument(serial: str | None, rate_hz: int, gpi: int | None = None,
                    jls_path: Path | None = None) -> JoulescopeInstrument:
    """The first Joulescope found, or the one whose serial number (or name, e.g. JS220-001234) is `serial`."""
    if rate_hz not in STATISTICS_RATES_HZ:
        raise SensorError(f"statistics rate {rate_hz} Hz is not one the Joulescope offers: "
                          f"choose one of {', '.join(map(str, STATISTICS_RATES_HZ))}")
    if gpi is not None and gpi not in GPI_FIELDS:
        raise SensorError(f"GPI {gpi} cannot be streamed through the joulescope v1 API: use GPI 0 or 1")
    joulescope = load_joulescope()
    devices = list(joulescope.scan())
    if not devices:
        raise SensorError("no Joulescope found: connect one over USB (on Linux, install Jetperch's udev "
                          "rules so that this user may open it) and try again")
    device = _select(devices, serial)
    return JoulescopeInstrument(device, rate_hz, gpi, jls_path)


def _select(devices: list[Any], serial: str | None) -> Any:
    if serial is None:
        return devices[0]
    wanted = serial.strip().lower()
    for device in devices:
        if wanted in (str(device).lower(), str(getattr(device, "serial_number", "")).lower()):
            return device
    found = ", ".join(str(d) for d in devices)
    raise SensorError(f"no Joulescope with serial {serial!r}; found {found}: pass one of these to --serial")


class JoulescopeInstrument:
    """One opened Joulescope; `start()` streams until `stop()`."""

    def __init__(self, device: Any, rate_hz: int, gpi: int | None, jls_path: Path | None):
        self._device = device
        self._rate_hz = rate_hz
        self._gpi = gpi
        self._jls_path = jls_path
        self.name = str(device)
        self._stats_cbk: StatisticsCallback | None = None
        self._stream: _GpiStream | None = None
        self._record: Any = None
        self._open = False

    def start(self, on_statistics: StatisticsCallback, on_samples: SamplesCallback | None) -> None:
        device = self._device
        try:
            device.open()
        except Exception as exc:  # noqa: BLE001 - the driver raises bare RuntimeErrors
            raise SensorError(f"cannot open {self.name}: {exc}: is another program (the Joulescope UI) "
                              "using it?") from exc
        self._open = True
        device.parameter_set("reduction_frequency", self._rate_hz)
        if on_samples is not None and self._gpi is not None:
            device.parameter_set("buffer_duration", STREAM_BUFFER_S)
        self._stats_cbk = on_statistics
        device.statistics_callback_register(on_statistics)
        if self._jls_path is not None:
            self._record = _start_recording(device, self._jls_path, self._gpi)
        if on_samples is not None and self._gpi is not None:
            self._stream = _GpiStream(GPI_FIELDS[self._gpi], on_samples)
            device.stream_process_register(self._stream)
            device.start()
        log.info("%s streaming: statistics at %d Hz%s%s", self.name, self._rate_hz,
                 f", GPI{self._gpi} windows" if self._stream else "",
                 f", recording {self._jls_path}" if self._record else "")

    def stop(self) -> None:
        if not self._open:
            return
        self._open = False
        device = self._device
        steps = [("stop streaming", device.stop)]
        if self._record is not None:
            steps.append(("close the recording", self._record.close))
        if self._stats_cbk is not None:
            steps.append(("stop statistics", lambda: device.statistics_callback_unregister(self._stats_cbk)))
        steps.append(("close the device", device.close))
        for what, action in steps:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - each stop step runs whatever the previous one did
                log.warning("%s: %s failed: %s", self.name, what, exc)
        self._record = None


def _start_recording(device: Any, path: Path, gpi: int | None) -> Any:
    """A JLS v2 recording of the device's samples (and UTC), already open."""
    try:
        from joulescope.v1 import DriverWrapper
        from pyjoulescope_driver.record import Record
    except ImportError as exc:
        raise SensorError(f"recording {path} needs pyjoulescope_driver and pyjls ({exc}): {INSTALL_HINT}") from exc
    signals = [*RECORDED_SIGNALS, *([f"gpi[{gpi}]"] if gpi is not None else [])]
    # auto=['signal_enable'] only: the device's own stop() turns the signals off after the recording closes
    record = Record(DriverWrapper().driver, device.device_path, signals=signals, auto=["signal_enable"])
    try:
        return record.open(str(path))
    except Exception as exc:  # noqa: BLE001 - pyjls raises bare RuntimeErrors
        raise SensorError(f"cannot record to {path}: {exc}") from exc


class _GpiStream:
    """A joulescope v1 stream processor that hands out each new stretch of (power, GPI) samples."""

    def __init__(self, gpi_field: str, on_samples: SamplesCallback):
        self._field = gpi_field
        self._on_samples = on_samples
        self._next_id: int | None = None

    def start(self, stream_buffer: Any) -> None:
        self._next_id = None

    def stream_notify(self, stream_buffer: Any) -> bool:
        """Called on the USB thread for every new chunk; returns False to keep streaming."""
        first, end = stream_buffer.sample_id_range
        if first is None:
            return False
        start = first if self._next_id is None else max(first, self._next_id)
        if start < end:
            data = stream_buffer.samples_get(start, end, fields=["power", self._field])
            signals = data["signals"]
            self._on_samples(SampleBlock(
                sample_id=int(start), sample_rate_hz=float(stream_buffer.output_sampling_frequency),
                power_w=np.array(signals["power"]["value"], dtype=np.float32),  # copies: the ring buffer moves on
                gpi=np.array(signals[self._field]["value"], dtype=np.uint8)))
            self._next_id = end
        return False

    def stop(self) -> None:
        self._next_id = None
