"""The instrument adapter: its stream processor on joulescope's real v1 StreamBuffer; a real instrument (marker)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgeoffload_host.joulescope.instrument import GPI_FIELDS, _GpiStream, open_instrument
from edgeoffload_host.joulescope.messages import statistics_message
from edgeoffload_host.joulescope.windows import WindowTracker

stream_buffer = pytest.importorskip("joulescope.v1.stream_buffer")

INPUT_HZ, OUTPUT_HZ = 2_000_000, 1_000_000  # a JS220: a 2 MHz counter, samples at 1 MHz (decimate 2)


def driver_message(field_id: int, index: int, first: int, data: np.ndarray) -> dict:
    """A pyjoulescope_driver stream message as StreamBuffer.insert takes it (sample ids at 2 MHz)."""
    return {"field_id": field_id, "index": index, "sample_id": first * 2, "data": data,
            "sample_rate": INPUT_HZ, "decimate_factor": 2}


def insert(buffer, first: int, power: np.ndarray, gpi0: np.ndarray, gpi1: np.ndarray) -> None:
    n = len(power)
    buffer.insert("s/i/!data", driver_message(1, 0, first, (power / 5).astype(np.float32)))
    buffer.insert("s/v/!data", driver_message(2, 0, first, np.full(n, 5.0, np.float32)))
    buffer.insert("s/p/!data", driver_message(3, 0, first, power.astype(np.float32)))
    buffer.insert("s/i/range/!data", driver_message(4, 0, first, np.zeros(n, np.uint8)))  # u4 comes as u8
    buffer.insert("s/gpi/0/!data", driver_message(5, 0, first, np.packbits(gpi0, bitorder="little")))
    buffer.insert("s/gpi/1/!data", driver_message(5, 1, first, np.packbits(gpi1, bitorder="little")))


@pytest.mark.parametrize("gpi", [0, 1])
def test_the_stream_processor_hands_out_power_and_the_chosen_gpi_sample_aligned(gpi):
    buffer = stream_buffer.StreamBuffer(1, frequency=INPUT_HZ, device="js220", output_frequency=OUTPUT_HZ)
    blocks = []
    stream = _GpiStream(GPI_FIELDS[gpi], blocks.append)
    stream.start(buffer)
    first, n = 500_000, 4096
    power = np.full(3 * n, 2.0)
    marked, other = np.zeros(3 * n, np.uint8), np.zeros(3 * n, np.uint8)
    marked[1000:8000] = 1
    power[1000:8000] = 3.5
    other[2000:3000] = 1  # the other input must not be what we read
    for k in range(3):
        part = slice(k * n, (k + 1) * n)
        gpis = (marked[part], other[part]) if gpi == 0 else (other[part], marked[part])
        insert(buffer, first + k * n, power[part], *gpis)
        stream.stream_notify(buffer)
    assert [(b.sample_id, len(b.power_w), b.sample_rate_hz) for b in blocks] == [
        (first + k * n, n, OUTPUT_HZ) for k in range(3)]
    np.testing.assert_array_equal(np.concatenate([b.gpi for b in blocks]), marked)
    np.testing.assert_allclose(np.concatenate([b.power_w for b in blocks]), power)
    tracker = WindowTracker(gpi)
    (window,) = [w for b in blocks for w in tracker.feed(b)]
    assert (window.sample_id_start, window.sample_id_end) == (first + 1000, first + 8000)
    assert window.energy_j == pytest.approx(7000 * 3.5 / OUTPUT_HZ)


def test_nothing_new_means_no_block():
    buffer = stream_buffer.StreamBuffer(1, frequency=INPUT_HZ, device="js220", output_frequency=OUTPUT_HZ)
    blocks = []
    stream = _GpiStream("current_lsb", blocks.append)
    assert stream.stream_notify(buffer) is False  # empty buffer
    zeros = np.zeros(1024, np.uint8)
    insert(buffer, 0, np.ones(1024), zeros, zeros)
    stream.stream_notify(buffer)
    stream.stream_notify(buffer)
    assert len(blocks) == 1


@pytest.mark.joulescope
def test_a_real_instrument_streams_statistics_and_gpi_samples(tmp_path):
    """Needs a Joulescope on USB (and pyjls): one second of statistics, GPI0 samples and a JLS recording."""
    instrument = open_instrument(None, 10, gpi=0, jls_path=tmp_path / "run.jls")
    stats, blocks = [], []
    instrument.start(stats.append, blocks.append)
    try:
        time.sleep(1.5)
    finally:
        instrument.stop()
    assert len(stats) >= 10
    messages = [statistics_message(s, instrument.name) for s in stats]
    assert all(b["sample_id_start"] == a["sample_id_end"] for a, b in zip(messages, messages[1:]))
    assert abs(messages[-1]["utc_unix_s"] - time.time()) < 5
    assert blocks and {b.sample_rate_hz for b in blocks} == {blocks[0].sample_rate_hz}
    pyjls = pytest.importorskip("pyjls")
    with pyjls.Reader(str(tmp_path / "run.jls")) as reader:
        names = {s.name for s in reader.signals.values()}
    assert {"current", "voltage", "power", "gpi[0]"} <= names
