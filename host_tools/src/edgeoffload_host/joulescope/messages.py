"""What the bridge publishes, built from what the instrument hands out (pure).

`statistics_message()` turns one statistics dict of the joulescope v1 API (the layout of
`Device.statistics_callback`: ``time.samples``, ``time.utc`` (time64), ``time.sample_freq``, ``time.delta``,
``signals.{current,voltage,power}.{µ,min,max}``, ``accumulators.{energy,charge}``) into the statistics
message; `window_message()` turns a `GpiWindow` into the window message. Both formats are fixed (see
`edgeoffload.sensors.joulescope`, which reads them on the board).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from edgeoffload.api.mqtt_payloads import device_topic
from edgeoffload.errors import SensorError
from edgeoffload_host.joulescope.windows import GpiWindow

SCHEMA = 1
TIME64_EPOCH_UNIX_S = 1514764800.0  # 2018-01-01T00:00:00Z, the zero of Joulescope's time64
TIME64_SCALE = 1 << 30  # time64 is 34Q30 fixed-point seconds


def statistics_topic(device_id: str) -> str:
    """``edgeoffload/v1/<device_id>/power/joulescope``; windows go to ``.../window``."""
    return device_topic(device_id, "power/joulescope")


def time64_to_unix_s(value: int | float) -> float:
    """A Joulescope time64 (34Q30 seconds since 2018-01-01 UTC) as POSIX seconds."""
    return TIME64_EPOCH_UNIX_S + float(value) / TIME64_SCALE


def utc_text(unix_s: float) -> str:
    """``2026-11-23T10:00:00.100Z`` (milliseconds)."""
    moment = datetime.fromtimestamp(unix_s, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_text_us(unix_s: float) -> str:
    """``2026-11-23T10:00:00.123456Z`` (microseconds), for window edges."""
    return datetime.fromtimestamp(unix_s, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def statistics_message(stats: Mapping[str, Any], instrument: str) -> dict[str, Any]:
    """The statistics message for one statistics period; `utc` is the end of the period (when the
    accumulators held these values). Raises SensorError naming the key that is missing or not finite."""
    time_ = _get(stats, "time")
    signals = _get(stats, "signals")
    accumulators = _get(stats, "accumulators")
    power = _get(signals, "power", "signals")
    id_start, id_end = _pair(time_, "samples", "time.samples")
    utc_end = time64_to_unix_s(_pair(time_, "utc", "time.utc")[1])
    rate_hz = _number(_get(time_, "sample_freq", "time"), "time.sample_freq")
    if rate_hz <= 0:
        raise SensorError(f"Joulescope statistics: time.sample_freq is {rate_hz}, not a positive rate")
    return {
        "schema": SCHEMA,
        "utc": utc_text(utc_end),
        "utc_unix_s": round(utc_end, 6),
        "instrument": instrument,
        "sample_id_start": int(id_start),
        "sample_id_end": int(id_end),
        "sample_rate_hz": rate_hz,
        "period_s": (id_end - id_start) / rate_hz,
        "power_w": _mean(signals, "power"),
        "current_a": _mean(signals, "current"),
        "voltage_v": _mean(signals, "voltage"),
        "power_min_w": _number(_get(power, "min", "signals.power"), "signals.power.min"),
        "power_max_w": _number(_get(power, "max", "signals.power"), "signals.power.max"),
        "energy_j": _number(_get(accumulators, "energy", "accumulators"), "accumulators.energy"),
        "charge_c": _number(_get(accumulators, "charge", "accumulators"), "accumulators.charge"),
    }


def window_message(window: GpiWindow, start_unix_s: float, end_unix_s: float) -> dict[str, Any]:
    """The window message; energy and mean power are null when samples were missing inside it."""
    energy_mj = None if window.energy_j is None else window.energy_j * 1e3
    return {
        "schema": SCHEMA,
        "gpi": window.gpi,
        "start_utc": utc_text_us(start_unix_s),
        "end_utc": utc_text_us(end_unix_s),
        "start_unix_s": round(start_unix_s, 6),
        "end_unix_s": round(end_unix_s, 6),
        "sample_id_start": window.sample_id_start,
        "sample_id_end": window.sample_id_end,
        "duration_ms": window.duration_s * 1e3,
        "energy_mj": energy_mj,
        "mean_power_w": window.mean_power_w,
        "seq": window.seq,
    }


def availability_message(state: str, instrument: str | None, unix_s: float) -> dict[str, Any]:
    """Retained on ``.../power/joulescope/availability``: ``online``, ``offline`` (last will), ``stopped``."""
    return {"schema": SCHEMA, "state": state, "instrument": instrument, "utc": utc_text(unix_s)}


class SampleClock:
    """Maps sample ids to UTC, anchored on the latest statistics message.

    Ids of different rates share one origin (the instrument's counter), so a block's id at its own rate
    maps through time: ``utc = anchor_utc + id / rate - anchor_id / anchor_rate``.
    """

    def __init__(self) -> None:
        self._anchor: tuple[int, float, float] | None = None  # (sample id, its rate Hz, its UTC s)

    @property
    def ready(self) -> bool:
        return self._anchor is not None

    def update(self, message: Mapping[str, Any]) -> None:
        """Anchor on a statistics message (its end sample and UTC)."""
        self._anchor = (int(message["sample_id_end"]), float(message["sample_rate_hz"]),
                        float(message["utc_unix_s"]))

    def unix_s(self, sample_id: int, rate_hz: float) -> float:
        if self._anchor is None:
            raise SensorError("no statistics message yet: sample ids cannot be mapped to UTC")
        anchor_id, anchor_rate, anchor_utc = self._anchor
        return anchor_utc + sample_id / rate_hz - anchor_id / anchor_rate


def _get(mapping: Any, key: str, where: str = "") -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        path = f"{where}.{key}" if where else key
        raise SensorError(f"Joulescope statistics: {path} is missing; expected the joulescope v1 "
                          "statistics layout (is the joulescope package a supported version?)")
    return mapping[key]


def _number(entry: Any, path: str) -> float:
    value = entry.get("value") if isinstance(entry, Mapping) else entry
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SensorError(f"Joulescope statistics: {path} is {value!r}, not a finite number")
    return float(value)


def _pair(mapping: Mapping[str, Any], key: str, path: str) -> tuple[float, float]:
    entry = _get(mapping, key, path.rpartition(".")[0])
    values = entry.get("value") if isinstance(entry, Mapping) else None
    if not isinstance(values, (list, tuple)) or len(values) != 2:
        raise SensorError(f"Joulescope statistics: {path} is {values!r}, not a [start, end] pair")
    start, end = (_number(v, path) for v in values)
    if end < start:
        raise SensorError(f"Joulescope statistics: {path} ends ({end}) before it starts ({start})")
    return start, end


def _mean(signals: Mapping[str, Any], name: str) -> float:
    signal = _get(signals, name, "signals")
    key = "µ" if isinstance(signal, Mapping) and "µ" in signal else "avg"
    return _number(_get(signal, key, f"signals.{name}"), f"signals.{name}.{key}")
