"""SysfsRoot: every way a sysfs attribute can be unreadable or garbage gives a SensorError naming the file."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from edgeoffload.errors import SensorError
from edgeoffload.sensors.sysfs import (
    SysfsRoot, checked_energy_j, checked_power_w, found_text, natural_key, unique_chip_ids,
)

SRC = Path(__file__).resolve().parents[3] / "daemon" / "src" / "edgeoffload"


def attr(root: Path, rel: str, data: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def error_of(call) -> str:
    with pytest.raises(SensorError) as e:
        call()
    return str(e.value)


def test_reads_text_integers_and_numbers(tmp_path):
    attr(tmp_path, "a/name", "ina3221\n")
    attr(tmp_path, "a/power1_input", "6260000\n")
    attr(tmp_path, "a/curr1_input", "-12\n")
    attr(tmp_path, "a/in_voltage_scale", "0.48828125\n")
    attr(tmp_path, "a/in_current2_offset", "-100\n")
    root = SysfsRoot(tmp_path)
    assert root.read_text("a/name") == "ina3221"
    assert (root.read_int("a/power1_input"), root.read_int("a/curr1_input")) == (6260000, -12)
    assert root.read_float("a/in_voltage_scale") == 0.48828125
    assert root.read_float("a/in_current2_offset") == -100.0
    assert root.exists("a/name") and not root.exists("a/nothing")
    assert repr(root) == f"SysfsRoot({str(tmp_path)!r})"


@pytest.mark.parametrize("text, method, problem", [
    ("abc\n", "read_int", "not an integer: 'abc'"),
    ("1.5\n", "read_int", "not an integer: '1.5'"),
    ("\n", "read_int", "not an integer: ''"),
    ("1_000\n", "read_int", "not an integer: '1_000'"),
    ("١٢\n".encode(), "read_int", "not text: b'\\xd9\\xa1\\xd9\\xa2\\n'"),
    ("99999999999999999999999\n", "read_int", "integer out of range: '99999999999999999999999'"),
    ("nan\n", "read_float", "not a finite number: 'nan'"),
    ("-Infinity\n", "read_float", "not a finite number: '-Infinity'"),
    ("1e400\n", "read_float", "number out of range: '1e400'"),
    ("0x10\n", "read_float", "not a number: '0x10'"),
    (b"\xff\xfe\n", "read_text", "not text: b'\\xff\\xfe\\n'"),
    ("1" * 5000, "read_text", "longer than 4096 bytes: not a sysfs attribute"),
])
def test_garbage_names_the_file_and_what_is_wrong(tmp_path, text, method, problem):
    path = attr(tmp_path, "class/hwmon/hwmon0/power1_input", text)
    message = error_of(lambda: getattr(SysfsRoot(tmp_path), method)("class/hwmon/hwmon0/power1_input"))
    assert message == f"{path}: {problem}"


def test_a_vanished_file_or_folder_says_so(tmp_path):
    root = SysfsRoot(tmp_path)
    assert error_of(lambda: root.read_int("class/hwmon/hwmon0/power1_input")) == (
        f"{tmp_path}/class/hwmon/hwmon0/power1_input: vanished (the sensor was removed or its driver unloaded)")
    attr(tmp_path, "class/hwmon/hwmon0", "now a file\n")  # a parent that is no folder reads as vanished too
    assert "power1_input: vanished" in error_of(lambda: root.read_int("class/hwmon/hwmon0/power1_input"))


def test_a_folder_where_an_attribute_should_be(tmp_path):
    (tmp_path / "hwmon0" / "power1_input").mkdir(parents=True)
    message = error_of(lambda: SysfsRoot(tmp_path).read_int("hwmon0/power1_input"))
    assert message == f"{tmp_path}/hwmon0/power1_input: is a directory, not a sysfs attribute"


def test_permission_denied_says_how_to_allow_it(tmp_path, run_unprivileged):
    path = attr(tmp_path, "hwmon0/power1_input", "1\n")
    os.chmod(path, 0)
    out = run_unprivileged(
        "from edgeoffload.sensors.sysfs import SysfsRoot\nfrom edgeoffload.errors import SensorError\n"
        f"try:\n    SysfsRoot({str(tmp_path)!r}).read_int('hwmon0/power1_input')\n"
        "except SensorError as e:\n    print(e)\n"
    )
    assert out == (f"{path}: permission denied: run edgeoffloadd as a user that may read it, or grant read "
                   "access with a udev rule or chmod")


def test_glob_lists_relative_paths_in_natural_order(tmp_path):
    for n in (10, 2, 1):
        attr(tmp_path, f"class/hwmon/hwmon{n}/name", "x\n")
    root = SysfsRoot(tmp_path)
    assert root.glob("class/hwmon/hwmon*") == ["class/hwmon/hwmon1", "class/hwmon/hwmon2", "class/hwmon/hwmon10"]
    assert root.glob("class/powercap/*") == []
    assert sorted(["intel-rapl:0:10", "intel-rapl:0:2"], key=natural_key) == ["intel-rapl:0:2", "intel-rapl:0:10"]


def test_chips_with_the_same_name_are_told_apart_by_device(tmp_path):
    for n, device in ((0, "1-0040"), (1, "1-0041"), (2, None)):
        attr(tmp_path, f"class/hwmon/hwmon{n}/name", "ina226\n")
        if device:
            (tmp_path / "devices" / device).mkdir(parents=True)
            os.symlink(f"../../../devices/{device}", tmp_path / f"class/hwmon/hwmon{n}/device")
    attr(tmp_path, "class/hwmon/hwmon3/name", "ina3221\n")
    root = SysfsRoot(tmp_path)
    chips = [("ina226", f"class/hwmon/hwmon{n}") for n in range(3)] + [("ina3221", "class/hwmon/hwmon3")]
    assert unique_chip_ids(root, chips) == ["ina226@1-0040", "ina226@1-0041", "ina226#2", "ina3221"]
    assert root.link_target("class/hwmon/hwmon0/device") == "../../../devices/1-0040"
    assert root.link_target("class/hwmon/hwmon0/name") is None


def test_two_chips_behind_one_device_name_are_numbered(tmp_path):
    for n in (0, 1):
        attr(tmp_path, f"class/hwmon/hwmon{n}/name", "ina226\n")
        os.symlink("../../../devices/1-0040", tmp_path / f"class/hwmon/hwmon{n}/device")
    chips = [("ina226", "class/hwmon/hwmon0"), ("ina226", "class/hwmon/hwmon1")]
    assert unique_chip_ids(SysfsRoot(tmp_path), chips) == ["ina226#0", "ina226#1"]


@pytest.mark.parametrize("power_w, expected", [(0.0, 0.0), (6.26, 6.26), (-0.03, 0.0), (10_000.0, 10_000.0)])
def test_plausible_power_passes(power_w, expected):
    assert checked_power_w(power_w, "f") == expected


@pytest.mark.parametrize("power_w, problem", [
    (-0.2, "f: negative power -0.2 W: is the shunt wired backwards, or the chip misconfigured?"),
    (20_000.0, "f: absurd power 20000 W (more than 10000 W): check the chip's shunt resistor and scale settings"),
    (float("nan"), "f: power is not a finite number (nan)"),
])
def test_implausible_power_is_an_error(power_w, problem):
    assert error_of(lambda: checked_power_w(power_w, "f")) == problem


def test_energy_counters_must_be_finite_and_not_negative():
    assert checked_energy_j(12.5, "e") == 12.5
    assert error_of(lambda: checked_energy_j(-1.0, "e")) == "e: negative energy counter -1 J"
    assert error_of(lambda: checked_energy_j(float("inf"), "e")) == "e: energy is not a finite number (inf)"


def test_found_text_with_nothing_found():
    assert found_text([], "hwmon chips") == "found: no hwmon chips"


def test_the_real_sysfs_root_is_named_only_in_the_config_default():
    pattern = re.compile(r"""["']/sys["'/]""")
    named = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if pattern.search(p.read_text()))
    assert named == ["config/power.py"]
