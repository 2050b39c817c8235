"""The daemon's decision log (JSON lines, ``"schema": 1``), read into frozen `Decision`s.

One object per executed request::

    {"schema": 1, "seq": 17, "model": "mobilenet_q_128", "target": "npu", "kind": "local",
     "start_utc": "2026-11-23T10:00:00.123456Z", "end_utc": "...", "start_unix_s": 1795428000.123456,
     "end_unix_s": ..., "latency_ms": 7.0, "ok": true, "fallback": false, "marker": true}

Times become JLS time (34Q30 fixed point: seconds × 2**30 since 2018-01-01 UTC), the recording's time base;
``start_unix_s`` is used when present (a float: about 0.2 µs at today's dates; the daemon writes ``start_utc``
to the millisecond only), else ``start_utc``. Lines that cannot be
used are reported as ``file:line: why`` and skipped; a log with no usable line is an error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edgeoffload_host.energy.errors import EnergyError

LOG_SCHEMA = 1
JLS_EPOCH = datetime(2018, 1, 1, tzinfo=UTC)
JLS_EPOCH_UNIX_S = 1514764800
T64_PER_S = 1 << 30
MAX_UNIX_S = 1 << 33  # JLS time's range ends in 2242
MAX_LINE_BYTES = 1 << 16  # a decision is a few hundred bytes; longer lines are garbage


@dataclass(frozen=True)
class Decision:
    """One executed request of the log."""

    line: int  # 1-based line in the log file
    seq: int | None
    model: str
    target: str
    kind: str
    start_t64: int  # JLS time of the start (34Q30 s since 2018-01-01 UTC)
    end_t64: int
    latency_ms: float
    ok: bool
    marker: bool  # the daemon raised its GPIO marker for this request

    @property
    def duration_ms(self) -> float:
        return (self.end_t64 - self.start_t64) * 1e3 / T64_PER_S


@dataclass(frozen=True)
class DecisionLog:
    path: Path
    decisions: tuple[Decision, ...]
    problems: tuple[str, ...]  # "file:line: why", one per skipped line
    lines: int  # non-blank lines read
    size_bytes: int


def t64_from_utc(text: str) -> int:
    """ISO 8601 with a time zone (``...Z``) -> JLS time; ValueError saying why not."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (expected ...Z)")
    micros = (when - JLS_EPOCH) // timedelta(microseconds=1)
    return (micros * T64_PER_S + 500_000) // 1_000_000


def t64_from_unix_s(seconds: float) -> int:
    return round((seconds - JLS_EPOCH_UNIX_S) * T64_PER_S)


def utc_from_t64(t64: int) -> str:
    """JLS time -> ``2026-11-23T10:00:00.123456Z`` (microseconds)."""
    when = JLS_EPOCH + timedelta(microseconds=(t64 * 1_000_000 + T64_PER_S // 2) // T64_PER_S)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_decisions(path: Path) -> DecisionLog:
    """Every usable line of the log; EnergyError when the file cannot be read or no line can be used."""
    decisions: list[Decision] = []
    problems: list[str] = []
    lines = 0
    for number, text in _lines(path):
        if text is not None and not text.strip():
            continue
        lines += 1
        try:
            if text is None:
                raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes; not a decision")
            decisions.append(parse_decision(number, text))
        except ValueError as e:
            problems.append(f"{path}:{number}: {e}")
    if not decisions:
        why = f"{lines} lines, none usable ({problems[0]})" if problems else "no lines"
        raise EnergyError(f"{path}: {why}; pass the daemon's decision log (log.decisions_file), "
                          "one JSON object per line")
    return DecisionLog(path, tuple(decisions), tuple(problems), lines, path.stat().st_size)


def _lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of every line; None for a line too long to be a decision (never held whole)."""
    try:
        with path.open("rb") as f:
            number = 0
            while raw := f.readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
                    yield number, raw.decode("utf-8", errors="replace")
                    continue
                while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                yield number, None
    except FileNotFoundError:
        raise EnergyError(f"{path}: no such file; pass the daemon's decision log (log.decisions_file)") from None
    except IsADirectoryError:
        raise EnergyError(f"{path}: is a directory, not a decision log") from None
    except OSError as e:
        raise EnergyError(f"{path}: cannot read: {e.strerror or e}") from e


def parse_decision(number: int, text: str) -> Decision:
    """One line -> Decision; ValueError naming the key that is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("schema") != LOG_SCHEMA:
        raise ValueError(f"schema: {data.get('schema')!r} is not supported (this reads {LOG_SCHEMA})")
    start, end = _time(data, "start"), _time(data, "end")
    if end < start:
        raise ValueError("end_utc: before start_utc")
    latency = data.get("latency_ms", (end - start) * 1e3 / T64_PER_S)
    if not _number(latency) or latency < 0:
        raise ValueError(f"latency_ms: {latency!r} is not a finite number >= 0")
    seq = data.get("seq")
    return Decision(number, seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                    _text(data, "model"), _text(data, "target"), str(data.get("kind", "")), start, end,
                    float(latency), _flag(data, "ok", True), _flag(data, "marker", False))


def _time(data: dict[str, Any], which: str) -> int:
    text, seconds = data.get(f"{which}_utc"), data.get(f"{which}_unix_s")
    if seconds is not None:
        if not _number(seconds) or not 0 <= seconds < MAX_UNIX_S:
            raise ValueError(f"{which}_unix_s: {seconds!r} is not a time (seconds since 1970)")
        return t64_from_unix_s(float(seconds))
    if isinstance(text, str):
        try:
            return t64_from_utc(text)
        except ValueError as e:
            raise ValueError(f"{which}_utc: not an ISO 8601 time ({e})") from None
    raise ValueError(f"{which}_unix_s / {which}_utc: missing (or {which}_utc is not a string: {text!r})")


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key}: missing or not a non-empty string")
    return value


def _flag(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key}: {value!r} is not true or false")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
