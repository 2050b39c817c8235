"""The facts about pyjls and JLS files that `edgeoffload_host.energy.jls` relies on, checked on real files:
JLS time, file-relative sample ids, the nearest sample to a time, NaN-skipping statistics, GPI pulses across
chunks and at other rates than the power signal."""

from __future__ import annotations

import numpy as np
import pyjls
import pytest
from jls_recordings import BURSTS, IDLE_W, START_UTC, Layout, write_recording
from pyjls import DataType, SignalType

from edgeoffload_host.energy import jls
from edgeoffload_host.energy.decisions import JLS_EPOCH_UNIX_S, t64_from_unix_s, t64_from_utc, utc_from_t64
from edgeoffload_host.energy.jls import open_recording

MICROSECOND_T64 = (1 << 30) / 1e6


@pytest.mark.parametrize("text", ["2018-01-01T00:00:00.000000Z", "2026-11-23T10:00:00.123456Z",
                                  "2031-05-07T23:59:59.999999Z"])
def test_jls_time_is_34q30_seconds_since_2018_as_pyjls_has_it(text):
    t64 = t64_from_utc(text)
    assert abs(t64 - pyjls.time64.as_time64(text)) <= MICROSECOND_T64  # pyjls goes through a float
    assert utc_from_t64(t64) == text
    unix_s = pyjls.jls_to_utc(t64)
    assert abs(t64_from_unix_s(unix_s) - t64) <= MICROSECOND_T64
    assert pyjls.utc_to_jls(float(JLS_EPOCH_UNIX_S)) == 0 == t64_from_unix_s(JLS_EPOCH_UNIX_S)


def test_sample_ids_count_from_the_first_sample_and_times_map_to_the_nearest(tmp_path):
    path = write_recording(tmp_path / "run.jls", BURSTS, Layout(sample_id_offset=123_456, nan_at=[(1.5, 100)],
                                                                  utc_at_end=False))
    with open_recording(path) as recording:
        t0 = t64_from_utc(START_UTC)
        assert (recording.fs_hz, recording.length, recording.has_utc) == (100_000, 200_000, True)
        assert recording.t64(0) == t0
        assert recording.sample_id(t0) == 0
        times = {sample: t0 + round(sample * (1 << 30) / 100_000) for sample in range(0, 200_000, 100)}
        assert {sample: recording.sample_id(t) for sample, t in times.items()} == {s: s for s in times}
        with pyjls.Reader(str(path)) as reader:  # why: pyjls alone gives the sample before for many times
            assert sum(reader.timestamp_to_sample_id(1, t) == s - 1 for s, t in times.items()) > 100
        assert recording.sample_id(t0 - (1 << 30)) == -100_000  # before the recording: outside 0..length
        total_w, nans = recording.power_sum_w(20_000, 20_700)
        assert (total_w, nans) == (pytest.approx(4.0 * 700), 0)
        assert recording.power_sum_w(149_990, 150_010) == (pytest.approx(IDLE_W * 10), 10)
        assert recording.mean_power_w(140_000, 160_000) == pytest.approx(IDLE_W)  # NaN samples skipped


def _gpi_file(path, levels: np.ndarray, *, power_fs: int, gpi_fs: int, power_offset: int, gpi_offset: int):
    with pyjls.Writer(str(path)) as w:
        w.source_def(source_id=1, name="JS220-000001", vendor="Jetperch", model="JS220", version="",
                     serial_number="000001")
        w.signal_def(signal_id=1, source_id=1, signal_type=SignalType.FSR, data_type=DataType.F32,
                     sample_rate=power_fs, name="power", units="W")
        w.signal_def(signal_id=2, source_id=1, signal_type=SignalType.FSR, data_type=DataType.U1,
                     sample_rate=gpi_fs, name="gpi[2]", units="")
        w.fsr_f32(1, power_offset, np.ones(len(levels) * power_fs // gpi_fs, dtype=np.float32))
        w.fsr(2, gpi_offset, np.packbits(levels, bitorder="little"))
    return path


def test_gpi_pulses_at_twice_the_power_rate_map_through_the_sample_counter(tmp_path):
    # Base rate 200 kHz: the GPI input is not decimated, power is decimated by 2; both started at counter 8010.
    levels = np.zeros(4000, dtype=np.uint8)
    levels[400:1800] = 1
    path = _gpi_file(tmp_path / "rates.jls", levels, power_fs=100_000, gpi_fs=200_000, power_offset=4005,
                     gpi_offset=8010)
    with open_recording(path, gpi_input=2) as recording:
        assert recording.gpi.name == "gpi[2]"
        assert recording.pulses() == jls.Pulses(((200, 900),), ())


def test_gpi_edges_across_chunks_and_pulses_cut_by_the_recording(tmp_path, monkeypatch):
    monkeypatch.setattr(jls, "CHUNK_SAMPLES", 64)  # edges on, before and after chunk boundaries
    levels = np.zeros(512, dtype=np.uint8)
    for start, stop in ((0, 10), (63, 64), (64, 128), (129, 130), (200, 320), (500, 512)):
        levels[start:stop] = 1
    path = _gpi_file(tmp_path / "chunks.jls", levels, power_fs=1000, gpi_fs=1000, power_offset=0, gpi_offset=0)
    with open_recording(path, gpi_input=2) as recording:
        pulses = recording.pulses()
    assert pulses.windows == ((63, 128), (129, 130), (200, 320))
    assert pulses.notes == ("gpi[2] is high when the recording starts: that cut pulse is left out",
                            "gpi[2] is high when the recording ends: that cut pulse is left out")


def test_a_recording_without_utc_entries_has_no_time_map(tmp_path):
    path = write_recording(tmp_path / "no_utc.jls", BURSTS, Layout(utc=False, gpi=False))
    with open_recording(path) as recording:
        assert not recording.has_utc and recording.gpi is None
        assert recording.describe() == "JS220-000417: power at 100 kHz, 2.000 s, no GPI input, no UTC time map"
