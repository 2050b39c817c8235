"""edgeoffload-host energy: energy per burst of real (synthetic) JLS recordings, exact to 1 % through GPI and
UTC alignment, every output file, and what happens when the pulses and the log do not match."""

from __future__ import annotations

import csv
import json
import re
import statistics

import pytest
from jls_recordings import BURSTS, IDLE_W, Burst, Layout, bursts_log, decision, write_log, write_recording

from edgeoffload_host.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROFILE_ENTRY_KEYS = {"model", "target", "n", "energy_mj_mean", "energy_mj_stdev", "active_energy_mj_mean",
                      "latency_ms_mean", "idle_power_w"}


def run_json(capsys, *argv) -> dict:
    assert main(["energy", *map(str, argv), "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def expected(bursts) -> dict[tuple[str, str], dict]:
    groups: dict[tuple[str, str], list[Burst]] = {}
    for b in bursts:
        groups.setdefault((b.model, b.target), []).append(b)
    return {key: {"n": len(bs), "energy_mj_mean": statistics.fmean(b.energy_mj for b in bs),
                  "energy_mj_stdev": statistics.stdev([b.energy_mj for b in bs]) if len(bs) > 1 else 0.0,
                  "active_energy_mj_mean": statistics.fmean(b.active_energy_mj() for b in bs),
                  "latency_ms_mean": statistics.fmean(b.duration_s * 1e3 for b in bs)}
            for key, bs in groups.items()}


def assert_entries(entries: list[dict], bursts, rel: float = 0.01) -> None:
    want = expected(bursts)
    assert [(e["model"], e["target"]) for e in entries] == list(want)  # in the order first seen
    for e in entries:
        w = want[(e["model"], e["target"])]
        assert e["n"] == w["n"], e
        for key in ("energy_mj_mean", "active_energy_mj_mean", "latency_ms_mean"):
            assert e[key] == pytest.approx(w[key], rel=rel), (key, e)
        assert e["energy_mj_stdev"] == pytest.approx(w["energy_mj_stdev"], rel=rel, abs=1e-3), e


@pytest.fixture
def recording(tmp_path):
    return write_recording(tmp_path / "run1.jls", BURSTS)


def test_gpi_alignment_gives_each_bursts_energy(recording, tmp_path, capsys):
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS)
    summary = run_json(capsys, recording, "--log", log)
    assert summary["alignment"] == "gpi" and summary["warnings"] == []
    assert summary["idle_power_w"] == pytest.approx(IDLE_W, rel=1e-6)
    assert summary["idle_source"] == "median of the mean power in 7 gaps between windows"
    assert_entries(summary["entries"], BURSTS)
    assert summary["next"] == f"edgeoffload-host energy {recording} --log {log} --profile energy-profile.json"


def test_lines_and_markdown_table_on_stdout(recording, tmp_path, capsys):
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS)
    assert main(["energy", str(recording), "--log", str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"read {log}: 8 requests in 8 lines \(2\.\d kB, \d\.\d s\)", out[0]), out[0]
    assert re.fullmatch(rf"opened {recording}: JS220-000417: power at 100 kHz, 2\.000 s, gpi\[0\], UTC time map "
                        r"\(\d+\.\d kB, \d\.\d s\)", out[1]), out[1]
    assert out[2].startswith("paired 8 requests with gpi[0] pulses: 8 gpi[0] pulses, 8 marked lines (")
    assert out[3].startswith("measured 8 windows; idle power 1.5000 W (median of the mean power in 7 gaps")
    assert out[4] == "# Energy per inference: run1.jls, aligned by gpi"
    assert "| mobilenet_q_128 | npu | 3 | 28.0000 | 1.4000 | 17.5000 | 7.000 | 7.000 | 4.0000 |" in out
    assert "| resnet50_q_224 | remote | 2 | 30.0000 | 0.0000 | 12.0000 | 12.000 | 12.000 | 2.5000 |" in out
    assert out[-1] == f"next: edgeoffload-host energy {recording} --log {log} --profile energy-profile.json"


@pytest.mark.parametrize("clock_offset_s", [0.0, 0.25, -0.4])
def test_utc_alignment_with_and_without_a_clock_offset(recording, tmp_path, capsys, clock_offset_s):
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS, clock_offset_s=clock_offset_s)
    summary = run_json(capsys, recording, "--log", log, "--align", "utc", "--offset-ms", clock_offset_s * 1e3)
    assert summary["alignment"] == "utc" and summary["warnings"] == []
    assert_entries(summary["entries"], BURSTS)


