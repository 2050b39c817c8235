import math
import statistics

import pytest

from edgeoffload.errors import SensorError
from edgeoffload.profiling.energy import (EnergyWindowError, Sample, WindowEnergy, accumulator_energy,
                                          idle_baseline, integrate_power, per_inference, summarize_energy,
                                          unwrap_counter, window_energy)
from edgeoffload.sensors.base import PowerReading, RailSample


def power(*points):
    return [Sample(t, p) for t, p in points]


def counter(*points):
    return [Sample(t, None, e) for t, e in points]


# -- trapezoid ------------------------------------------------------------------------------------------------

def test_constant_power_gives_power_times_duration():
    samples = power((0.0, 2.0), (1.0, 2.0), (2.0, 2.0), (3.0, 2.0))
    assert integrate_power(samples, 0.5, 2.5) == pytest.approx(4.0, rel=1e-12)
    assert integrate_power(samples, 0.0, 3.0) == pytest.approx(6.0, rel=1e-12)


def test_ramp_is_integrated_exactly_with_interpolated_edges():
    samples = power(*[(float(t), float(t)) for t in range(5)])  # p(t) = t W
    assert integrate_power(samples, 0.0, 4.0) == pytest.approx(8.0, rel=1e-12)
    assert integrate_power(samples, 0.5, 3.5) == pytest.approx((3.5 ** 2 - 0.5 ** 2) / 2, rel=1e-12)


def test_edges_interpolate_between_the_samples_around_them():
    samples = power((0.0, 0.0), (1.0, 2.0), (2.0, 2.0))  # 2t W up to 1 s, then 2 W
    # 0.5..1: integral of 2t = 1 - 0.25; 1..1.5: 2 W * 0.5 s
    assert integrate_power(samples, 0.5, 1.5) == pytest.approx(0.75 + 1.0, rel=1e-12)


def test_window_wholly_between_two_samples_gets_the_interpolated_power():
    samples = power((0.0, 1.0), (0.1, 3.0))  # 100 ms apart; a 5 ms window inside
    # p(20 ms) = 1.4 W, p(25 ms) = 1.5 W: mean 1.45 W * 5 ms
    assert integrate_power(samples, 0.020, 0.025) == pytest.approx(1.45 * 0.005, rel=1e-9)


def test_samples_exactly_on_the_edges_are_used_as_they_are():
    samples = power((1.0, 1.0), (2.0, 3.0))
    assert integrate_power(samples, 1.0, 2.0) == pytest.approx(2.0, rel=1e-12)


# -- accumulator ----------------------------------------------------------------------------------------------

def test_accumulator_is_the_counter_difference_interpolated_at_the_edges():
    samples = counter((0.0, 10.0), (1.0, 12.0), (2.0, 16.0))
    assert accumulator_energy(samples, 0.0, 2.0) == pytest.approx(6.0, rel=1e-12)
    # C(0.5) = 11, C(1.5) = 14
    assert accumulator_energy(samples, 0.5, 1.5) == pytest.approx(3.0, rel=1e-12)


def test_decreasing_counter_is_refused_with_both_readings():
    samples = counter((0.0, 10.0), (1.0, 12.0), (2.0, 11.5), (3.0, 13.0))
    with pytest.raises(EnergyWindowError, match=r"decreases from 12\.0 J at t=1\.000000 s to 11\.5 J "
                                                 r"at t=2\.000000 s .*unwrap_counter"):
        accumulator_energy(samples, 0.5, 2.5)


# -- unwrap ---------------------------------------------------------------------------------------------------

def test_unwrap_without_and_with_a_wrap():
    assert unwrap_counter(100, 150, 1000) == 50
    assert unwrap_counter(150, 150, 1000) == 0
    assert unwrap_counter(900, 100, 1000) == 200
    assert unwrap_counter(1000, 0, 1000) == 0


@pytest.mark.parametrize("prev,raw,rng,msg", [
    (100, 1001, 1000, r"raw=1001 is outside 0\.\.1000"),
    (-1, 5, 1000, r"previous_raw=-1 is outside 0\.\.1000"),
    (1, 5, 0, r"range_raw must be > 0, got 0"),
])
def test_unwrap_refuses_values_outside_the_range(prev, raw, rng, msg):
    with pytest.raises(ValueError, match=msg):
        unwrap_counter(prev, raw, rng)


