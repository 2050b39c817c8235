"""Measured energy on the D-Bus API and in edgeoffloadctl: GetSensors / `sensors` (the modelled source and an
INA226 hwmon fixture tree), ImportEnergyProfile / `profile import FILE` (good, bad, unknown, not JSON, too
large), and who may import (the bus policy, enforced by a real dbus-daemon with system-bus defaults)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dbus_helpers import (  # noqa: E402
    ERROR, call_error, ctl, ctl_script, gdbus_call, gdbus_error, gdbus_value, one_error_line, tool, wait_until,
)
from loop_helpers import write_policy  # noqa: E402

from edgeoffload.api.mqtt_payloads import device_topic  # noqa: E402
from edgeoffload.engine.energy_import import MAX_BYTES  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sysfs"
POLICY_CONF = Path(__file__).resolve().parents[2] / "daemon" / "dbus" / "org.edgeoffload.Daemon1.conf"
INA226_W = 6.26  # power1_input 6260000 µW in the fixture
KIND = "edgeoffload.energy-profile"


def energy_entry(model="tiny_16", target="cpu1", energy_mj=0.05, latency_ms=2.5, **extra) -> dict:
    return {"model": model, "target": target, "n": 40, "energy_mj_mean": energy_mj, "energy_mj_stdev": 0.004,
            "active_energy_mj_mean": energy_mj * 0.6, "latency_ms_mean": latency_ms, "idle_power_w": 1.1, **extra}


def energy_profile(*entries: dict) -> dict:
    return {"schema": 1, "kind": KIND, "source": "joulescope", "recording": "bench-0412.jls",
            "created_utc": "2024-04-12T10:00:00Z", "alignment": "gpi", "entries": list(entries)}


def write_json(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def hwmon_tree(tmp_path: Path) -> Path:
    """A copy of the INA226 fixture, with a thermal zone and a cpufreq policy as an i.MX 8M Plus has them."""
    root = tmp_path / "sysfs"
    shutil.copytree(FIXTURES / "ina226", root, symlinks=True)
    zone = root / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("47500\n")
    policy = root / "devices" / "system" / "cpu" / "cpufreq" / "policy0"
    policy.mkdir(parents=True)
    for name, value in {"related_cpus": "0 1 2 3", "scaling_governor": "schedutil", "scaling_cur_freq": "1200000",
                        "scaling_min_freq": "1200000", "scaling_max_freq": "1800000",
                        "cpuinfo_max_freq": "1800000",
                        "scaling_available_frequencies": "1200000 1600000 1800000"}.items():
        (policy / name).write_text(value + "\n")
    return root


def rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("  ") if c.strip()] for line in text.splitlines()]


# --- sensors ---------------------------------------------------------------------------------------
def test_sensors_with_the_modelled_source(dbus_service, dbus_session, dbus_client, capsys):
    dbus_service(power={"type": "modelled", "active_w": {"cpu1": 2.75, "npu": 1.5}})
    data = json.loads(dbus_client.call("GetSensors"))
    assert data["channels"] == [
        {"source": "modelled", "chip": None, "rail": "cpu1", "unit": "W", "path": "config", "power_w": 2.75,
         "energy_j": None},
        {"source": "modelled", "chip": None, "rail": "npu", "unit": "W", "path": "config", "power_w": 1.5,
         "energy_j": None}]
    assert (data["energy"]["label"], data["energy"]["known"], data["energy"]["imported"]) == ("modelled", True, [])
    status, out, err = ctl(capsys, "sensors", "--bus", dbus_session)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["SOURCE", "CHIP", "RAIL", "UNIT", "POWER_W", "ENERGY_J"]
    assert rows(out)[1:3] == [["modelled", "-", "cpu1", "W", "2.750", "-"], ["modelled", "-", "npu", "W", "1.500",
                                                                               "-"]]
    assert lines[3] == "energy source: modelled (known)"
    status, out, err = ctl(capsys, "sensors", "--json", "--bus", dbus_session)
    assert (status, err) == (0, "") and json.loads(out) == json.loads(dbus_client.call("GetSensors"))


def test_sensors_without_modelled_rails_say_what_is_assumed(dbus_service, dbus_session, capsys):
    dbus_service()
    status, out, err = ctl(capsys, "sensors", "--bus", dbus_session)
    assert (status, err) == (0, "")
    assert out.splitlines()[:2] == [
        "no power rails: modelled figures, 3.500 W per target while it runs, idle 1.000 W (low) / 2.500 W (high)",
        "energy source: modelled (known)"]


def test_sensors_with_an_ina226_hwmon_tree(dbus_service, dbus_session, dbus_client, tmp_path, capsys):
    sysfs = hwmon_tree(tmp_path)
    dbus_service(power={"type": "hwmon", "sysfs": str(sysfs), "sample_hz": 50},
                 profiling={"warmup_runs": 1, "runs": 3, "energy_duration_s": 0.2, "idle_baseline_s": 0.5})
    data = wait_until(lambda: (d := json.loads(dbus_client.call("GetSensors")))["channels"][0]["power_w"]
                      is not None and d, what="a first hwmon reading")
    (rail,) = data["channels"]
    assert (rail["source"], rail["chip"], rail["power_w"], rail["energy_j"]) == ("hwmon", "ina226", INA226_W, None)
    assert rail["path"] == str(sysfs / "class" / "hwmon" / "hwmon1")
    assert data["energy"]["known"] is True and data["energy"]["problem"] is None
    env = data["environment"]
    assert env["thermal"]["zones"] == [{"zone": "thermal_zone0", "type": "cpu-thermal", "temp_c": 47.5,
                                        "error": None}]
    (policy,) = env["cpufreq"]["policies"]
    assert (policy["cpus"], policy["governor"], policy["cur_freq_mhz"]) == ([0, 1, 2, 3], "schedutil", 1200.0)
    status, out, err = ctl(capsys, "sensors", "--bus", dbus_session)
    assert (status, err) == (0, "")
    table_rows = rows(out)
    assert table_rows[1] == ["hwmon", "ina226", rail["rail"], rail["unit"], "6.260", "-"]
    label = data["energy"]["label"]
    assert out.splitlines()[2:] == [
        f"energy source: {label} (known), idle baseline 6.260 W",  # the fixture's rail is constant
        "thermal cpu-thermal (thermal_zone0): 47.5 °C",
        "cpufreq policy0 (cpus 0,1,2,3): 1200 MHz, governor schedutil (min 1200, max 1800, hardware max 1800 MHz)"]
    # the rail goes bad: energy unknown, with the file named
    (sysfs / "class" / "hwmon" / "hwmon1" / "power1_input").write_text("garbage\n")
    data = wait_until(lambda: (d := json.loads(dbus_client.call("GetSensors")))["energy"]["problem"] and d,
                      what="the meter noticing the bad rail")
    assert data["energy"]["known"] is False and "power1_input" in data["energy"]["problem"]
    status, out, err = ctl(capsys, "sensors", "--bus", dbus_session)
    (line,) = [x for x in out.splitlines() if x.startswith("energy source:")]
    assert (status, err) == (0, "")
    assert line == f"energy source: {label} (unknown: {data['energy']['problem']}), idle baseline 6.260 W"


# --- profile import --------------------------------------------------------------------------------
def test_profile_import_is_used_by_decisions_and_kept(dbus_service, dbus_session, dbus_client, dbus_signals,
                                                      tmp_path, capsys):
    write_policy(tmp_path / "policy.yaml", objective="energy")
    targets = [{"name": "cpu1", "type": "tflite_cpu", "threads": 1}, {"name": "cpu2", "type": "tflite_cpu",
                                                                      "threads": 1}]
    svc = dbus_service(targets=targets)
    proxy = dbus_client.proxy()
    before = {o[0]: o for o in proxy.Decide("tiny_16")[2]}
    assert before["cpu2"][3] == pytest.approx(before["cpu2"][2] * 3.5)  # modelled: 3.5 W
    # cpu2 measured at a tenth of a watt: the energy objective now picks it, whatever the latencies
    doc = energy_profile(energy_entry(target="cpu2", energy_mj=0.25, latency_ms=2.5),
                         energy_entry(model="tiny_q_16", target="cpu1", energy_mj=9.0, latency_ms=3.0))
    status, out, err = ctl(capsys, "profile", "import", str(write_json(tmp_path / "e.json", doc)),
                           "--bus", dbus_session)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "imported tiny_16 on cpu2: 0.250 mJ/inference (0.100 W over 2.500 ms), source joulescope (bench-0412.jls)",
        "imported tiny_q_16 on cpu1: 9.000 mJ/inference (3.000 W over 3.000 ms), source joulescope "
        "(bench-0412.jls)"]
    target, reason, options = proxy.Decide("tiny_16")
    assert target == "cpu2" and reason.startswith("cpu2: lowest energy"), reason
    cpu2 = next(o for o in options if o[0] == "cpu2")
    assert cpu2[3] == pytest.approx(cpu2[2] * 0.1)  # mJ = ms x the imported W
    sensors = json.loads(dbus_client.call("GetSensors"))
    assert sensors["energy"]["imported"] == [
        {"model": "tiny_16", "target": "cpu2", "power_w": pytest.approx(0.1),
         "label": "joulescope (imported bench-0412.jls)"},
        {"model": "tiny_q_16", "target": "cpu1", "power_w": pytest.approx(3.0),
         "label": "joulescope (imported bench-0412.jls)"}]
    reply = proxy.Infer("tiny_16", bytes(16 * 16 * 3), [1, 16, 16, 3], "uint8")
    assert (reply[3], reply[6]) == ("cpu2", "joulescope (imported bench-0412.jls)")
    assert reply[5] == pytest.approx(reply[4] * 0.1)
    kept = json.loads((tmp_path / "state" / "energy-imports.json").read_text())
    assert sorted((e["model"], e["target"]) for e in kept["entries"]) == [("tiny_16", "cpu2"), ("tiny_q_16", "cpu1")]
    # --json: the entries as the daemon took them; a second import of a pair replaces it
    doc = energy_profile(energy_entry(target="cpu2", energy_mj=0.5, latency_ms=2.5))
    status, out, err = ctl(capsys, "profile", "import", str(write_json(tmp_path / "e2.json", doc)), "--json",
                           "--bus", dbus_session)
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert data["file"] == str(tmp_path / "e2.json")
    (entry,) = data["entries"]
    assert entry == {**energy_entry(target="cpu2", energy_mj=0.5, latency_ms=2.5), "power_w": pytest.approx(0.2),
                     "source": "joulescope", "recording": "bench-0412.jls"}
    cpu2 = next(o for o in proxy.Decide("tiny_16")[2] if o[0] == "cpu2")
    assert cpu2[3] == pytest.approx(cpu2[2] * 0.2)
    assert svc.state == "running"


def test_import_from_a_foreign_client_refreshes_the_mqtt_status(dbus_service, dbus_client, dbus_session, mosquitto,
                                                                 mqtt_probe):
    dbus_service(mqtt={"host": mosquitto.host, "port": mosquitto.port, "summary_interval_s": 60, "keepalive_s": 5})
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=[device_topic("test-board", "status")])
    first = probe.wait_for(device_topic("test-board", "status"))
    assert first.json()["energy"]["imported"] == []
    reply = gdbus_value(gdbus_call(dbus_session, "ImportEnergyProfile", json.dumps(energy_profile(energy_entry()))),
                        "(s)")[0]
    (entry,) = json.loads(reply)
    assert (entry["model"], entry["target"], entry["power_w"]) == ("tiny_16", "cpu1", pytest.approx(0.02))
    status = probe.wait_for(device_topic("test-board", "status"), lambda m: m.json()["energy"]["imported"])
    assert status.json()["energy"]["imported"] == [{"model": "tiny_16", "target": "cpu1",
                                                    "power_w": pytest.approx(0.02),
                                                    "label": "joulescope (imported bench-0412.jls)"}]
    assert dbus_client.proxy().Status == "degraded"  # the NPU is still missing; nothing else moved


BAD_FILES = [  # (file content, message fragments)
    (energy_profile(energy_entry(), energy_entry(model="tiny_q_16", energy_mj=float("nan"))),
     ["InvalidArgument: energy profile: entries[1].energy_mj_mean: expected a finite number > 0, got nan"]),
    (energy_profile(energy_entry(n=0), energy_entry(latency_ms=-1)),
     ["entries[0].n: expected a count >= 1, got 0", "entries[1].latency_ms_mean: expected a finite number > 0"]),
    (energy_profile(energy_entry(model="resnet", target="cpu1"), energy_entry(target="gpu")),
     ["InvalidArgument: energy profile: no such model/local target here: resnet on cpu1, tiny_16 on gpu",
      "(models: tiny_16, tiny_q_16; targets: cpu1, npu)"]),
    ({"schema": 2, "kind": KIND, "entries": [energy_entry()]}, ["schema/kind: expected schema 1"]),
    ("{not json", ["InvalidArgument: energy profile: not JSON: "]),
    ([energy_entry()], ["expected a JSON object (an energy profile), got list"]),
]


@pytest.mark.parametrize("content, fragments", BAD_FILES,
                         ids=["nan", "two-bad-entries", "unknown-model-and-target", "schema", "not-json", "list"])
def test_a_bad_energy_profile_exits_2_and_changes_nothing(dbus_service, dbus_session, dbus_client, tmp_path, capsys,
                                                          content, fragments):
    dbus_service()
    proxy = dbus_client.proxy()
    before = proxy.Decide("tiny_16")[2]
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))  # NaN written as NaN
    status, out, err = ctl(capsys, "profile", "import", str(path), "--bus", dbus_session)
    assert (status, out) == (2, "")
    one_error_line(err, "edgeoffloadctl: error: ", *fragments)
    assert json.loads(dbus_client.call("GetSensors"))["energy"]["imported"] == []
    assert not (tmp_path / "state" / "energy-imports.json").exists()
    after = proxy.Decide("tiny_16")[2]
    assert [o[3] / o[2] for o in after] == pytest.approx([o[3] / o[2] for o in before])  # still 3.5 W


def test_files_that_never_reach_the_daemon(dbus_session, tmp_path, capsys):
    """Checked before connecting: no daemon runs on this bus, yet each is the caller's to fix (exit 2)."""
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(MAX_BYTES + 1)
    (binary := tmp_path / "binary.json").write_bytes(b'{"schema": 1, \xff\xfe}')
    (nul := tmp_path / "nul.json").write_text('{"schema": 1,\0}')
    (folder := tmp_path / "folder.json").mkdir()
    cases = [
        (["import", str(huge)], [f"{huge}: more than {MAX_BYTES} bytes, too large for an energy profile"]),
        (["import", str(binary)], [f"{binary}: not UTF-8 text (byte 14): an energy profile is JSON"]),
        (["import", str(nul)], [f"{nul}: a NUL character at offset 13"]),
        (["import", str(tmp_path / "none.json")], [f"{tmp_path / 'none.json'}: cannot read the energy profile: "
                                                    "No such file or directory"]),
        (["import", str(folder)], [f"{folder}: cannot read the energy profile: Is a directory"]),
        (["import"], ["profile import needs a FILE", "a model named 'import': profile --model import"]),
        (["import", str(huge), "--target", "cpu1"], ["profile import FILE takes no --target or --show"]),
        (["tiny_16", str(huge)], ["profile takes one MODEL, got 'tiny_16' and", "profile import FILE"]),
        (["tiny_16", "--model", "tiny_q_16"], ["name the model once: MODEL 'tiny_16' or --model 'tiny_q_16'"]),
    ]
    for argv, fragments in cases:
        status, out, err = ctl(capsys, "profile", *argv, "--bus", dbus_session)
        assert (status, out) == (2, ""), (argv, err)
        one_error_line(err, "edgeoffloadctl: error: ", *fragments)