def test_utc_alignment_uses_unix_seconds_over_the_daemons_millisecond_strings(tmp_path, capsys):
    def daemon_line(line: dict) -> dict:  # the daemon writes start_utc/end_utc to the millisecond
        return {**line, "start_utc": line["start_utc"][:23] + "Z", "end_utc": line["end_utc"][:23] + "Z"}

    shifted = [Burst(b.start_s + 0.0004, b.duration_s, b.power_w, b.model, b.target) for b in BURSTS]
    recording = write_recording(tmp_path / "run.jls", shifted)
    log = write_log(tmp_path / "decisions.jsonl", [daemon_line(decision(i, b)) for i, b in enumerate(shifted)])
    summary = run_json(capsys, recording, "--log", log, "--align", "utc")
    assert_entries(summary["entries"], shifted)
    strings_only = write_log(tmp_path / "strings.jsonl", [
        {k: v for k, v in daemon_line(decision(i, b)).items() if not k.endswith("_unix_s")}
        for i, b in enumerate(BURSTS)])
    summary = run_json(capsys, write_recording(tmp_path / "on_ms.jls", BURSTS), "--log", strings_only,
                       "--align", "utc")
    assert_entries(summary["entries"], BURSTS)


def test_utc_alignment_without_the_offset_measures_the_wrong_samples(recording, tmp_path, capsys):
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS, clock_offset_s=0.05)
    summary = run_json(capsys, recording, "--log", log, "--align", "utc")
    npu = summary["entries"][0]
    assert npu["energy_mj_mean"] == pytest.approx(IDLE_W * 7, rel=0.01)  # idle samples 50 ms before each burst


def test_utc_is_the_default_without_a_gpi_input(tmp_path, capsys):
    recording = write_recording(tmp_path / "run.jls", BURSTS, Layout(gpi=False))
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS)
    summary = run_json(capsys, recording, "--log", log)
    assert summary["alignment"] == "utc"
    assert_entries(summary["entries"], BURSTS)


def test_current_times_voltage_when_there_is_no_power_signal(tmp_path, capsys):
    recording = write_recording(tmp_path / "run.jls", BURSTS, Layout(signals="current+voltage"))
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS)
    assert main(["energy", str(recording), "--log", str(log)]) == 0
    assert "current × voltage at 100 kHz" in capsys.readouterr().out
    summary = run_json(capsys, recording, "--log", log)
    assert_entries(summary["entries"], BURSTS)


