"""The `power:` section for measured sources (hwmon, iio, rapl, joulescope): defaults, valid files, and each
problem with its message and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeoffload.config import POWER_TYPES, load_config
from edgeoffload.config.power import (
    HwmonPowerConfig, HwmonRailConfig, IioDeviceConfig, IioPowerConfig, IioUnitsConfig, JoulescopePowerConfig,
    ModelledPowerConfig, RaplPowerConfig,
)
from edgeoffload.errors import ConfigError

MINIMAL = "version: 1\ndevice_id: dev-1\nmodels:\n  - name: tiny\n    file: tiny.tflite\n"  # power: is line 6


def load_power(tmp_path: Path, power: str):
    path = tmp_path / "d.yaml"
    path.write_text(MINIMAL + power)
    return load_config(path).power


def problems(tmp_path: Path, power: str) -> list[str]:
    path = tmp_path / "d.yaml"
    path.write_text(MINIMAL + power)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert all(str(p).startswith(f"{path}:") for p in e.value.problems)
    return [str(p)[len(str(tmp_path)) + 1:] for p in e.value.problems]


def test_every_type_has_a_row():
    assert POWER_TYPES == {"modelled": ModelledPowerConfig, "hwmon": HwmonPowerConfig, "iio": IioPowerConfig,
                           "rapl": RaplPowerConfig, "joulescope": JoulescopePowerConfig}


@pytest.mark.parametrize("kind, cls", [("hwmon", HwmonPowerConfig), ("iio", IioPowerConfig),
                                       ("rapl", RaplPowerConfig)])
def test_sysfs_types_default_to_the_real_sysfs_at_20_hz(tmp_path, kind, cls):
    config = load_power(tmp_path, f"power: {{type: {kind}}}\n")
    assert config == cls()
    assert (config.type, config.sysfs, config.sample_hz) == (kind, Path("/sys"), 50.0)


def test_hwmon_rails(tmp_path):
    config = load_power(tmp_path, (
        "power:\n  type: hwmon\n  sysfs: fixture/sys\n  sample_hz: 50\n  rails:\n"
        "    - {chip: ina3221, label: VDD_SOC}\n    - {chip: ina226, channel: 1}\n"))
    assert config == HwmonPowerConfig(sysfs=tmp_path / "fixture/sys", sample_hz=50.0, rails=(
        HwmonRailConfig(chip="ina3221", label="VDD_SOC"), HwmonRailConfig(chip="ina226", channel=1)))
    assert isinstance(config.sample_hz, float)


def test_iio_devices_with_labels_and_units(tmp_path):
    config = load_power(tmp_path, (
        "power:\n  type: iio\n  devices:\n"
        "    - name: pac1934\n      channels: [1, 2]\n      labels: {'1': VDD_ARM}\n"
        "      units: {power: uW, energy: mJ}\n"
        "    - name: ina2xx-adc\n"))
    assert config.devices == (
        IioDeviceConfig(name="pac1934", channels=(1, 2), labels={1: "VDD_ARM"},
                        units=IioUnitsConfig(voltage="mV", current="mA", power="uW", energy="mJ")),
        IioDeviceConfig(name="ina2xx-adc", channels=None, labels={}, units=IioUnitsConfig()),
    )
    assert IioUnitsConfig() == IioUnitsConfig(voltage="mV", current="mA", power="mW", energy="J")  # the IIO ABI


def test_rapl_zones_and_joulescope(tmp_path):
    assert load_power(tmp_path, "power: {type: rapl, zones: [package-0, psys]}\n").zones == ("package-0", "psys")
    js = load_power(tmp_path, "power: {type: joulescope}\n")
    assert js == JoulescopePowerConfig(topic=None, stale_after_s=2.0)
    assert js.topic_for("dev-1") == "edgeoffload/v1/dev-1/power/joulescope"
    js = load_power(tmp_path, "power: {type: joulescope, topic: lab/js220/stats, stale_after_s: 0.5}\n")
    assert (js.topic_for("dev-1"), js.stale_after_s) == ("lab/js220/stats", 0.5)


@pytest.mark.parametrize("power, expected", [
    ("power: {type: ina226}\n",
     ["d.yaml:6: power.type: must be one of: modelled, hwmon, iio, rapl, joulescope; got string 'ina226'"]),
    ("power: {type: hwmon, sample_hz: 0}\n",
     ["d.yaml:6: power.sample_hz: must be greater than 0 and at most 1000, got 0"]),
    ("power: {type: rapl, sample_hz: 1001}\n",
     ["d.yaml:6: power.sample_hz: must be greater than 0 and at most 1000, got 1001"]),
    ("power: {type: iio, sample_hz: .nan}\n", ["d.yaml:6: power.sample_hz: must be a finite number, got nan"]),
    ("power: {type: hwmon, sysfs: ''}\n", ["d.yaml:6: power.sysfs: must not be empty"]),
    ("power: {type: rapl, rails: []}\n",
     ["d.yaml:6: power.rails: unknown key; valid keys here: type, sysfs, sample_hz, zones"]),
    ("power: {type: hwmon, idle_high_w: 2}\n",
     ["d.yaml:6: power.idle_high_w: unknown key; valid keys here: type, sysfs, sample_hz, rails"]),
    ("power:\n  type: hwmon\n  rails:\n    - {chip: ina3221}\n",
     ["d.yaml:9: power.rails[0].label: give label (the channel's name, e.g. VDD_SOC) or channel (its number)"]),
    ("power:\n  type: hwmon\n  rails:\n    - {chip: ina3221, label: VDD_SOC, channel: 1}\n",
     ["d.yaml:9: power.rails[0].channel: give either label or channel, not both"]),
    ("power:\n  type: hwmon\n  rails:\n    - chip: ina3221\n      lable: VDD_SOC\n",
     ["d.yaml:9: power.rails[0].label: give label (the channel's name, e.g. VDD_SOC) or channel (its number)",
      "d.yaml:10: power.rails[0].lable: unknown key; did you mean 'label'?"]),
    ("power:\n  type: hwmon\n  rails:\n    - {chip: ina226, channel: 0}\n",
     ["d.yaml:9: power.rails[0].channel: must be between 1 and 1000, got 0"]),
    ("power:\n  type: hwmon\n  rails:\n    - {chip: a, channel: 1}\n    - {chip: a, channel: 1}\n",
     ["d.yaml:10: power.rails[1]: the same channel as rails[0]: list each channel once"]),
    ("power: {type: hwmon, rails: []}\n", ["d.yaml:6: power.rails: must list at least 1 item"]),
    ("power:\n  type: iio\n  devices:\n    - {name: pac1934, units: {power: kW}}\n",
     ["d.yaml:9: power.devices[0].units.power: must be one of: uW, mW, W; got string 'kW'"]),
    ("power:\n  type: iio\n  devices:\n    - {name: pac1934, units: {energy: Wh, charge: C}}\n",
     ["d.yaml:9: power.devices[0].units.charge: unknown key; valid keys here: voltage, current, power, energy",
      "d.yaml:9: power.devices[0].units.energy: must be one of: uJ, mJ, J; got string 'Wh'"]),
    ("power:\n  type: iio\n  devices:\n    - name: pac1934\n      labels:\n        1: VDD_ARM\n",
     ["d.yaml:11: power.devices[0].labels: key '1' is not a string: quote it ('1':)"]),
    ("power:\n  type: iio\n  devices:\n    - name: pac1934\n      labels: {arm: VDD_ARM, '01': X}\n",
     ["d.yaml:10: power.devices[0].labels.arm: expected a channel number (0 to 1000) as the key, got 'arm'",
      "d.yaml:10: power.devices[0].labels.01: expected a channel number (0 to 1000) as the key, got '01'"]),
    ("power:\n  type: iio\n  devices:\n    - name: pac1934\n      channels: [1, 2]\n      labels: {'3': X}\n",
     ["d.yaml:11: power.devices[0].labels.3: channel 3 is not in channels (1, 2)"]),
    ("power:\n  type: iio\n  devices:\n    - name: pac1934\n      channels: [1, 1]\n",
     ["d.yaml:10: power.devices[0].channels[1]: 1 is listed twice (first as power.devices[0].channels[0])"]),
    ("power:\n  type: iio\n  devices:\n    - {name: pac1934}\n    - {name: pac1934, channels: [2]}\n",
     ["d.yaml:10: power.devices[1].name: 'pac1934' is listed twice (first as devices[0])"]),
    ("power:\n  type: iio\n  devices:\n    - {channels: [1]}\n",
     ["d.yaml:9: power.devices[0].name: required key is missing"]),
    ("power: {type: rapl, zones: [core, core]}\n",
     ["d.yaml:6: power.zones[1]: 'core' is listed twice (first as power.zones[0])"]),
    ("power: {type: rapl, zones: package-0}\n", ["d.yaml:6: power.zones: expected a list, got string 'package-0'"]),
    ("power: {type: joulescope, topic: 'edgeoffload/+/power'}\n",
     ["d.yaml:6: power.topic: invalid value 'edgeoffload/+/power': an MQTT topic name, without the wildcards + and #"]),
    ("power: {type: joulescope, stale_after_s: 0}\n", ["d.yaml:6: power.stale_after_s: must be greater than 0, got 0"]),
    ("power: {type: joulescope, sysfs: /sys}\n",
     ["d.yaml:6: power.sysfs: unknown key; valid keys here: type, topic, stale_after_s"]),
])
def test_one_problem(tmp_path, power, expected):
    assert problems(tmp_path, power) == expected


def test_every_problem_in_the_section_at_once(tmp_path):
    power = ("power:\n  type: hwmon\n  sample_hz: -1\n  rails:\n    - {chip: ina3221}\n"
             "    - {chip: '', channel: x}\n")
    assert problems(tmp_path, power) == [
        "d.yaml:8: power.sample_hz: must be greater than 0 and at most 1000, got -1",
        "d.yaml:10: power.rails[0].label: give label (the channel's name, e.g. VDD_SOC) or channel (its number)",
        "d.yaml:11: power.rails[1].chip: must not be empty",
        "d.yaml:11: power.rails[1].channel: expected an integer, got string 'x'",
    ]
