"""HwmonPower on the INA226 and INA3221 fixture trees: discovery, selection, units, failures and recovery."""

from __future__ import annotations

import os
import shutil

import pytest

from edgeoffload.config.power import HwmonPowerConfig, HwmonRailConfig
from edgeoffload.errors import SensorError
from edgeoffload.sensors.base import LABEL_RAIL, ChannelInfo, RailSample
from edgeoffload.sensors.hwmon import HwmonPower
from edgeoffload.sensors.sysfs import SysfsRoot


def rails(*selection: tuple[str, str | int]) -> HwmonPowerConfig:
    return HwmonPowerConfig(rails=tuple(
        HwmonRailConfig(chip=chip, channel=which) if isinstance(which, int) else HwmonRailConfig(chip=chip, label=which)
        for chip, which in selection
    ))


def powers(reader: HwmonPower) -> dict[str, float | None]:
    return {s.rail: s.power_w for s in reader.read().rails}


def write(path, value) -> None:
    path.write_text(f"{value}\n")


def test_ina226_power_file_in_microwatts(sysfs_tree, clock):
    root = sysfs_tree("ina226")
    reader = HwmonPower(HwmonPowerConfig(), SysfsRoot(root), clock=clock)
    assert reader.label == LABEL_RAIL
    assert reader.channels() == [ChannelInfo(source="hwmon", chip="ina226", rail="ina226/1", unit="µW",
                                             path=str(root / "class/hwmon/hwmon1"))]
    reading = reader.read()
    assert reading.t_s == clock.t_s
    assert reading.rails == (RailSample(rail="ina226/1", power_w=6.26, energy_j=None),)
    assert (reading.power_w, reading.energy_j) == (6.26, None)
    write(root / "class/hwmon/hwmon1/power1_input", 1500000)  # a new reading
    assert powers(reader) == {"ina226/1": 1.5}


def test_power_average_then_voltage_times_current(sysfs_tree):
    root = sysfs_tree("ina226")
    chip = root / "class/hwmon/hwmon1"
    os.rename(chip / "power1_input", chip / "power1_average")
    write(chip / "power1_average", 6000000)
    assert powers(HwmonPower(HwmonPowerConfig(), root)) == {"ina226/1": 6.0}
    (chip / "power1_average").unlink()
    reader = HwmonPower(HwmonPowerConfig(), root)
    assert reader.channels()[0].unit == "mV×mA"
    assert powers(reader) == {"ina226/1": pytest.approx(5.008 * 1.25)}


def test_cumulative_energy_in_microjoules(sysfs_tree):
    root = sysfs_tree("ina226")
    write(root / "class/hwmon/hwmon1/energy1_input", 3600000000)
    reader = HwmonPower(HwmonPowerConfig(), root)
    assert reader.channels()[0].unit == "µW, µJ"
    assert reader.read().rails == (RailSample(rail="ina226/1", power_w=6.26, energy_j=3600.0),)


def test_ina3221_voltage_times_current_with_labels(sysfs_tree):
    root = sysfs_tree("ina3221")
    reader = HwmonPower(HwmonPowerConfig(), root)
    assert [(c.rail, c.unit) for c in reader.channels()] == [
        ("ina3221/VDD_SOC", "mV×mA"), ("ina3221/VDD_ARM", "mV×mA"), ("ina3221/VDD_DRAM", "mV×mA")]
    reading = reader.read()
    assert powers(reader) == {"ina3221/VDD_SOC": 2.0, "ina3221/VDD_ARM": 4.1, "ina3221/VDD_DRAM": pytest.approx(0.495)}
    assert reading.power_w == pytest.approx(6.595)
    write(root / "class/hwmon/hwmon0/curr2_input", 1000)
    assert powers(reader)["ina3221/VDD_ARM"] == 5.0


