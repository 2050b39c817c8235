"""IioPower on the PAC1934 fixture tree: (raw + offset) x scale, unit overrides, accumulators, failures."""

from __future__ import annotations

import os

import pytest

from edgeoffload.config.power import IioDeviceConfig, IioPowerConfig, IioUnitsConfig
from edgeoffload.errors import SensorError
from edgeoffload.sensors.base import ChannelInfo, RailSample
from edgeoffload.sensors.iio import IioPower

DEVICE = "devices/platform/soc/30a50000.i2c/i2c-3/3-0010/iio:device0"


def device(**kwargs) -> IioPowerConfig:
    return IioPowerConfig(devices=(IioDeviceConfig(name="pac1934", **kwargs),))


def write(path, value) -> None:
    path.write_text(f"{value}\n")


def samples(reader: IioPower) -> dict[str, tuple[float | None, float | None]]:
    return {s.rail: (s.power_w, s.energy_j) for s in reader.read().rails}


def test_every_power_channel_in_the_abi_units(sysfs_tree, clock):
    root = sysfs_tree("pac1934")
    reader = IioPower(IioPowerConfig(), root, clock=clock)
    path = str(root / "bus/iio/devices/iio:device0")
    assert reader.channels() == [
        ChannelInfo(source="iio", chip="pac1934", rail=f"pac1934/{label}", unit="mW, J", path=path)
        for label in ("VDD_ARM", "VDD_SOC", "VDD_DRAM", "4")
    ]
    reading = reader.read()
    assert reading.t_s == clock.t_s
    assert reading.rails == (
        RailSample("pac1934/VDD_ARM", 2.5, 12345.678), RailSample("pac1934/VDD_SOC", 1.2, 2000.0),
        RailSample("pac1934/VDD_DRAM", 0.3, 500.0), RailSample("pac1934/4", 0.2, None),  # in_energy4_en is 0
    )
    assert (reading.power_w, reading.energy_j) == (pytest.approx(4.2), None)


def test_channels_labels_and_unit_overrides_from_the_config(sysfs_tree):
    root = sysfs_tree("pac1934")
    config = device(channels=(2, 1), labels={1: "ARM"}, units=IioUnitsConfig(power="uW", energy="mJ"))
    reader = IioPower(config, root)
    assert [(c.rail, c.unit) for c in reader.channels()] == [("pac1934/VDD_SOC", "µW, mJ"), ("pac1934/ARM", "µW, mJ")]
    assert samples(reader) == {"pac1934/VDD_SOC": (pytest.approx(0.0012), 2.0),
                               "pac1934/ARM": (pytest.approx(0.0025), pytest.approx(12.345678))}
    assert reader.read().energy_j == pytest.approx(14.345678)


def test_voltage_times_current_with_offset_and_shared_scale(sysfs_tree):
    root = sysfs_tree("pac1934")
    (root / DEVICE / "in_power2_raw").unlink()
    reader = IioPower(device(channels=(2,)), root)
    assert reader.channels()[0].unit == "mV×mA, J"
    assert samples(reader) == {"pac1934/VDD_SOC": (pytest.approx(3.0 * 0.4), 2000.0)}  # (900 - 100) x 0.5 mA
    wrong_units = IioPower(device(channels=(2,), units=IioUnitsConfig(voltage="V", current="A")), root)
    with pytest.raises(SensorError) as e:  # 3000 V x 400 A: the override is wrong, and the reading says so
        wrong_units.read()
    assert str(e.value) == (f"{root}/bus/iio/devices/iio:device0/in_voltage2_raw x in_current2_raw: absurd power "
                            "1.2e+06 W (more than 10000 W): check the chip's shunt resistor and scale settings")
    write(root / DEVICE / "in_current2_offset", "-900")
    assert samples(reader)["pac1934/VDD_SOC"][0] == 0.0


def test_a_channel_scale_wins_over_the_shared_one(sysfs_tree):
    root = sysfs_tree("pac1934")
    (root / DEVICE / "in_power1_raw").unlink()
    write(root / DEVICE / "in_voltage1_scale", "0.25")  # 10240 x 0.25 = 2560 mV, 500 mA
    assert samples(IioPower(device(channels=(1,)), root))["pac1934/VDD_ARM"][0] == pytest.approx(1.28)


def test_the_accumulator_is_used_only_when_enabled(sysfs_tree):
    root = sysfs_tree("pac1934")
    reader = IioPower(device(channels=(1, 4)), root)
    assert [s.energy_j for s in reader.read().rails] == [12345.678, None]
    write(root / DEVICE / "in_energy1_en", 0)
    write(root / DEVICE / "in_energy4_en", 1)
    write(root / DEVICE / "in_energy4_raw", 7000)
    assert [s.energy_j for s in reader.read().rails] == [None, 7.0]


