"""edgeoffload-host energy on input it cannot use: one line on stderr naming the file and the place, exit 2;
log lines that cannot be used are named and skipped."""

from __future__ import annotations

import json
import sys

import numpy as np
import pyjls
import pytest
from jls_recordings import BURSTS, Layout, bursts_log, decision, write_log, write_recording

from edgeoffload_host.cli import main

ERROR = "edgeoffload-host: error: "


def fails(capsys, *argv) -> str:
    """The one error line of a run that must exit 2."""
    assert main(["energy", *map(str, argv)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), captured.err
    return lines[0][len(ERROR):]


@pytest.fixture
def recording(tmp_path):
    return write_recording(tmp_path / "run1.jls", BURSTS)


@pytest.fixture
def log(tmp_path):
    return bursts_log(tmp_path / "decisions.jsonl", BURSTS)


def test_not_a_jls_file(tmp_path, log, capsys):
    text = tmp_path / "notes.jls"
    text.write_text("current,voltage\n0.5,5.0\n")
    assert fails(capsys, text, "--log", log) == (
        f"{text}: not a JLS recording (it does not start with the JLS v2 signature); pass a .jls file that the "
        "Joulescope UI or `edgeoffload-host joulescope` recorded")
    assert fails(capsys, tmp_path / "absent.jls", "--log", log) == (
        f"{tmp_path / 'absent.jls'}: no such file; pass a Joulescope recording (.jls)")
    assert fails(capsys, tmp_path, "--log", log) == f"{tmp_path}: is a directory, not a Joulescope recording (.jls)"


def test_a_truncated_recording_gives_one_line_not_pyjls_noise(tmp_path, recording, log, capsys):
    cut = tmp_path / "cut.jls"
    cut.write_bytes(recording.read_bytes()[:3000])
    message = fails(capsys, cut, "--log", log)
    assert message.startswith(f"{cut}: pyjls cannot open it (open EMPTY")
    assert message.endswith("the file is damaged or not a finished recording")


def test_no_power_and_no_current_signal(tmp_path, log, capsys):
    recording = write_recording(tmp_path / "temp.jls", BURSTS, Layout(signals="none"))
    assert fails(capsys, recording, "--log", log) == (
        f"{recording}: no power signal and no current and voltage signals (signals: JS220-000417.temperature, "
        "JS220-000417.gpi[0]); record power, or current and voltage, with the Joulescope")


def test_two_instruments_need_source(tmp_path, log, capsys):
    path = tmp_path / "two.jls"
    with pyjls.Writer(str(path)) as w:
        for source_id, name in ((1, "JS220-000001"), (2, "JS220-000002")):
            w.source_def(source_id=source_id, name=name, vendor="Jetperch", model="JS220", version="",
                         serial_number=name[-6:])
            w.signal_def(signal_id=source_id, source_id=source_id, sample_rate=1000, name="power", units="W")
            w.fsr_f32(source_id, 0, np.full(2000, float(source_id), dtype=np.float32))
            w.utc(source_id, 0, pyjls.time64.as_time64("2026-11-23T10:00:00Z"))
    assert fails(capsys, path, "--log", log) == (
        f"{path}: holds 2 instruments (JS220-000001, JS220-000002); choose one with --source NAME")
    assert fails(capsys, path, "--log", log, "--source", "JS110-1") == (
        f"--source: {path} has no instrument 'JS110-1' (it has: JS220-000001, JS220-000002)")
    assert main(["energy", str(path), "--log", str(log), "--source", "JS220-000002", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["alignment"] == "utc"
    assert summary["entries"][0]["energy_mj_mean"] == pytest.approx(2.0 * 7, rel=0.01)  # 2 W for 7 ms


def test_an_empty_log(recording, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert fails(capsys, recording, "--log", empty) == (
        f"{empty}: no lines; pass the daemon's decision log (log.decisions_file), one JSON object per line")
    assert fails(capsys, recording, "--log", tmp_path / "none.jsonl") == (
        f"{tmp_path / 'none.jsonl'}: no such file; pass the daemon's decision log (log.decisions_file)")


def test_a_log_of_garbage(recording, tmp_path, capsys):
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x00\xff\xfe binary\n[1, 2]\n{\"schema\": 1}\n")
    assert fails(capsys, recording, "--log", garbage) == (
        f"{garbage}: 3 lines, none usable ({garbage}:1: not JSON (Expecting value at column 1)); pass the "
        "daemon's decision log (log.decisions_file), one JSON object per line")


def utc_only(line: dict) -> dict:
    """The line without *_unix_s, so that its *_utc strings are what is read."""
    return {k: v for k, v in line.items() if not k.endswith("_unix_s")}


def test_unusable_lines_are_named_and_skipped(recording, tmp_path, capsys):
    good = [decision(i, b) for i, b in enumerate(BURSTS, start=1)]
    bad = ["not json", {**good[0], "schema": 2}, {**good[0], "model": ""},
           json.dumps({**good[0], "latency_ms": float("nan")}), {**good[0], "marker": "yes"},
           {**utc_only(good[0]), "end_utc": "2026-11-23T09:00:00Z"}, {**utc_only(good[0]), "start_utc": "yesterday"},
           {k: v for k, v in good[0].items() if k not in ("start_utc", "start_unix_s")},
           {**utc_only(good[0]), "start_utc": "2026-11-23T10:00:00"}, {**good[0], "start_unix_s": "soon"},
           {**good[0], "end_unix_s": 1e300}]
    log = write_log(tmp_path / "decisions.jsonl", good[:4] + bad + good[4:])
    assert main(["energy", str(recording), "--log", str(log), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["skipped_lines"] == 11
    assert summary["warnings"] == [f"skipped {log}:{5 + i}: {why}" for i, why in enumerate([
        "not JSON (Expecting value at column 1)",
        "schema: 2 is not supported (this reads 1)",
        "model: missing or not a non-empty string",
        "latency_ms: nan is not a finite number >= 0",
        "marker: 'yes' is not true or false",
        "end_utc: before start_utc",
        "start_utc: not an ISO 8601 time (Invalid isoformat string: 'yesterday')",
        "start_unix_s / start_utc: missing (or start_utc is not a string: None)",
        "start_utc: not an ISO 8601 time ('2026-11-23T10:00:00' has no time zone (expected ...Z))",
        "start_unix_s: 'soon' is not a time (seconds since 1970)"])] + [
        "skipped 1 more lines that cannot be used"]
    assert captured.err.splitlines()[0] == f"edgeoffload-host energy: warning: skipped {log}:5: not JSON " \
                                           "(Expecting value at column 1)"
    assert sum(e["n"] for e in summary["entries"]) == 8


def test_windows_outside_the_recording(recording, tmp_path, capsys):
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS, clock_offset_s=86400)  # yesterday's log
    assert fails(capsys, recording, "--log", log, "--align", "utc") == (
        f"{log}: none of its 8 lines (2026-11-22T10:00:00.200000Z to 2026-11-22T10:00:01.312000Z) lies within "
        "the recording (2026-11-23T10:00:00.000000Z to 2026-11-23T10:00:02.000000Z, offset 0 ms); pass the log of "
        "this run, or --offset-ms if the board's clock is off")
    assert fails(capsys, recording, "--log", log) == (
        f"{log}: none of its 8 marked lines lies within the recording (2026-11-23T10:00:00.000000Z to "
        "2026-11-23T10:00:02.000000Z ± 2 s, offset 0 ms); pass the log of this run, or --offset-ms if the "
        "board's clock is off")


def test_lines_that_straddle_the_recordings_end_are_named(recording, tmp_path, capsys):
    lines = [decision(i, b) for i, b in enumerate(BURSTS, start=1)]
    lines.append({**utc_only(lines[0]), "start_utc": "2026-11-23T10:00:01.990Z", "end_utc": "2026-11-23T10:00:02.010Z"})
    log = write_log(tmp_path / "decisions.jsonl", lines)
    summary = json.loads((main(["energy", str(recording), "--log", str(log), "--align", "utc", "--json"]),
                          capsys.readouterr().out)[1])
    assert summary["warnings"] == [f"{log}: left out 1 lines that straddle the recording's start or end: {log}:9"]


def test_alignment_that_the_recording_cannot_give(tmp_path, log, capsys):
    no_gpi = write_recording(tmp_path / "no_gpi.jls", BURSTS, Layout(gpi=False))
    assert fails(capsys, no_gpi, "--log", log, "--align", "gpi") == (
        f"--align gpi: {no_gpi} has no signal gpi[0] of JS220-000417; record the marker line's GPI input, choose "
        "it with --gpi, or use --align utc")
    no_utc = write_recording(tmp_path / "no_utc.jls", BURSTS, Layout(utc=False))
    assert fails(capsys, no_utc, "--log", log, "--align", "utc") == (
        f"--align utc: {no_utc} has no UTC time map; record with UTC (the Joulescope recorder adds it) or use "
        "--align gpi")
    neither = write_recording(tmp_path / "neither.jls", BURSTS, Layout(utc=False, gpi=False))
    assert fails(capsys, neither, "--log", log) == (
        f"{neither}: nothing to align {log} with: no signal gpi[0], and no UTC time map; record the daemon's "
        "marker line on a GPI input (--gpi) or record with UTC")
    assert fails(capsys, no_utc, "--log", log, "--gpi", "1").startswith(
        f"{no_utc}: nothing to align {log} with: no signal gpi[1], and no UTC time map")
    unmarked = bursts_log(tmp_path / "unmarked.jsonl", BURSTS, marker=False)
    assert fails(capsys, no_utc, "--log", unmarked).startswith(
        f"{no_utc}: nothing to align {unmarked} with: no line of {unmarked} has \"marker\": true, and no UTC")
    assert fails(capsys, no_utc, "--log", unmarked, "--align", "gpi") == (
        f"{unmarked}: no line has \"marker\": true, so no request can be paired with a gpi[0] pulse; enable the "
        "daemon's GPIO marker or use --align utc")
    no_pulses = write_recording(tmp_path / "no_pulses.jls", BURSTS, Layout(utc=False, pulses=[]))
    assert fails(capsys, no_pulses, "--log", log).startswith(
        f"{no_pulses}: nothing to align {log} with: no complete pulse on gpi[0], and no UTC time map")


def test_unmarked_lines_fall_back_to_utc(tmp_path, capsys):
    recording = write_recording(tmp_path / "run.jls", BURSTS)
    unmarked = bursts_log(tmp_path / "unmarked.jsonl", BURSTS, marker=False)
    assert main(["energy", str(recording), "--log", str(unmarked), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["alignment"] == "utc"


IDLE_FORMAT = "is not START:END in seconds into the recording with 0 <= START < END (e.g. 0.5:2)"


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--idle", "2:1", f"--idle: '2:1' {IDLE_FORMAT}"),
    ("--idle", "a:b", f"--idle: 'a:b' {IDLE_FORMAT}"),
    ("--idle", "1:2:3", f"--idle: '1:2:3' {IDLE_FORMAT}"),
    ("--gpi", "4", "--gpi: 4 is not a GPI input (0-3)"),
    ("--gpi", "x", "--gpi: 'x' is not a whole number"),
    ("--offset-ms", "nan", "--offset-ms: 'nan' is not a finite number of milliseconds"),
    ("--tolerance-ms", "-1", "--tolerance-ms: -1 is below the minimum 0"),
])
def test_bad_flag_values(recording, log, capsys, flag, value, message):
    assert fails(capsys, recording, "--log", log, flag, value) == message


def test_idle_outside_the_recording(recording, log, capsys):
    assert fails(capsys, recording, "--log", log, "--idle", "1:5") == (
        f"--idle: 1:5 s is not within {recording} (0 to 2.000000 s) or holds no sample; pass START:END seconds into "
        "the recording with START < END")


def test_outputs_that_cannot_be_written(recording, log, tmp_path, capsys):
    assert fails(capsys, recording, "--log", log, "--csv", log) == (
        f"--csv: {log} is an input of this command; choose another file")
    assert fails(capsys, recording, "--log", log, "--csv", tmp_path / "x", "--png", tmp_path / "x") == (
        f"--png: {tmp_path / 'x'} is also given to --csv; give each output its own file")
    assert fails(capsys, recording, "--log", log, "--profile", tmp_path / "no" / "p.json") == (
        f"--profile: folder {tmp_path / 'no'} does not exist")


def test_missing_pyjls_names_the_fix(recording, log, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyjls", None)  # what `import pyjls` meets when it is not installed
    message = fails(capsys, recording, "--log", log)
    assert message.startswith("reading JLS recordings needs pyjls, which cannot be imported (")
    assert message.endswith("); install it with `pip install 'edgeoffload-host[jls]'`")


def test_an_absurdly_long_line_is_skipped_without_holding_it(recording, tmp_path, capsys):
    log = tmp_path / "decisions.jsonl"
    log.write_text("x" * 300_000 + "\n" + "".join(json.dumps(decision(i, b)) + "\n" for i, b in enumerate(BURSTS)))
    assert main(["energy", str(recording), "--log", str(log), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["warnings"] == [f"skipped {log}:1: line longer than 65536 bytes; not a decision"]
    assert sum(e["n"] for e in summary["entries"]) == 8


def test_a_recording_whose_power_signal_is_empty(tmp_path, log, capsys):
    path = tmp_path / "empty.jls"
    with pyjls.Writer(str(path)) as w:
        w.source_def(source_id=1, name="JS220-000001", vendor="Jetperch", model="JS220", version="",
                     serial_number="000001")
        w.signal_def(signal_id=1, source_id=1, sample_rate=1_000_000, name="power", units="W")
    assert fails(capsys, path, "--log", log) == (
        f"{path}: signal JS220-000001.power holds no samples (0 at 1000000 Hz); the recording is empty")