# -- coverage and garbage -------------------------------------------------------------------------------------

def test_window_starting_before_the_first_sample_is_not_covered():
    samples = power((1.0, 2.0), (2.0, 2.0))
    with pytest.raises(EnergyWindowError, match=r"0\.500000\.\.1\.500000 s is not covered: no sample at or "
                                                 r"before its start \(first sample at t=1\.000000 s\)"):
        integrate_power(samples, 0.5, 1.5)


def test_window_ending_after_the_last_sample_is_not_covered():
    samples = counter((1.0, 0.0), (2.0, 1.0))
    with pytest.raises(EnergyWindowError, match=r"1\.500000\.\.2\.500000 s is not covered: no sample at or "
                                                 r"after its end \(last sample at t=2\.000000 s\)"):
        accumulator_energy(samples, 1.5, 2.5)


@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -0.1])
def test_garbage_power_inside_the_window_names_the_sample(bad):
    samples = power((0.0, 1.0), (1.0, bad), (2.0, 1.0))
    with pytest.raises(EnergyWindowError, match=rf"sample at t=1\.000000 s has power_w={bad!r}, which the "
                                                 r"energy window 0\.500000\.\.1\.500000 s needs"):
        integrate_power(samples, 0.5, 1.5)


def test_garbage_outside_the_window_does_not_matter():
    samples = power((0.0, None), (1.0, 1.0), (2.0, 1.0), (3.0, math.nan))
    assert integrate_power(samples, 1.0, 2.0) == pytest.approx(1.0, rel=1e-12)


def test_missing_counter_inside_the_window_names_the_sample():
    samples = counter((0.0, 1.0), (1.0, None), (2.0, 3.0))
    with pytest.raises(EnergyWindowError, match=r"t=1\.000000 s has energy_j=None"):
        accumulator_energy(samples, 0.0, 2.0)


def test_unsorted_samples_are_refused():
    samples = power((0.0, 1.0), (1.0, 1.0), (0.5, 1.0), (2.0, 1.0))
    with pytest.raises(EnergyWindowError, match=r"not in time order: sample 2 at t=0\.500000 s does not come "
                                                 r"after sample 1 at t=1\.000000 s"):
        integrate_power(samples, 0.0, 2.0)


def test_nan_sample_time_and_bad_window_bounds_are_refused():
    with pytest.raises(EnergyWindowError, match=r"sample 1 has time t_s=nan"):
        integrate_power(power((0.0, 1.0), (math.nan, 1.0), (2.0, 1.0)), 0.0, 2.0)
    samples = power((0.0, 1.0), (2.0, 1.0))
    with pytest.raises(EnergyWindowError, match=r"1\.000000\.\.1\.000000 s is empty or reversed"):
        integrate_power(samples, 1.0, 1.0)
    with pytest.raises(EnergyWindowError, match=r"bounds must be finite seconds, got t0_s=nan"):
        window_energy(samples, math.nan, 1.0)
    with pytest.raises(EnergyWindowError, match="no power samples"):
        window_energy([], 0.0, 1.0)


def test_window_error_is_a_value_error_and_a_sensor_error():
    assert issubclass(EnergyWindowError, ValueError) and issubclass(EnergyWindowError, SensorError)


# -- window_energy --------------------------------------------------------------------------------------------

def test_window_energy_uses_the_counter_when_every_sample_has_one():
    # power readings say 1 W, the counter says 2 W: the counter wins
    samples = [Sample(0.0, 1.0, 0.0), Sample(1.0, 1.0, 2.0), Sample(2.0, 1.0, 4.0), Sample(3.0, 1.0, 6.0)]
    w = window_energy(samples, 0.5, 2.5, idle_power_w=0.5)
    assert w == WindowEnergy(0.5, 2.5, 2.0, 4.0, 3.0, 0.5, 2.0, 2, "accumulator")
    assert w.to_dict() == {"t0_s": 0.5, "t1_s": 2.5, "duration_s": 2.0, "total_energy_mj": 4000.0,
                           "active_energy_mj": 3000.0, "idle_power_w": 0.5, "mean_power_w": 2.0,
                           "n_samples": 2, "method": "accumulator"}