def test_every_output_file_and_never_over_an_existing_one(recording, tmp_path, capsys):
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS)
    files = {flag: tmp_path / name for flag, name in
             (("--csv", "energy.csv"), ("--markdown", "energy.md"), ("--png", "energy.png"),
              ("--profile", "profile.json"))}
    argv = ["energy", str(recording), "--log", str(log), *[str(x) for kv in files.items() for x in kv]]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    for line, path in zip(out[4:8], files.values(), strict=True):
        assert re.fullmatch(rf"wrote {path} \(\d+\.\d kB, \d\.\d s\)", line), line
    assert out[8:] == [f"next: edgeoffloadctl profile import {files['--profile']}"]  # no table on stdout

    with open(files["--csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["target"], r["n"]) for r in rows] == [
        ("mobilenet_q_128", "npu", "3"), ("mobilenet_q_128", "cpu", "3"), ("resnet50_q_224", "remote", "2")]
    assert float(rows[0]["energy_mj_mean"]) == pytest.approx(28.0, rel=0.01)
    assert float(rows[0]["idle_power_w"]) == pytest.approx(1.5, rel=1e-6)
    markdown = files["--markdown"].read_text().splitlines()
    assert markdown[0] == "# Energy per inference: run1.jls, aligned by gpi"
    assert markdown[4] == "| model | target | n | energy mJ | stdev mJ | active mJ | latency ms | window ms | mean W |"
    png = files["--png"].read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000

    profile = json.loads(files["--profile"].read_text())
    assert {k: profile[k] for k in ("schema", "kind", "source", "recording", "alignment")} == {
        "schema": 1, "kind": "edgeoffload.energy-profile", "source": "joulescope", "recording": "run1.jls",
        "alignment": "gpi"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", profile["created_utc"])
    assert all(set(e) == PROFILE_ENTRY_KEYS for e in profile["entries"])
    assert_entries(profile["entries"], BURSTS)
    assert {e["idle_power_w"] for e in profile["entries"]} == {1.5}

    before = {path: path.read_bytes() for path in files.values()}
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"edgeoffload-host: error: --csv: {files['--csv']} already exists; pass --force to replace it or "
        "choose another file")
    assert {path: path.read_bytes() for path in files.values()} == before
    assert main([*argv, "--force"]) == 0
    assert json.loads(files["--profile"].read_text())["entries"] == profile["entries"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["run1.jls", "decisions.jsonl", *(p.name for p in files.values())])  # no temporary files left


def test_a_missing_pulse_at_the_end_pairs_the_ones_before(tmp_path, capsys):
    pulses = [(b.start_s, b.duration_s) for b in BURSTS[:-1]]
    recording = write_recording(tmp_path / "run.jls", BURSTS, Layout(pulses=pulses))
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS)
    summary = run_json(capsys, recording, "--log", log)
    assert summary["warnings"] == [
        "7 gpi[0] pulses, 8 marked lines: paired the first 7 (the pulses ran out); the rest are left out"]
    assert_entries(summary["entries"], BURSTS[:-1])


def test_a_missing_pulse_in_the_middle_stops_the_pairing_there(tmp_path, capsys):
    pulses = [(b.start_s, b.duration_s) for i, b in enumerate(BURSTS) if i != 2]
    recording = write_recording(tmp_path / "run.jls", BURSTS, Layout(pulses=pulses))
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS)
    summary = run_json(capsys, recording, "--log", log)
    assert summary["warnings"] == [
        f"7 gpi[0] pulses, 8 marked lines: paired the first 2 (pulse 3 at 0.650000 s is 25.000 ms wide, "
        f"{log}:3 took 7.000 ms); the rest are left out"]
    assert_entries(summary["entries"], BURSTS[:2])


def test_an_extra_pulse_of_the_same_width_is_caught_by_its_spacing(tmp_path, capsys):
    pulses = [(b.start_s, b.duration_s) for b in BURSTS[:1]] + [(0.27, 0.007)] + [
        (b.start_s, b.duration_s) for b in BURSTS[1:]]
    recording = write_recording(tmp_path / "run.jls", BURSTS, Layout(pulses=pulses))
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS[:1] + (Burst(0.5, 0.007, 4.2),))
    summary = run_json(capsys, recording, "--log", log)
    assert summary["warnings"] == [
        f"9 gpi[0] pulses, 2 marked lines: paired the first 1 (pulse 2 at 0.270000 s starts 70.000 ms after "
        f"pulse 1, {log}:2 starts 300.000 ms after {log}:1); the rest are left out"]


def test_pulses_that_match_no_line_are_an_error(recording, tmp_path, capsys):
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS[1:])
    assert main(["energy", str(recording), "--log", str(log)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"edgeoffload-host: error: gpi[0] pulses and {log} do not line up: pulse 1 at 0.200000 s is 7.000 ms "
        f"wide, {log}:1 took 25.000 ms; check --gpi and the log, raise --tolerance-ms, or use --align utc")


def test_a_log_that_also_holds_earlier_runs(recording, tmp_path, capsys):
    earlier = [decision(i, b, clock_offset_s=3600) for i, b in enumerate(BURSTS[:3], start=1)]
    log = write_log(tmp_path / "decisions.jsonl", earlier + [decision(i, b) for i, b in enumerate(BURSTS, 4)])
    summary = run_json(capsys, recording, "--log", log)
    assert summary["warnings"] == [
        f"{log}: left out 3 marked lines outside the recording (2026-11-23T10:00:00.000000Z to "
        "2026-11-23T10:00:02.000000Z ± 2 s)"]
    assert_entries(summary["entries"], BURSTS)
    summary = run_json(capsys, recording, "--log", log, "--align", "utc")
    assert summary["warnings"] == [
        f"{log}: left out 3 lines outside the recording (2026-11-23T10:00:00.000000Z to 2026-11-23T10:00:02.000000Z)"]
    assert_entries(summary["entries"], BURSTS)


def test_nan_samples_in_a_window_leave_that_window_out(tmp_path, capsys):
    recording = write_recording(tmp_path / "run.jls", BURSTS, Layout(nan_at=[(0.502, 10)]))
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS)
    summary = run_json(capsys, recording, "--log", log)
    assert summary["warnings"] == [
        f"{log}:3: 10 of the 700 samples in its window (0.500000 s to 0.507000 s) are NaN (dropped by the "
        "instrument) or infinite; left out"]
    assert_entries(summary["entries"], [b for i, b in enumerate(BURSTS) if i != 2])