def test_selection_by_label_and_channel_in_config_order(sysfs_tree):
    root = sysfs_tree("ina3221")
    reader = HwmonPower(rails(("ina3221", "VDD_DRAM"), ("ina3221", 1), ("ina3221", "VDD_SOC")), root)
    assert [c.rail for c in reader.channels()] == ["ina3221/VDD_DRAM", "ina3221/VDD_SOC"]


def test_unlabelled_channels_are_named_by_number(sysfs_tree):
    root = sysfs_tree("ina3221")
    (root / "class/hwmon/hwmon0/in2_label").unlink()
    write(root / "class/hwmon/hwmon0/in3_label", "VDD_SOC")  # two channels with one label stay apart
    reader = HwmonPower(HwmonPowerConfig(), root)
    assert [c.rail for c in reader.channels()] == ["ina3221/VDD_SOC#1", "ina3221/2", "ina3221/VDD_SOC#3"]
    assert [c.rail for c in HwmonPower(rails(("ina3221", 2)), root).channels()] == ["ina3221/2"]


def test_a_selection_that_matches_nothing_lists_what_was_found(sysfs_tree):
    root = sysfs_tree("ina3221")
    with pytest.raises(SensorError) as e:
        HwmonPower(rails(("ina3221", "VDD_SOC"), ("ina3221", "vdd_gpu")), root)
    assert str(e.value) == (
        f"hwmon: power.rails[1] (chip: ina3221, label: vdd_gpu) matches no channel under {root}/class/hwmon; "
        "found: ina3221 (hwmon0): VDD_SOC (channel 1), VDD_ARM (channel 2), VDD_DRAM (channel 3); "
        "soc_thermal (hwmon1): no power channels. Fix power.rails in the config")
    with pytest.raises(SensorError, match=r"power.rails\[0\] \(chip: ina226, channel: 1\) matches no channel"):
        HwmonPower(rails(("ina226", 1)), root)


def test_no_power_channel_at_all(sysfs_tree, tmp_path):
    root = sysfs_tree("ina3221")
    shutil.rmtree(root / "class/hwmon/hwmon0")
    with pytest.raises(SensorError) as e:
        HwmonPower(HwmonPowerConfig(), root)
    assert str(e.value) == (f"hwmon: no channel with power under {root}/class/hwmon; found: soc_thermal (hwmon1): "
                            "no power channels: is the driver (ina2xx, ina3221) loaded?")
    with pytest.raises(SensorError, match="found: no hwmon chips: is the driver"):
        HwmonPower(HwmonPowerConfig(), tmp_path / "empty")


def test_two_chips_with_one_name(sysfs_tree):
    root = sysfs_tree("ina226")
    shutil.copytree(root / "class/hwmon/hwmon1", root / "class/hwmon/hwmon2", symlinks=True)
    (root / "devices/platform/soc/30a30000.i2c/i2c-1/1-0041").mkdir()
    os.unlink(root / "class/hwmon/hwmon2/device")
    os.symlink("../../../devices/platform/soc/30a30000.i2c/i2c-1/1-0041", root / "class/hwmon/hwmon2/device")
    write(root / "class/hwmon/hwmon2/power1_input", 1000000)
    assert powers(HwmonPower(HwmonPowerConfig(), root)) == {"ina226@1-0040/1": 6.26, "ina226@1-0041/1": 1.0}
    assert powers(HwmonPower(rails(("ina226@1-0041", 1)), root)) == {"ina226@1-0041/1": 1.0}
    assert len(HwmonPower(rails(("ina226", 1)), root).channels()) == 2  # the bare name selects both


def test_sysfs_root_comes_from_the_config_by_default(sysfs_tree):
    root = sysfs_tree("ina226")
    assert powers(HwmonPower(HwmonPowerConfig(sysfs=root))) == {"ina226/1": 6.26}