def test_window_energy_falls_back_to_the_trapezoid_when_a_counter_is_missing():
    samples = [Sample(0.0, 1.0, 0.0), Sample(1.0, 1.0, None), Sample(2.0, 1.0, 4.0)]
    w = window_energy(samples, 0.0, 2.0)
    assert (w.method, w.total_j, w.active_j, w.n_samples) == ("trapezoid", 2.0, None, 3)
    assert w.to_dict()["active_energy_mj"] is None


@pytest.mark.parametrize("bad", [math.nan, -0.5, "1.5"])
def test_window_energy_refuses_a_garbage_baseline(bad):
    with pytest.raises(ValueError, match=rf"idle_power_w must be a finite number >= 0, got {bad!r}"):
        window_energy(power((0.0, 1.0), (1.0, 1.0)), 0.0, 1.0, idle_power_w=bad)


def test_window_energy_reads_the_meters_power_readings():
    readings = [PowerReading(t, (RailSample("vdd_arm", 1.0, 10.0 + t), RailSample("vdd_soc", 0.5, None)))
                for t in (0.0, 1.0, 2.0)]
    w = window_energy(readings, 0.0, 2.0)  # one rail has no counter: trapezoid over the summed power
    assert (w.method, w.total_j) == ("trapezoid", 3.0)


# -- idle baseline, per inference, summary ---------------------------------------------------------------------

def test_idle_baseline_is_time_weighted_not_the_plain_mean_of_unevenly_spaced_readings():
    # 1 W sampled densely for 1 s, a ramp to 3 W over 1 s, 3 W for 1 s sampled sparsely: 1 + 2 + 3 J in 3 s
    samples = power((0.0, 1.0), (0.25, 1.0), (0.5, 1.0), (0.75, 1.0), (1.0, 1.0), (2.0, 3.0), (3.0, 3.0))
    b = idle_baseline(samples, 0.0, 3.0)
    readings = [1.0] * 5 + [3.0] * 2
    assert b.power_w == pytest.approx(2.0, rel=1e-12)
    assert statistics.fmean(readings) == pytest.approx(11 / 7)  # what a plain mean would have said
    assert b.stdev_w == pytest.approx(statistics.stdev(readings))
    assert (b.n, b.duration_s) == (7, 3.0)


def test_idle_baseline_has_no_spread_from_a_counter_alone():
    b = idle_baseline(counter((0.0, 0.0), (1.0, 1.5), (2.0, 3.0)), 0.0, 2.0)
    assert (b.power_w, b.stdev_w, b.n) == (1.5, None, 3)


def test_per_inference_divides_total_and_active():
    w = window_energy(power((0.0, 1.5), (2.0, 1.5)), 0.0, 2.0, idle_power_w=0.5)
    e = per_inference(w, 4)
    assert (e.total_mj, e.active_mj, e.n, e.method) == (750.0, 500.0, 4, "trapezoid")
    assert e.to_dict() == {"total_energy_mj": 750.0, "active_energy_mj": 500.0, "inferences": 4,
                           "method": "trapezoid"}
    assert per_inference(window_energy(power((0.0, 1.0), (1.0, 1.0)), 0.0, 1.0), 2).active_mj is None


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_per_inference_refuses_a_count_that_is_not_positive(bad):
    w = window_energy(power((0.0, 1.0), (1.0, 1.0)), 0.0, 1.0)
    with pytest.raises(ValueError, match=rf"inferences must be a positive count of runs inside the window "
                                         rf"0\.000000\.\.1\.000000 s, got {bad!r}"):
        per_inference(w, bad)


def test_summarize_energy_ignores_non_finite_values():
    s = summarize_energy([3.0, 1.0, math.nan, None, math.inf, 2.0, -math.inf])
    assert (s.n, s.mean_mj, s.stdev_mj, s.min_mj, s.max_mj) == (3, 2.0, 1.0, 1.0, 3.0)
    assert summarize_energy([-0.5]).to_dict() == {"n": 1, "mean_mj": -0.5, "stdev_mj": 0.0, "min_mj": -0.5,
                                                  "max_mj": -0.5}
    with pytest.raises(ValueError, match="no finite energy values to summarize"):
        summarize_energy([math.nan, None])