def test_failed_requests_pair_with_their_pulse_but_are_left_out(recording, tmp_path, capsys):
    lines = [decision(i, b, ok=i != 2) for i, b in enumerate(BURSTS, start=1)]
    log = write_log(tmp_path / "decisions.jsonl", lines)
    summary = run_json(capsys, recording, "--log", log)
    assert summary["warnings"] == [f"left out 1 requests that failed (\"ok\": false): {log}:2"]
    assert_entries(summary["entries"], [b for i, b in enumerate(BURSTS) if i != 1])


def test_idle_from_a_stretch_of_the_recording(recording, tmp_path, capsys):
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS)
    summary = run_json(capsys, recording, "--log", log, "--idle", "1.5:1.95")
    assert summary["idle_power_w"] == pytest.approx(IDLE_W, rel=1e-6)
    assert summary["idle_source"] == "mean over 1.5 s to 1.95 s (--idle)"
    summary = run_json(capsys, recording, "--log", log, "--idle", "0.2:0.207")  # the first NPU burst
    assert summary["entries"][0]["active_energy_mj_mean"] == pytest.approx(28.0 - 4.0 * 7, abs=0.05)


def test_one_window_has_no_gaps_so_no_active_energy(tmp_path, capsys):
    recording = write_recording(tmp_path / "run.jls", BURSTS[:1])
    log = bursts_log(tmp_path / "decisions.jsonl", BURSTS[:1])
    profile = tmp_path / "profile.json"
    summary = run_json(capsys, recording, "--log", log, "--profile", profile)
    assert summary["idle_power_w"] is None
    assert summary["idle_source"] == "none: no gap between windows; pass --idle START:END for active energy"
    entry = json.loads(profile.read_text())["entries"][0]
    assert (entry["active_energy_mj_mean"], entry["idle_power_w"], entry["n"]) == (None, None, 1)
    assert entry["energy_mj_mean"] == pytest.approx(28.0, rel=0.01)


def test_help_says_what_a_pulse_count_mismatch_does(capsys):
    assert main(["energy", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "pairing keeps the longest prefix whose pulses match the lines in width and spacing" in text
    assert "fails only when not even the first pair matches" in text


def test_a_profile_the_daemon_would_refuse_is_not_written(tmp_path, capsys):
    """The profile is read back as `edgeoffloadctl profile import` reads it before anything is written: a
    recording in which nothing drew power (the instrument not in the supply line) gives no files."""
    bursts = [Burst(0.2, 0.007, 0.0), Burst(0.5, 0.007, 0.0)]
    recording = write_recording(tmp_path / "run.jls", bursts, Layout(idle_w=0.0))
    log = bursts_log(tmp_path / "decisions.jsonl", bursts)
    csv_file, profile = tmp_path / "energy.csv", tmp_path / "profile.json"
    status = main(["energy", str(recording), "--log", str(log), "--csv", str(csv_file), "--profile", str(profile)])
    err = capsys.readouterr().err
    assert status == 2, err
    assert ("--profile: entries[0].energy_mj_mean: expected a finite number > 0, got 0.0; the daemon would "
            "refuse this profile, so it is not written") in err
    assert not csv_file.exists() and not profile.exists()
    assert main(["energy", str(recording), "--log", str(log), "--csv", str(csv_file)]) == 0  # without --profile
    assert csv_file.exists()
