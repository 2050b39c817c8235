import math
import statistics

import pytest

from edgeoffload.profiling.stats import percentile, summarize, summarize_warmup
from edgeoffload.profiling.tally import DecisionTally


def test_summarize_matches_the_standard_library():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 100.0]
    s = summarize(samples)
    assert s.n == 6
    assert s.mean_ms == pytest.approx(statistics.fmean(samples))
    assert s.p50_ms == pytest.approx(statistics.median(samples))
    assert s.stdev_ms == pytest.approx(statistics.stdev(samples))
    assert s.min_ms == 1.0 and s.max_ms == 100.0
    assert 5.0 < s.p99_ms <= 100.0


def test_percentile_interpolates():
    assert percentile([0.0, 10.0], 50) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summarize_drops_invalid_samples_and_refuses_none_left():
    assert summarize([1.0, math.nan, -3.0, 3.0]).n == 2
    with pytest.raises(ValueError, match="no valid timing samples"):
        summarize([math.nan])


def test_single_sample_has_zero_stdev_and_warmup_is_separate():
    assert summarize([2.0]).stdev_ms == 0.0
    w = summarize_warmup([900.0, 3.0])
    assert (w.n, w.total_ms, w.first_ms) == (2, 903.0, 900.0)


def test_tally_counts_deadlines_fallbacks_and_errors():
    t = DecisionTally()
    t.add("cpu1", predicted_ms=10, actual_ms=12, energy_mj=30, deadline_ms=11, fallback=True)
    t.add("cpu1", predicted_ms=10, actual_ms=9, energy_mj=27, deadline_ms=11, fallback=False)
    t.add("gpu", predicted_ms=20, actual_ms=20, energy_mj=20, deadline_ms=None, fallback=False)
    s = t.summary()
    assert s["requests"] == 3
    c = s["targets"]["cpu1"]
    assert (c["requests"], c["fallbacks"], c["deadline_hits"], c["deadline_misses"]) == (2, 1, 1, 1)
    assert c["mean_abs_error_latency_ms"] == 1.5
    assert s["targets"]["gpu"]["deadline_hits"] == 0
