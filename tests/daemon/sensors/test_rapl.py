"""RaplPower on the RAPL fixture tree: zones, unwrapping, power from energy differences, failures."""

from __future__ import annotations

import os
import shutil

import pytest

from edgeoffload.config.power import RaplPowerConfig
from edgeoffload.errors import SensorError
from edgeoffload.sensors.base import ChannelInfo, RailSample
from edgeoffload.sensors.rapl import RaplPower

MAX_UJ = 262143328850
PACKAGE = "class/powercap/intel-rapl:0"


def zones(*names: str) -> RaplPowerConfig:
    return RaplPowerConfig(zones=names)


def write(path, value) -> None:
    path.write_text(f"{value}\n")


def test_default_is_the_packages_first_read_has_no_power(sysfs_tree, clock):
    root = sysfs_tree("rapl")
    reader = RaplPower(RaplPowerConfig(), root, clock=clock)
    assert reader.channels() == [ChannelInfo(source="rapl", chip="package-0", rail="package-0", unit="µJ",
                                             path=str(root / PACKAGE))]
    reading = reader.read()
    assert reading.rails == (RailSample("package-0", power_w=None, energy_j=262143.0),)
    assert (reading.t_s, reading.power_w, reading.energy_j) == (clock.t_s, None, 262143.0)


def test_power_is_the_energy_since_the_previous_read(sysfs_tree, clock):
    root = sysfs_tree("rapl")
    reader = RaplPower(RaplPowerConfig(), root, clock=clock)
    reader.read()
    write(root / PACKAGE / "energy_uj", 262143100000)
    clock.advance(0.5)
    assert reader.read().rails == (RailSample("package-0", power_w=pytest.approx(0.2), energy_j=262143.1),)
    clock.advance(0.0)  # no time passed: no power figure rather than a division by zero
    assert reader.read().rails[0].power_w is None


def test_the_counter_is_unwrapped(sysfs_tree, clock):
    root = sysfs_tree("rapl")
    energy = root / PACKAGE / "energy_uj"
    reader = RaplPower(RaplPowerConfig(), root, clock=clock)
    reader.read()
    write(energy, 1000000)  # wrapped at max_energy_range_uj
    clock.advance(1.0)
    sample = reader.read().rails[0]
    assert sample.energy_j == pytest.approx((MAX_UJ + 1000000) / 1e6) == pytest.approx(262144.32885)
    assert sample.power_w == pytest.approx(1.32885)
    totals = []
    for raw in (MAX_UJ - 10, 5, 6, MAX_UJ, 0):  # two more wraps; the counter only grows
        write(energy, raw)
        clock.advance(3600.0)  # an hour between reads: about 73 W
        totals.append(reader.read().energy_j)
    assert totals == sorted(totals)
    assert totals[-1] == pytest.approx((3 * MAX_UJ + 0) / 1e6)


def test_zones_by_name_rail_or_id(sysfs_tree):
    root = sysfs_tree("rapl")
    reader = RaplPower(zones("core", "intel-rapl:0:1"), root)
    assert [(c.chip, c.rail, c.path) for c in reader.channels()] == [
        ("core", "package-0/core", str(root / "class/powercap/intel-rapl:0:0")),
        ("uncore", "package-0/uncore", str(root / "class/powercap/intel-rapl:0:1")),
    ]
    assert reader.read().energy_j == pytest.approx(1050.0)
    assert [c.rail for c in RaplPower(zones("package-0/uncore"), root).channels()] == ["package-0/uncore"]
    assert RaplPower(zones("psys"), root).read().energy_j == 100000.0


def test_sub_zones_found_only_inside_their_package(sysfs_tree):
    root = sysfs_tree("rapl")
    for link in ("intel-rapl:0:0", "intel-rapl:0:1"):
        os.unlink(root / "class/powercap" / link)
    reader = RaplPower(zones("core"), root)
    assert reader.channels()[0].path == str(root / PACKAGE / "intel-rapl:0:0")
    assert reader.read().energy_j == 1000.0


@pytest.mark.parametrize("names, message", [
    (("package-0", "core"), "rapl: power.zones selects both package-0 and package-0/core, which is part of it: "
                            "their sum would count its energy twice; list only one of them"),
    (("psys", "package-0"), "rapl: power.zones selects psys with package-0: psys already holds the packages' "
                            "energy, so their sum would count it twice; list psys alone or leave it out"),
])
def test_zones_that_hold_each_other_are_refused(sysfs_tree, names, message):
    with pytest.raises(SensorError) as e:
        RaplPower(zones(*names), sysfs_tree("rapl"))
    assert str(e.value) == message