def test_a_vanished_file_fails_the_read_and_the_next_read_recovers(sysfs_tree):
    root = sysfs_tree("ina3221")
    reader = HwmonPower(HwmonPowerConfig(), root)
    curr = root / "class/hwmon/hwmon0/curr2_input"
    curr.unlink()
    with pytest.raises(SensorError) as e:
        reader.read()
    assert str(e.value) == f"{curr}: vanished (the sensor was removed or its driver unloaded)"
    write(curr, 820)
    assert powers(reader)["ina3221/VDD_ARM"] == 4.1


def test_a_chip_that_comes_back_under_another_number_is_found_again(sysfs_tree):
    root = sysfs_tree("ina3221")
    reader = HwmonPower(rails(("ina3221", "VDD_ARM")), root)
    moved = root / "class/hwmon/hwmon7"
    os.rename(root / "class/hwmon/hwmon0", moved)  # driver re-probed: hwmon0 is gone, hwmon7 appears
    with pytest.raises(SensorError, match=r"hwmon0/in2_input: vanished"):
        reader.read()
    assert powers(reader) == {"ina3221/VDD_ARM": 4.1}
    assert reader.channels()[0].path == str(moved)


def test_while_the_chip_is_gone_every_read_says_what_is_missing(sysfs_tree):
    root = sysfs_tree("ina3221")
    reader = HwmonPower(HwmonPowerConfig(), root)
    away = root.parent / "away"
    os.rename(root / "class/hwmon/hwmon0", away)
    with pytest.raises(SensorError, match="vanished"):
        reader.read()
    with pytest.raises(SensorError, match="no channel with power .* soc_thermal"):
        reader.read()
    os.rename(away, root / "class/hwmon/hwmon0")
    assert reader.read().power_w == pytest.approx(6.595)


@pytest.mark.parametrize("file, value, problem", [
    ("power1_input", "abc", "power1_input: not an integer: 'abc'"),
    ("power1_input", "nan", "power1_input: not an integer: 'nan'"),
    ("power1_input", "20000000000", "power1_input: absurd power 20000 W (more than 10000 W)"),
    ("power1_input", "-5000000", "power1_input: negative power -5 W"),
])
def test_garbage_in_a_power_file(sysfs_tree, file, value, problem):
    root = sysfs_tree("ina226")
    reader = HwmonPower(HwmonPowerConfig(), root)
    write(root / "class/hwmon/hwmon1" / file, value)
    with pytest.raises(SensorError) as e:
        reader.read()
    assert str(e.value).startswith(f"{root}/class/hwmon/hwmon1/{problem}")


def test_garbage_in_voltage_times_current_names_both_files(sysfs_tree):
    root = sysfs_tree("ina3221")
    reader = HwmonPower(HwmonPowerConfig(), root)
    write(root / "class/hwmon/hwmon0/curr1_input", -2000)
    with pytest.raises(SensorError) as e:
        reader.read()
    assert str(e.value) == (f"{root}/class/hwmon/hwmon0/in1_input x curr1_input: negative power -10 W: is the "
                            "shunt wired backwards, or the chip misconfigured?")
    write(root / "class/hwmon/hwmon0/curr1_input", -5)  # offset noise on an idle rail: -25 mW reads as 0
    assert powers(reader)["ina3221/VDD_SOC"] == 0.0


def test_an_unreadable_file(sysfs_tree):
    root = sysfs_tree("ina226")
    reader = HwmonPower(HwmonPowerConfig(), root)
    power = root / "class/hwmon/hwmon1/power1_input"
    power.unlink()
    power.mkdir()
    with pytest.raises(SensorError) as e:
        reader.read()
    assert str(e.value) == f"{power}: is a directory, not a sysfs attribute"


def test_a_closed_reader_refuses_to_read(sysfs_tree):
    root = sysfs_tree("ina226")
    reader = HwmonPower(HwmonPowerConfig(), root)
    reader.close()
    with pytest.raises(SensorError) as e:
        reader.read()
    assert str(e.value) == f"hwmon reader on {root} is closed: create a new one"