def test_processed_input_files_are_used_as_they_are(sysfs_tree):
    root = sysfs_tree("pac1934")
    other = root / "bus/iio/devices/iio:device5"
    other.mkdir()
    write(other / "name", "ina2xx-adc")
    write(other / "in_voltage0_input", 5000)
    write(other / "in_current0_input", 100.5)
    config = IioPowerConfig(devices=(IioDeviceConfig(name="ina2xx-adc"),))
    assert samples(IioPower(config, root)) == {"ina2xx-adc/0": (pytest.approx(0.5025), None)}


def test_two_devices_with_one_name_are_told_apart(sysfs_tree):
    root = sysfs_tree("pac1934")
    second = root / "devices/platform/soc/30a50000.i2c/i2c-3/3-0011/iio:device2"
    second.mkdir(parents=True)
    for name in ("name", "in_voltage1_raw", "in_voltage_scale", "in_current1_raw", "in_current1_scale"):
        write(second / name, (root / DEVICE / name).read_text().strip())
    os.symlink("../../../devices/platform/soc/30a50000.i2c/i2c-3/3-0011/iio:device2",
               root / "bus/iio/devices/iio:device2")
    config = IioPowerConfig(devices=(IioDeviceConfig(name="pac1934@3-0011"), IioDeviceConfig(name="pac1934@3-0010",
                                                                                           channels=(1,))))
    assert samples(IioPower(config, root)) == {"pac1934@3-0011/1": (pytest.approx(2.5), None),
                                               "pac1934@3-0010/VDD_ARM": (2.5, 12345.678)}


def test_a_device_that_matches_nothing_lists_what_was_found(sysfs_tree):
    root = sysfs_tree("pac1934")
    with pytest.raises(SensorError) as e:
        IioPower(IioPowerConfig(devices=(IioDeviceConfig(name="pac1934"), IioDeviceConfig(name="pac1954"))), root)
    assert str(e.value) == (
        f"iio: power.devices[1] (name: pac1954) matches no device under {root}/bus/iio/devices; found: pac1934 "
        "(iio:device0): VDD_ARM (channel 1), VDD_SOC (channel 2), VDD_DRAM (channel 3), channel 4; ads1015 "
        "(iio:device1): no power channels. Fix power.devices in the config")


def test_a_channel_that_is_not_there(sysfs_tree):
    root = sysfs_tree("pac1934")
    with pytest.raises(SensorError) as e:
        IioPower(device(channels=(1, 5)), root)
    assert str(e.value).startswith("iio: power.devices[0].channels lists channel 5, but pac1934 has no channel 5 "
                                   f"that yields power (under {root}/bus/iio/devices; found: pac1934 (iio:device0)")
    with pytest.raises(SensorError, match=r"channel 0, but ads1015 has no channel 0 that yields power"):
        IioPower(IioPowerConfig(devices=(IioDeviceConfig(name="ads1015", channels=(0,)),)), root)


def test_no_power_channel_anywhere(sysfs_tree):
    root = sysfs_tree("pac1934")
    os.unlink(root / "bus/iio/devices/iio:device0")
    with pytest.raises(SensorError) as e:
        IioPower(IioPowerConfig(), root)
    assert str(e.value) == (f"iio: no channel with power under {root}/bus/iio/devices; found: ads1015 (iio:device1): "
                            "no power channels: is the driver (pac1934 ...) loaded?")


def test_a_device_that_vanishes_and_returns(sysfs_tree):
    root = sysfs_tree("pac1934")
    reader = IioPower(device(channels=(1,)), root)
    link = root / "bus/iio/devices/iio:device0"
    target = os.readlink(link)
    os.unlink(link)
    with pytest.raises(SensorError) as e:
        reader.read()
    assert str(e.value) == f"{link}/in_power1_raw: vanished (the sensor was removed or its driver unloaded)"
    with pytest.raises(SensorError, match=r"power.devices\[0\] \(name: pac1934\) matches no device"):
        reader.read()
    os.symlink(target, root / "bus/iio/devices/iio:device3")  # re-probed under another number
    assert samples(reader) == {"pac1934/VDD_ARM": (2.5, 12345.678)}


@pytest.mark.parametrize("file, value, problem", [
    ("in_power_scale", "nan", "in_power_scale: not a finite number: 'nan'"),
    ("in_power_scale", "fast", "in_power_scale: not a number: 'fast'"),
    ("in_power1_raw", "12.5", "in_power1_raw: not an integer: '12.5'"),
    ("in_power1_raw", "600000000", "in_power1_raw: absurd power 12000 W (more than 10000 W)"),
    ("in_energy1_raw", "-5", "in_energy1_raw: negative energy counter -0.005 J"),
    ("in_energy1_en", "yes", "in_energy1_en: not an integer: 'yes'"),
])
def test_garbage_names_the_file(sysfs_tree, file, value, problem):
    root = sysfs_tree("pac1934")
    reader = IioPower(device(channels=(1,)), root)
    write(root / DEVICE / file, value)
    with pytest.raises(SensorError) as e:
        reader.read()
    assert str(e.value).startswith(f"{root}/bus/iio/devices/iio:device0/{problem}")