def test_profile_model_and_a_model_named_import(dbus_service, dbus_session, tmp_path, tiny_models, capsys):
    shutil.copy(tiny_models["float"], tmp_path / "import.tflite")
    models = [{"name": "import", "file": str(tmp_path / "import.tflite")}]
    dbus_service(models=models, profiling={"warmup_runs": 1, "runs": 3})
    status, out, err = ctl(capsys, "profile", "--model", "import", "--target", "cpu1", "--bus", dbus_session)
    assert (status, err) == (0, "") and rows(out)[1][:2] == ["import", "cpu1"] and rows(out)[1][8] == "3"
    status, out, err = ctl(capsys, "profile", "import", "--bus", dbus_session)  # the word means the sub-action
    assert (status, out) == (2, "")
    one_error_line(err, "profile import needs a FILE")
    doc = energy_profile(energy_entry(model="import"))
    status, out, err = ctl(capsys, "profile", "import", str(write_json(tmp_path / "e.json", doc)),
                           "--bus", dbus_session)
    assert (status, err) == (0, "") and out.startswith("imported import on cpu1: 0.050 mJ/inference")


def test_console_script_sensors_and_import(dbus_service, dbus_session, tmp_path):
    dbus_service()
    path = write_json(tmp_path / "e.json", energy_profile(energy_entry()))
    env = {**os.environ, "EDGEOFFLOAD_BUS": dbus_session}
    proc = subprocess.run([ctl_script(), "profile", "import", str(path)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert (proc.returncode, proc.stderr) == (0, "") and proc.stdout.startswith("imported tiny_16 on cpu1: ")
    proc = subprocess.run([ctl_script(), "sensors", "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert [i["model"] for i in json.loads(proc.stdout)["energy"]["imported"]] == ["tiny_16"]
    bad = write_json(tmp_path / "bad.json", energy_profile(energy_entry(n=-3)))
    proc = subprocess.run([ctl_script(), "profile", "import", str(bad)], capture_output=True, text=True, timeout=120,
                          env=env)
    assert (proc.returncode, proc.stdout) == (2, "")
    one_error_line(proc.stderr, "InvalidArgument: energy profile: entries[0].n: expected a count >= 1, got -3")


# --- who may import: the policy file on a bus that enforces it ---------------------------------------
SYSTEM_LIKE_BUS = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:dir={folder}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <policy user="root"><allow own="org.edgeoffload.Daemon1"/></policy>
  <include>{policy}</include>
</busconfig>
"""


@pytest.fixture
def system_like_bus(dbus_session, monkeypatch):
    """A dbus-daemon with the system bus's defaults (method calls denied unless allowed) and our policy file;
    root may own the name (the tests run the service as root). Its address replaces the private session bus."""
    if os.geteuid() != 0:
        pytest.skip("calling as another user needs root")
    folder = Path(tempfile.mkdtemp(prefix="eo-sys-"))
    folder.chmod(0o755)  # the other user reaches the socket
    (conf := folder / "bus.conf").write_text(SYSTEM_LIKE_BUS.format(folder=folder, policy=POLICY_CONF))
    proc = subprocess.Popen([tool("dbus-daemon"), f"--config-file={conf}", "--print-address", "--nofork"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("unix:"), proc.stderr.read()
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_only_root_or_the_group_may_import(system_like_bus, dbus_service, tmp_path):
    dbus_service()
    text = json.dumps(energy_profile(energy_entry()))

    def as_nobody(method: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [tool("gdbus"), "call", "--address", system_like_bus, "--dest", "org.edgeoffload.Daemon1",
               "--object-path", "/org/edgeoffload/Daemon1", "--method", f"org.edgeoffload.Daemon1.{method}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, user=65534, group=65534,
                              extra_groups=[], cwd="/")

    name, message = gdbus_error(as_nobody("ImportEnergyProfile", text))
    assert name == "org.freedesktop.DBus.Error.AccessDenied", message
    assert 'member="ImportEnergyProfile"' in message
    assert not (tmp_path / "state" / "energy-imports.json").exists()
    sensors = json.loads(gdbus_value(as_nobody("GetSensors"), "(s)")[0])  # reading is open to anyone
    assert sensors["energy"]["imported"] == []
    reply = gdbus_value(gdbus_call(system_like_bus, "ImportEnergyProfile", text), "(s)")[0]  # root may
    assert [e["model"] for e in json.loads(reply)] == ["tiny_16"]


def test_a_refused_import_names_the_error_for_every_client(dbus_service, dbus_client):
    dbus_service()
    name, message = call_error(dbus_client.proxy().ImportEnergyProfile, "[]")
    assert (name, message) == (ERROR + "InvalidArgument", "energy profile: expected a JSON object (an energy "
                                                          "profile), got list")


# --- the printed and the sent forms, on their own ------------------------------------------------------
def test_sensors_text_says_what_could_not_be_read():
    from edgeoffload.ctl_format import sensors_text

    data = {"channels": [{"source": "iio", "chip": "pac1934", "rail": "VDD_ARM", "unit": "mW", "path": "/x",
                          "power_w": None, "energy_j": 12.5}],
            "energy": {"label": "measured rail", "known": False, "problem": "power source iio: /x/in_power1_raw: "
                       "not a number", "idle_power_w": None,
                       "imported": [{"model": "m", "target": "npu", "power_w": 1.25, "label": "joulescope (imported "
                                     "r.jls)"}]},
            "environment": {"thermal": {"zones": [{"zone": "thermal_zone1", "type": None, "temp_c": None,
                                                   "error": "/sys/class/thermal/thermal_zone1/temp: EIO"}]},
                            "cpufreq": {"policies": [], "error": None}}}
    assert sensors_text(data).splitlines() == [
        "SOURCE  CHIP     RAIL     UNIT  POWER_W  ENERGY_J",
        "iio     pac1934  VDD_ARM  mW    -          12.500",
        "energy source: measured rail (unknown: power source iio: /x/in_power1_raw: not a number)",
        "imported: m on npu 1.250 W, joulescope (imported r.jls)",
        "thermal ? (thermal_zone1): - (/sys/class/thermal/thermal_zone1/temp: EIO)",
        "cpufreq: no policies"]
    data["environment"] = None
    assert sensors_text(data).splitlines()[-1] == "thermal and cpufreq: not read yet (the daemon is starting)"


def test_replies_carry_json_without_nan():
    pytest.importorskip("gi")
    from edgeoffload.api.dbus_object import to_json

    text = to_json({"a": float("nan"), "b": [float("inf"), 1.5, (2, None)], 3: Path("/sys")})
    assert json.loads(text) == {"a": None, "b": [None, 1.5, [2, None]], "3": "/sys"}
