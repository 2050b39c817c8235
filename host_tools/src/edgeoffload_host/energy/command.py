"""``edgeoffload-host energy RECORDING.jls --log DECISIONS.jsonl``: energy per inference from a Joulescope
recording and the daemon's decision log, per (model, target), as a Markdown table, CSV, PNG and the energy
profile that ``edgeoffloadctl profile import`` reads.

Every output name is checked before the recording is read; existing files are replaced only with --force.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from edgeoffload_host.energy.align import Alignment, align_gpi, align_utc
from edgeoffload_host.energy.decisions import DecisionLog, read_decisions
from edgeoffload_host.energy.errors import EnergyError
from edgeoffload_host.energy.jls import Pulses, Recording, open_recording
from edgeoffload_host.energy.measure import (
    Entry,
    Idle,
    Measured,
    idle_from_gaps,
    idle_from_range,
    measure_windows,
    summarize,
)
from edgeoffload_host.energy.output import (
    check_outputs,
    entry_values,
    profile_bytes,
    to_csv,
    to_markdown,
    to_png,
    write_atomic,
)
from edgeoffload_host.flags import UsageError, parse_integer

T = TypeVar("T")
PROG = "edgeoffload-host energy"
MAX_WARNED = 10  # skipped log lines printed one by one; the rest are counted
ALIGN_HELP = ("how log lines find their samples. gpi: the n-th pulse on the GPI input (--gpi) pairs with the "
              "n-th line with \"marker\": true; pairing keeps the longest prefix whose pulses match the lines in "
              "width and spacing (within --tolerance-ms + 5%%), reports the pulse and line counts and the first "
              "mismatch, and fails only when not even the first pair matches; with a UTC time map, marked lines "
              "more than 2 s outside the recording are left out first. utc: each line's start_utc..end_utc "
              "through the recording's time map, shifted by --offset-ms. Default: gpi when the GPI input has "
              "pulses and the log has marked lines, else utc")


class EnergyCommand:
    name = "energy"
    help = "energy per inference per model and target from a Joulescope recording (.jls) and the decision log"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("recording", metavar="RECORDING.jls", help="a Joulescope JLS v2 recording")
        parser.add_argument("--log", required=True, metavar="DECISIONS.jsonl",
                            help="the daemon's decision log (log.decisions_file) for the same run")
        parser.add_argument("--align", choices=("gpi", "utc"), default=None, help=ALIGN_HELP)
        parser.add_argument("--gpi", default="0", metavar="N",
                            help="the GPI input the daemon's marker line drives (0-3, default 0)")
        parser.add_argument("--offset-ms", default="0", metavar="MS",
                            help="added to the log's times (board clock + MS = PC clock); default 0")
        parser.add_argument("--tolerance-ms", default="2", metavar="MS",
                            help="gpi: how far (+ 5%%) a pulse may differ from its line in width and spacing "
                                 "(default 2)")
        parser.add_argument("--idle", default=None, metavar="START:END",
                            help="idle baseline from this stretch, seconds into the recording (default: the "
                                 "median of the mean power in the gaps between windows)")
        parser.add_argument("--source", default=None, metavar="NAME",
                            help="the instrument to read when the recording holds several")
        parser.add_argument("--csv", default=None, metavar="FILE", help="write the table as CSV")
        parser.add_argument("--markdown", default=None, metavar="FILE",
                            help="write the Markdown table here (default: print it)")
        parser.add_argument("--png", default=None, metavar="FILE", help="write a bar chart (PNG)")
        parser.add_argument("--profile", default=None, metavar="FILE",
                            help="write the energy profile for `edgeoffloadctl profile import`")
        parser.add_argument("--force", action="store_true", help="replace existing output files")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")

    def run(self, args: argparse.Namespace) -> int:
        """Errors propagate: the CLI maps them once (one line on stderr, exit 2)."""
        gpi_input, offset_ms = parse_gpi(args.gpi), parse_float("--offset-ms", args.offset_ms)
        tolerance_ms, idle_range = parse_float("--tolerance-ms", args.tolerance_ms, 0.0), parse_idle(args.idle)
        recording_path, log_path = Path(args.recording), Path(args.log)
        outputs = {flag: None if value is None else Path(value) for flag, value in
                   (("--csv", args.csv), ("--markdown", args.markdown), ("--png", args.png),
                    ("--profile", args.profile))}
        check_outputs(outputs, [recording_path, log_path], args.force)
        steps = Steps(args.json)
        decisions = steps.run(lambda: read_decisions(log_path), lambda d: (
            f"read {log_path}: {len(d.decisions)} requests in {d.lines} lines", d.size_bytes))
        steps.warn_lines(decisions.problems)
        with open_recording(recording_path, source=args.source, gpi_input=gpi_input) as recording:
            steps.done(f"opened {recording_path}: {recording.describe()}", recording_path.stat().st_size)
            alignment = steps.run(
                lambda: align(recording, decisions, args.align, gpi_input, offset_ms, tolerance_ms),
                lambda a: (a.summary, None))
            steps.warn(alignment.notes)
            idle, measured, notes = steps.run(
                lambda: measure(recording, alignment, idle_range, log_path),
                lambda r: (f"measured {len(r[1])} windows; idle power {_watts(r[0])}", None))
            steps.warn(notes)
        entries = summarize(measured, idle)
        title = f"Energy per inference: {recording_path.name}, aligned by {alignment.method}"
        profile_data = None if outputs["--profile"] is None else \
            profile_bytes(entries, idle, recording=recording_path.name, alignment=alignment.method)
        contents = {
            "--csv": lambda: to_csv(entries, idle).encode(),
            "--markdown": lambda: to_markdown(entries, idle, title).encode(),
            "--png": lambda: to_png(entries, title),
            "--profile": lambda: profile_data,
        }
        for flag, path in outputs.items():
            if path is not None:
                steps.done(f"wrote {path}", write_atomic(path, contents[flag](), args.force))
        profile = outputs["--profile"]
        next_command = (f"edgeoffloadctl profile import {profile}" if profile is not None else
                        f"{PROG} {recording_path} --log {log_path} --profile energy-profile.json")
        if args.json:
            print(json.dumps(_summary(recording_path, decisions, alignment, idle, entries, steps, next_command),
                             indent=2))
            return 0
        if outputs["--markdown"] is None:
            print(to_markdown(entries, idle, title), flush=True)
        print(f"next: {next_command}")
        return 0


def align(recording: Recording, decisions: DecisionLog, method: str | None, gpi_input: int, offset_ms: float,
          tolerance_ms: float) -> Alignment:
    """The requested alignment; by default gpi when there are pulses and marked lines, else utc."""
    log_name, path = str(decisions.path), recording.path
    gpi_name = recording.gpi.name if recording.gpi else f"gpi[{gpi_input}]"
    if method == "gpi" and recording.gpi is None:
        raise EnergyError(f"--align gpi: {path} has no signal {gpi_name} of {recording.source}; record the "
                          "marker line's GPI input, choose it with --gpi, or use --align utc")
    pulses = recording.pulses() if method != "utc" else Pulses((), ())
    span = (recording.t64(0), recording.t64(recording.length)) if recording.has_utc else None
    marked = any(d.marker for d in decisions.decisions)
    if method == "gpi" or (method is None and pulses.windows and marked):
        alignment = align_gpi(pulses.windows, decisions.decisions, fs_hz=recording.fs_hz, log_name=log_name,
                              gpi_name=gpi_name, tolerance_ms=tolerance_ms, span_t64=span, offset_ms=offset_ms)
        return Alignment(alignment.method, alignment.windows, pulses.notes + alignment.notes, alignment.summary)
    if span is None and method == "utc":
        raise EnergyError(f"--align utc: {path} has no UTC time map; record with UTC (the Joulescope recorder "
                          "adds it) or use --align gpi")
    if span is None:
        why = (f"no signal {gpi_name}" if recording.gpi is None else f"no complete pulse on {gpi_name}"
               if not pulses.windows else f"no line of {log_name} has \"marker\": true")
        raise EnergyError(f"{path}: nothing to align {log_name} with: {why}, and no UTC time map; record the "
                          "daemon's marker line on a GPI input (--gpi) or record with UTC")
    return align_utc(decisions.decisions, to_sample=recording.sample_id, length=recording.length, span_t64=span,
                     offset_ms=offset_ms, log_name=log_name)


def measure(recording: Recording, alignment: Alignment, idle_range: tuple[float, float] | None,
            log_path: Path) -> tuple[Idle, list[Measured], list[str]]:
    """The idle baseline, the energy of every usable window, and notes on the windows left out."""
    if idle_range is not None:
        idle = idle_from_range(recording, *idle_range, str(recording.path))
    else:
        idle = idle_from_gaps(recording, alignment.windows)
    measured, notes = measure_windows(recording, alignment.windows, str(log_path))
    if not measured:
        raise EnergyError(f"{recording.path}: none of the {len(alignment.windows)} aligned windows can be "
                          f"measured ({'; '.join(notes) if notes else 'no window'})")
    return idle, measured, notes


class Steps:
    """One line per finished step (what, size, seconds) unless --json; warnings go to stderr either way."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.done_steps: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self._start = time.perf_counter()

    def run(self, action: Callable[[], T], describe: Callable[[T], tuple[str, int | None]]) -> T:
        """Run `action`; `describe(result)` gives the step's line and output size."""
        self._start = time.perf_counter()
        result = action()
        self.done(*describe(result))
        return result

    def done(self, what: str, size_bytes: int | None) -> None:
        seconds = time.perf_counter() - self._start
        self.done_steps.append({"step": what, "size_bytes": size_bytes, "seconds": round(seconds, 3)})
        if not self.quiet:
            size = "" if size_bytes is None else f"{_size(size_bytes)}, "
            print(f"{what} ({size}{seconds:.1f} s)", flush=True)
        self._start = time.perf_counter()

    def warn(self, notes: Sequence[str]) -> None:
        for note in notes:
            self.warnings.append(note)
            print(f"{PROG}: warning: {note}", file=sys.stderr)

    def warn_lines(self, problems: Sequence[str]) -> None:
        self.warn([f"skipped {p}" for p in problems[:MAX_WARNED]])
        if len(problems) > MAX_WARNED:
            self.warn([f"skipped {len(problems) - MAX_WARNED} more lines that cannot be used"])


