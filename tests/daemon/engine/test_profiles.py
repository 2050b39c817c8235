"""The profile store (persistence, staleness, corruption) and the timing loop, with a fake clock."""

import json

import numpy as np
import pytest

from edgeoffload.engine.profiles import Profile, ProfileStore, profile_key, sample_input, time_runs
from edgeoffload.profiling.stats import summarize, summarize_warmup


def profile(sha="ab" * 32, measured=1000.0):
    return Profile("m", sha, "cpu1", "cpu1:tflite_cpu:threads=1", "rt 1", measured, summarize_warmup([50.0, 2.0]),
                   summarize([1.0, 2.0, 3.0]), 3.0, "modelled")


def test_round_trip_and_staleness(tmp_path):
    store = ProfileStore(tmp_path)
    p = profile()
    store.put(p)
    again = ProfileStore(tmp_path)
    again.load()
    assert again.get(p.key, max_age_s=100, now_s=1050.0) == p
    assert again.get(p.key, max_age_s=10, now_s=1050.0) is None  # stale
    assert again.get(profile_key("cd" * 32, p.target_signature, "rt 1"), max_age_s=1e9, now_s=0) is None
    data = json.loads((tmp_path / "profiles.json").read_text())
    entry = data["profiles"][p.key]
    assert entry["energy_mj"] == pytest.approx(6.0) and entry["measured_utc"].endswith("Z")


def test_corrupt_store_is_set_aside_not_fatal(tmp_path):
    (tmp_path / "profiles.json").write_text('{"schema": 1, "profiles": {"k": {"model": 3}}')
    store = ProfileStore(tmp_path)
    store.load()
    assert store.get("k", max_age_s=1e9, now_s=0) is None
    assert list(tmp_path.glob("profiles.corrupt-*"))
    store.put(profile())  # and a fresh file is written
    assert json.loads((tmp_path / "profiles.json").read_text())["schema"] == 1


def test_time_runs_by_count_and_by_duration():
    t = [0.0]

    def clock():
        return t[0]

    def run(_x):
        t[0] += 0.002  # every run takes 2 ms on the fake clock

    warm, lat = time_runs(run, None, warmup_runs=3, runs=5, duration_s=None, clock=clock)
    assert (warm.n, lat.n) == (3, 5) and lat.mean_ms == pytest.approx(2.0)
    _, lat = time_runs(run, None, warmup_runs=0, runs=1, duration_s=0.02, clock=clock)
    assert lat.n == 10


def test_sample_input_is_deterministic_and_shaped():
    a = sample_input((1, 4, 4, 3), np.uint8)
    assert a.dtype == np.uint8 and a.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(a, sample_input((1, 4, 4, 3), np.uint8))
    assert sample_input((2,), np.float32).dtype == np.float32
