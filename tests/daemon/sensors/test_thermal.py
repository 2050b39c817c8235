"""Thermal zones and cpufreq policies from the i.MX 8M Plus fixture tree (tests/fixtures/thermal/imx8mp),
and from copies of it with files missing or broken."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edgeoffload.sensors.sysfs import SysfsRoot
from edgeoffload.sensors.thermal import read_cpufreq, read_thermal

IMX8MP = Path(__file__).resolve().parents[2] / "fixtures" / "thermal" / "imx8mp"
ZONES = "class/thermal"
POLICY = "devices/system/cpu/cpufreq/policy0"


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of the board's tree that the test may break."""
    root = tmp_path / "sys"
    shutil.copytree(IMX8MP, root, symlinks=True)
    return root


def test_the_boards_two_zones_in_degrees():
    snap = read_thermal(SysfsRoot(IMX8MP))
    assert [(z.zone, z.type, z.temp_c, z.error) for z in snap.zones] == [
        ("thermal_zone0", "cpu-thermal", 48.0, None), ("thermal_zone1", "soc-thermal", 46.0, None)]
    assert snap.temp_c("cpu-thermal") == 48.0 and snap.temp_c("gpu-thermal") is None
    assert snap.to_dict() == {
        "zones": [{"zone": "thermal_zone0", "type": "cpu-thermal", "temp_c": 48.0, "error": None},
                  {"zone": "thermal_zone1", "type": "soc-thermal", "temp_c": 46.0, "error": None}],
        "max_temp_c": 48.0, "error": None}


def test_the_boards_one_policy_for_four_cores_in_mhz():
    snap = read_cpufreq(str(IMX8MP))  # a plain path works too
    assert len(snap.policies) == 1
    policy = snap.for_cpu(2)
    assert policy is snap.policies[0] and snap.for_cpu(4) is None
    assert policy.to_dict() == {
        "policy": "policy0", "cpus": [0, 1, 2, 3], "governor": "schedutil", "cur_freq_mhz": 1600.0,
        "min_freq_mhz": 1200.0, "max_freq_mhz": 1800.0, "hw_max_freq_mhz": 1800.0,
        "available_freqs_mhz": [1200.0, 1600.0, 1800.0], "throttled": True, "error": None}


def test_a_zone_with_garbage_is_reported_with_the_file_and_the_others_still_read(tree):
    (tree / ZONES / "thermal_zone0" / "temp").write_text("garbage\n")
    (tree / ZONES / "thermal_zone1" / "type").unlink()
    snap = read_thermal(SysfsRoot(tree))
    z0, z1 = snap.zones
    assert (z0.type, z0.temp_c) == ("cpu-thermal", None)
    assert z0.error == f"{tree / ZONES / 'thermal_zone0' / 'temp'}: not an integer: 'garbage'"
    assert (z1.type, z1.temp_c) == (None, 46.0)
    assert z1.error == (f"{tree / ZONES / 'thermal_zone1' / 'type'}: vanished (the sensor was removed or its "
                        "driver unloaded)")
    assert snap.max_temp_c == 46.0


@pytest.mark.parametrize(("content", "error"), [
    ("-273000", "implausible temperature (m°C) -273000"),  # a disconnected diode
    ("2147483647", "implausible temperature (m°C) 2147483647"),
    ("nan", "not an integer: 'nan'"),
    ("", "not an integer: ''"),
    ("4_5000", "not an integer: '4_5000'"),
])
def test_an_impossible_temperature_is_an_error_not_a_reading(tree, content, error):
    (tree / ZONES / "thermal_zone0" / "temp").write_text(content)
    zone = read_thermal(SysfsRoot(tree)).zones[0]
    assert zone.temp_c is None
    assert zone.error == f"{tree / ZONES / 'thermal_zone0' / 'temp'}: {error}"


def test_binary_junk_and_an_unreadable_zone_are_errors(tree):
    (tree / ZONES / "thermal_zone0" / "type").write_bytes(b"\xff\xfe\x00")
    temp = tree / ZONES / "thermal_zone1" / "temp"
    temp.unlink()
    temp.mkdir()  # reading it fails with EISDIR
    z0, z1 = read_thermal(SysfsRoot(tree)).zones
    assert z0.type is None and z0.error.startswith(f"{tree / ZONES / 'thermal_zone0' / 'type'}: not text: ")
    assert z1.temp_c is None and z1.error == f"{temp}: is a directory, not a sysfs attribute"


def test_no_thermal_zones_is_an_empty_snapshot(tmp_path):
    snap = read_thermal(SysfsRoot(tmp_path))
    assert snap.zones == () and snap.max_temp_c is None and snap.error is None


def test_a_broken_policy_keeps_what_it_could_read(tree):
    policy_dir = tree / POLICY
    (policy_dir / "scaling_cur_freq").write_text("nonsense\n")
    (policy_dir / "scaling_governor").unlink()
    (policy_dir / "scaling_max_freq").write_text("99999999999\n")
    (policy_dir / "scaling_available_frequencies").write_text("1200000 fast\n")
    policy = read_cpufreq(SysfsRoot(tree)).policies[0]
    assert (policy.cpus, policy.min_freq_mhz, policy.hw_max_freq_mhz) == ((0, 1, 2, 3), 1200.0, 1800.0)
    assert (policy.cur_freq_mhz, policy.governor, policy.max_freq_mhz) == (None, None, None)
    assert policy.available_freqs_mhz == () and policy.throttled is None
    assert policy.error.split("; ") == [
        f"{policy_dir / 'scaling_governor'}: vanished (the sensor was removed or its driver unloaded)",
        f"{policy_dir / 'scaling_available_frequencies'}: not a list of numbers: '1200000 fast'",
        f"{policy_dir / 'scaling_cur_freq'}: not an integer: 'nonsense'",
        f"{policy_dir / 'scaling_max_freq'}: implausible frequency (kHz) 99999999999",
    ]


def test_a_policy_at_its_top_frequency_is_not_throttled(tree):
    (tree / POLICY / "scaling_cur_freq").write_text("1800000\n")
    assert read_cpufreq(SysfsRoot(tree)).policies[0].throttled is False


def test_without_policy_directories_the_cpu_directories_are_read_once_per_domain(tmp_path):
    """Kernels before 4.8: cpu0/cpufreq is the directory and the other cores link to it."""
    cpu = tmp_path / "devices" / "system" / "cpu"
    (cpu / "cpu0").mkdir(parents=True)
    shutil.copytree(IMX8MP / POLICY, cpu / "cpu0" / "cpufreq")
    for n in (1, 2, 3):
        (cpu / f"cpu{n}").mkdir()
        os.symlink("../cpu0/cpufreq", cpu / f"cpu{n}" / "cpufreq")
    snap = read_cpufreq(SysfsRoot(tmp_path))
    assert [(p.policy, p.cpus, p.cur_freq_mhz) for p in snap.policies] == [("cpu0", (0, 1, 2, 3), 1600.0)]


def test_no_cpufreq_is_an_empty_snapshot(tmp_path):
    (tmp_path / "devices" / "system" / "cpu" / "cpu0").mkdir(parents=True)  # a core without cpufreq
    snap = read_cpufreq(SysfsRoot(tmp_path))
    assert snap.policies == () and snap.error is None and snap.to_dict() == {"policies": [], "error": None}