def _summary(recording: Path, decisions: DecisionLog, alignment: Alignment, idle: Idle, entries: Sequence[Entry],
             steps: Steps, next_command: str) -> dict[str, Any]:
    return {"recording": str(recording), "log": str(decisions.path), "alignment": alignment.method,
            "windows": len(alignment.windows), "measured": sum(e.n for e in entries),
            "idle_power_w": idle.power_w, "idle_source": idle.source,
            "entries": [entry_values(e, idle) for e in entries], "steps": steps.done_steps,
            "warnings": steps.warnings, "skipped_lines": len(decisions.problems), "next": next_command}


def parse_gpi(text: str) -> int:
    value = parse_integer("--gpi", text, 0)
    if value > 3:
        raise UsageError(f"--gpi: {value} is not a GPI input (0-3)")
    return value


def parse_float(flag: str, text: str, low: float | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > 1e9:
        raise UsageError(f"{flag}: {text!r} is not a finite number of milliseconds")
    if low is not None and value < low:
        raise UsageError(f"{flag}: {value:g} is below the minimum {low:g}")
    return value


def parse_idle(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.split(":")
    try:
        start, end = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        start = end = math.nan
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise UsageError(f"--idle: {text!r} is not START:END in seconds into the recording with 0 <= START < END "
                         "(e.g. 0.5:2)")
    return start, end


def _watts(idle: Idle) -> str:
    return "none" if idle.power_w is None else f"{idle.power_w:.4f} W ({idle.source})"


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.1f} MB" if size_bytes >= 1e6 else f"{size_bytes / 1e3:.1f} kB"