def test_a_zone_that_matches_nothing_lists_what_was_found(sysfs_tree, tmp_path):
    root = sysfs_tree("rapl")
    with pytest.raises(SensorError) as e:
        RaplPower(zones("package-0", "dram"), root)
    assert str(e.value) == (
        f"rapl: power.zones[1] (dram) matches no zone under {root}/class/powercap; found: package-0 (intel-rapl:0), "
        "package-0/core (intel-rapl:0:0), package-0/uncore (intel-rapl:0:1), psys (intel-rapl:1). "
        "Fix power.zones in the config")
    with pytest.raises(SensorError) as e:
        RaplPower(RaplPowerConfig(), tmp_path / "no-rapl")
    assert str(e.value) == (
        f"rapl: no package zone under {tmp_path}/no-rapl/class/powercap; found: no RAPL zones: is the "
        "intel_rapl_msr driver loaded (Intel, and AMD since Linux 5.8)? Name zones in power.zones to use others")


def test_a_root_only_counter_says_how_to_allow_it(sysfs_tree, run_unprivileged):
    root = sysfs_tree("rapl")
    os.chmod(root / PACKAGE / "energy_uj", 0o000)
    out = run_unprivileged(
        "from edgeoffload.config.power import RaplPowerConfig\nfrom edgeoffload.errors import SensorError\n"
        "from edgeoffload.sensors.rapl import RaplPower\n"
        f"try:\n    RaplPower(RaplPowerConfig(), {str(root)!r})\n"
        "except SensorError as e:\n    print(e)\n"
    )
    assert out == (
        f"{root}/{PACKAGE}/energy_uj: permission denied: RAPL counters are often readable by root only (mode "
        "0400): run edgeoffloadd as root, or make energy_uj readable at boot with a udev rule (ACTION==\"add\", "
        "SUBSYSTEM==\"powercap\", RUN+=\"/bin/chmod a+r /sys%p/energy_uj\") or `chmod a+r` on the file")


@pytest.mark.parametrize("file, value, problem", [
    ("energy_uj", "lots", "energy_uj: not an integer: 'lots'"),
    ("energy_uj", str(MAX_UJ + 1), f"energy_uj: {MAX_UJ + 1} is outside 0 to max_energy_range_uj ({MAX_UJ})"),
    ("energy_uj", "-1", f"energy_uj: -1 is outside 0 to max_energy_range_uj ({MAX_UJ})"),
])
def test_garbage_names_the_file(sysfs_tree, file, value, problem):
    root = sysfs_tree("rapl")
    reader = RaplPower(RaplPowerConfig(), root)
    write(root / PACKAGE / file, value)
    with pytest.raises(SensorError) as e:
        reader.read()
    assert str(e.value) == f"{root}/{PACKAGE}/{problem}"


def test_a_bad_range_is_refused_at_discovery(sysfs_tree):
    root = sysfs_tree("rapl")
    write(root / PACKAGE / "max_energy_range_uj", 0)
    with pytest.raises(SensorError) as e:
        RaplPower(RaplPowerConfig(), root)
    assert str(e.value) == f"{root}/{PACKAGE}/max_energy_range_uj: must be positive, got 0"


def test_a_zone_that_vanishes_and_returns_keeps_counting(sysfs_tree, clock):
    root = sysfs_tree("rapl")
    reader = RaplPower(RaplPowerConfig(), root, clock=clock)
    reader.read()
    away = root.parent / "away"
    shutil.move(root / PACKAGE, away)
    clock.advance(1.0)
    with pytest.raises(SensorError) as e:
        reader.read()
    assert str(e.value) == f"{root}/{PACKAGE}/energy_uj: vanished (the sensor was removed or its driver unloaded)"
    with pytest.raises(SensorError, match="no package zone"):
        reader.read()
    shutil.move(away, root / PACKAGE)
    write(root / PACKAGE / "energy_uj", 2000000)  # it wrapped while it was away
    clock.advance(1.0)
    sample = reader.read().rails[0]
    assert sample.energy_j == pytest.approx((MAX_UJ + 2000000) / 1e6)
    assert sample.power_w == pytest.approx(2.32885 / 2.0)  # over the 2 s since the last good read
