"""WindowTracker: GPI edges and sample-accurate energy over blocks, however the blocks are cut."""

from __future__ import annotations

import numpy as np
import pytest

from edgeoffload.errors import SensorError
from edgeoffload_host.joulescope.windows import SampleBlock, WindowTracker

RATE = 1000.0


def blocks(power, gpi, first_id=0, cuts=()):
    """The signal cut into blocks at the given offsets."""
    power, gpi = np.asarray(power, dtype=np.float32), np.asarray(gpi, dtype=np.uint8)
    edges = [0, *cuts, len(power)]
    return [SampleBlock(first_id + a, RATE, power[a:b], gpi[a:b]) for a, b in zip(edges, edges[1:])]


def feed_all(tracker, block_list):
    return [w for b in block_list for w in tracker.feed(b)]


def signal_with_pulses(n, pulses, base=1.0):
    """(power, gpi) of n samples; pulses are (start, length, power while high)."""
    power, gpi = np.full(n, base), np.zeros(n, dtype=np.uint8)
    for start, length, high_w in pulses:
        power[start:start + length] = high_w
        gpi[start:start + length] = 1
    return power, gpi


def test_one_window_has_the_energy_of_its_high_samples():
    power, gpi = signal_with_pulses(100, [(10, 7, 3.0)])
    power[10:17] = [3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6]  # uneven power: the energy is their sum over the rate
    (window,) = feed_all(WindowTracker(gpi=0), blocks(power, gpi, first_id=500))
    assert (window.seq, window.gpi, window.sample_id_start, window.sample_id_end) == (1, 0, 510, 517)
    assert window.energy_j == pytest.approx(sum([3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6]) / RATE, rel=1e-6)
    assert window.duration_s == pytest.approx(0.007)
    assert window.mean_power_w == pytest.approx(3.3, rel=1e-6)
    assert window.missing_samples == 0


@pytest.mark.parametrize("cuts", [(), (11,), (10,), (17,), (16,), (3, 12, 14, 16, 40), tuple(range(1, 100))],
                         ids=["whole", "inside", "at-rise", "at-fall", "before-fall", "many", "one-sample"])
def test_block_boundaries_do_not_change_the_windows(cuts):
    power, gpi = signal_with_pulses(100, [(10, 7, 3.0), (30, 1, 5.0), (60, 25, 2.5)])
    windows = feed_all(WindowTracker(gpi=1), blocks(power, gpi, cuts=cuts))
    assert [(w.seq, w.sample_id_start, w.sample_id_end) for w in windows] == [(1, 10, 17), (2, 30, 31), (3, 60, 85)]
    assert [w.energy_j for w in windows] == pytest.approx([7 * 3.0 / RATE, 5.0 / RATE, 25 * 2.5 / RATE])


def test_a_line_high_at_the_start_is_not_a_window():
    power, gpi = signal_with_pulses(50, [(0, 5, 3.0), (20, 4, 3.0)])
    windows = feed_all(WindowTracker(gpi=0), blocks(power, gpi, cuts=(2,)))
    assert [(w.seq, w.sample_id_start) for w in windows] == [(1, 20)]


def test_a_window_still_open_is_not_reported_until_it_falls():
    power, gpi = signal_with_pulses(40, [(30, 20, 3.0)])  # rises at 30, still high at the end
    tracker = WindowTracker(gpi=0)
    assert feed_all(tracker, blocks(power, gpi)) == []
    assert tracker.window_open
    (window,) = tracker.feed(SampleBlock(40, RATE, np.full(20, 3.0, np.float32), np.array([1] * 5 + [0] * 15)))
    assert (window.sample_id_start, window.sample_id_end) == (30, 45)
    assert window.energy_j == pytest.approx(15 * 3.0 / RATE)


def test_a_gap_inside_a_window_leaves_its_energy_unknown_but_keeps_the_count():
    power, gpi = signal_with_pulses(100, [(10, 30, 3.0), (60, 5, 3.0)])
    pieces = blocks(power, gpi, cuts=(20, 25))
    del pieces[1]  # samples 20..24 never arrived; the line was high throughout
    windows = feed_all(WindowTracker(gpi=0), pieces)
    assert [(w.seq, w.sample_id_start, w.sample_id_end) for w in windows] == [(1, 10, 40), (2, 60, 65)]
    assert windows[0].energy_j is None and windows[0].mean_power_w is None
    assert windows[0].missing_samples == 5
    assert windows[1].energy_j == pytest.approx(5 * 3.0 / RATE)


def test_nan_samples_hold_the_last_level_and_make_no_edges():
    power, gpi = signal_with_pulses(60, [(10, 20, 3.0)])
    power[15:18] = np.nan
    gpi[15:18] = 0  # the instrument fills lost GPI samples with 0: that must not end the window
    windows = feed_all(WindowTracker(gpi=0), blocks(power, gpi, cuts=(16,)))
    assert [(w.sample_id_start, w.sample_id_end, w.missing_samples, w.energy_j) for w in windows] == [(10, 30, 3, None)]


def test_overlapping_blocks_are_counted_once():
    power, gpi = signal_with_pulses(50, [(10, 10, 2.0)])
    tracker = WindowTracker(gpi=0)
    first = SampleBlock(0, RATE, power[:15].astype(np.float32), gpi[:15])
    again = SampleBlock(5, RATE, power[5:50].astype(np.float32), gpi[5:50])  # repeats samples 5..14
    windows = tracker.feed(first) + tracker.feed(again) + tracker.feed(SampleBlock(0, RATE, power[:3], gpi[:3]))
    assert [(w.sample_id_start, w.sample_id_end) for w in windows] == [(10, 20)]
    assert windows[0].energy_j == pytest.approx(10 * 2.0 / RATE)


def test_a_rate_change_drops_the_open_window():
    tracker = WindowTracker(gpi=0)
    tracker.feed(SampleBlock(0, RATE, np.ones(10, np.float32), np.array([0] * 5 + [1] * 5)))
    assert tracker.window_open
    assert tracker.feed(SampleBlock(10, 2 * RATE, np.ones(10, np.float32), np.zeros(10))) == []
    assert not tracker.window_open


@pytest.mark.parametrize("block, message", [
    (SampleBlock(7, RATE, np.ones(5), np.ones(4)), "power has shape (5,) and GPI (4,)"),
    (SampleBlock(7, 0.0, np.ones(5), np.ones(5)), "sample rate 0.0 is not a positive number"),
    (SampleBlock(7, float("nan"), np.ones(5), np.ones(5)), "sample rate nan is not a positive number"),
    (SampleBlock(7, RATE, np.ones((5, 2)), np.ones(5)), "must be 1-D"),
])
def test_inconsistent_blocks_are_refused_naming_the_block(block, message):
    with pytest.raises(SensorError, match="sample block at sample 7") as caught:
        WindowTracker(gpi=0).feed(block)
    assert message in str(caught.value)


def test_energy_over_a_million_samples_is_exact_to_float64():
    rng = np.random.default_rng(0)
    power = rng.uniform(1.0, 4.0, 1_000_000).astype(np.float32)
    gpi = np.zeros(len(power), dtype=np.uint8)
    gpi[1000:900_000] = 1
    windows = feed_all(WindowTracker(gpi=0), [SampleBlock(a, 1e6, power[a:a + 65536], gpi[a:a + 65536])
                                             for a in range(0, len(power), 65536)])
    assert windows[0].energy_j == pytest.approx(float(power[1000:900_000].astype(np.float64).sum()) / 1e6, rel=1e-12)
