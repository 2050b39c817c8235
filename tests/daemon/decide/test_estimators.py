import math

import pytest

from edgeoffload.decide.estimators import Ewma, LinkEstimator
from edgeoffload.decide.types import NETWORK_PROFILES


def test_ewma_first_sample_sets_then_smooths_and_ignores_nan():
    e = Ewma(alpha=0.5)
    assert e.update(10.0) == 10.0
    assert e.update(20.0) == 15.0
    assert e.update(math.nan) == 15.0
    assert e.count == 2


def test_link_starts_from_the_profile_and_says_so():
    link = LinkEstimator(NETWORK_PROFILES["ethernet"])
    snap = link.snapshot()
    assert snap.one_way_latency_ms == 10.0 and snap.upload_bytes_per_s == 3.04e6
    assert snap.name == "profile ethernet"


def test_rtt_measurements_replace_the_profile_latency():
    link = LinkEstimator(NETWORK_PROFILES["ethernet"], alpha=1.0)
    link.add_rtt(0.4)
    assert link.snapshot().one_way_latency_ms == pytest.approx(0.2)
    assert link.source == "measured rtt, ethernet bandwidth"


def test_bandwidth_converges_to_the_measured_link_keeping_the_ratio():
    prior = NETWORK_PROFILES["ethernet"]
    link = LinkEstimator(prior, alpha=0.5)
    link.add_rtt(2.0)
    true_up, true_down = 1.0e6, 1.0e6 * prior.download_bytes_per_s / prior.upload_bytes_per_s
    for _ in range(60):
        transfer_ms = 1000 * (3072 / true_up + 400 / true_down)
        link.add_transfer(2.0 + 1.0 + transfer_ms, server_ms=1.0, bytes_sent=3072, bytes_received=400)
    snap = link.snapshot()
    assert snap.upload_bytes_per_s == pytest.approx(true_up, rel=0.02)
    assert snap.download_bytes_per_s == pytest.approx(true_down, rel=0.02)
    assert link.source == "measured"


def test_transfer_faster_than_rtt_allows_is_clamped_not_negative():
    link = LinkEstimator(NETWORK_PROFILES["radio"], alpha=1.0)
    link.add_rtt(5.0)
    link.add_transfer(1.0, server_ms=0.5, bytes_sent=3072, bytes_received=400)
    snap = link.snapshot()
    assert snap.upload_bytes_per_s > NETWORK_PROFILES["radio"].upload_bytes_per_s
    assert math.isfinite(snap.upload_bytes_per_s)


def test_garbage_samples_are_ignored():
    link = LinkEstimator(NETWORK_PROFILES["ethernet"])
    link.add_rtt(math.nan)
    link.add_rtt(-1.0)
    link.add_transfer(math.inf, 1.0, 10, 10)
    link.add_transfer(5.0, 1.0, 0, 0)
    assert link.source == "profile ethernet"


def test_moved_uses_a_relative_tolerance():
    from edgeoffload.decide.estimators import ESTIMATE_TOLERANCE, moved
    assert moved((1.0,), None)
    assert not moved((1.0 + ESTIMATE_TOLERANCE / 2,), (1.0,))
    assert ESTIMATE_TOLERANCE <= 0.1
    assert moved((1.0 + ESTIMATE_TOLERANCE * 2,), (1.0,))
    assert moved((5.0, 1.0), (5.0, 0.5))
    assert moved((1.0,), (1.0, 2.0))


def test_clipped_ewma_bounds_one_outlier_but_follows_a_sustained_shift():
    e = Ewma(alpha=0.05, clip=2.0)
    e.update(1.0)
    e.update(50.0)  # one spike counts as 2.0: +5 %
    assert e.value == pytest.approx(1.05)
    for _ in range(100):
        e.update(5.0)
    assert e.value == pytest.approx(5.0, rel=0.02)
