"""Daemon config: defaults, path resolution, and each kind of problem with its exact message and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeoffload.config import (
    DEFAULT_TARGETS, POWER_TYPES, DaemonConfig, EndpointConfig, ModelConfig, ModelledPowerConfig, MqttConfig,
    ProfilingConfig, TargetConfig, WorkloadConfig, load_config,
)
from edgeoffload.errors import ConfigError

MINIMAL = "version: 1\ndevice_id: dev-1\nmodels:\n  - name: tiny\n    file: tiny.tflite\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "d.yaml"
    path.write_text(text)
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    prefix = f"{path}:"
    lines = [str(p) for p in e.value.problems]
    assert all(line.startswith(prefix) for line in lines)
    assert str(e.value) == "\n".join(lines)
    return [line[len(prefix) - len("d.yaml:"):] for line in lines]


def test_defaults_are_applied(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config == DaemonConfig(
        version=1, device_id="dev-1",
        models=(ModelConfig(name="tiny", file=tmp_path / "tiny.tflite"),),
    )
    assert [f for f in DaemonConfig.__dataclass_fields__] == [
        "version", "device_id", "state_dir", "policy_file", "models", "targets", "endpoints", "profiling",
        "power", "mqtt", "dbus", "workload", "logging", "gpio_marker",
    ]
    assert config.state_dir == Path("/var/lib/edgeoffload")
    assert config.policy_file == Path("/etc/edgeoffload/policy.yaml")
    assert config.targets == DEFAULT_TARGETS
    assert [(t.name, t.type, t.threads, t.delegate) for t in config.targets] == [
        ("cpu1", "tflite_cpu", 1, None), ("cpu4", "tflite_cpu", 4, None),
        ("npu", "tflite_npu", 1, Path("/usr/lib/libvx_delegate.so")),
    ]
    assert config.endpoints == ()
    assert config.profiling == ProfilingConfig(warmup_runs=3, runs=30, duration_s=None, max_age_s=604800.0,
                                               on_start=True)
    assert config.power == ModelledPowerConfig(idle_high_w=2.5, idle_low_w=1.0, active_w={}, default_active_w=3.5)
    assert config.mqtt == MqttConfig(enabled=True, host="localhost", port=1883, username=None, password_file=None,
                                     tls=False, ca_file=None, keepalive_s=30, summary_interval_s=10.0,
                                     queue_max=1000, client_id=None)
    assert (config.dbus.bus, config.dbus.decision_signals_per_s, config.dbus.workers,
            config.dbus.max_pending_calls) == ("system", 5.0, 4, 32)
    assert config.workload == WorkloadConfig(requests=0, models=None, inputs=None, interval_ms=0.0, seed=0)
    assert config.logging.level == "info"


def test_remote_name_defaults_to_name_also_when_built_directly(tmp_path):
    assert ModelConfig(name="m", file=Path("m.tflite")).remote_name == "m"
    assert ModelConfig(name="m", file=Path("m.tflite"), remote_name="r").remote_name == "r"


def test_model_defaults_and_manifest_path(tmp_path):
    model = load_config(write(tmp_path, MINIMAL)).models[0]
    assert (model.manifest, model.remote_name, model.sha256) == (None, "tiny", None)
    assert model.manifest_path == tmp_path / "tiny.tflite.manifest.json"


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    text = MINIMAL + "    manifest: ../m.json\nstate_dir: state\nworkload: {inputs: imgs}\n"
    text += "mqtt: {ca_file: /abs/ca.pem}\n"
    (tmp_path / "etc" / "d.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/d.yaml")
    base = tmp_path / "etc"
    assert config.models[0].file == base / "tiny.tflite"
    assert config.models[0].manifest == base / "../m.json"
    assert config.state_dir == base / "state"
    assert config.workload.inputs == base / "imgs"
    assert config.mqtt.ca_file == Path("/abs/ca.pem")


def test_validation_does_no_io(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + "policy_file: /nonexistent/policy.yaml\n"))
    assert not config.models[0].file.exists()
    assert config.policy_file == Path("/nonexistent/policy.yaml")


def test_ints_are_accepted_for_floats_and_npu_options_become_strings(tmp_path):
    text = MINIMAL + (
        "targets:\n  - name: npu\n    type: tflite_npu\n    delegate: vx.so\n"
        "    delegate_options: {a: true, b: 2, c: 0.5, d: text}\n"
        "endpoints:\n  - {name: e, url: 'http://e:80/v2', timeout_ms: 100}\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.targets[0].delegate == tmp_path / "vx.so"
    assert config.targets[0].delegate_options == {"a": "true", "b": "2", "c": "0.5", "d": "text"}
    assert config.endpoints[0] == EndpointConfig(name="e", url="http://e:80/v2", timeout_ms=100.0)
    assert isinstance(config.endpoints[0].timeout_ms, float)


def test_power_types_registry_and_active_power(tmp_path):
    assert list(POWER_TYPES) == ["modelled", "hwmon", "iio", "rapl", "joulescope"]
    assert POWER_TYPES["modelled"] is ModelledPowerConfig
    config = load_config(write(tmp_path, MINIMAL + "power:\n  active_w: {npu: 3}\n"))
    assert config.power.type == "modelled"
    assert (config.power.active_power_w("npu"), config.power.active_power_w("cpu1")) == (3.0, 3.5)


def test_empty_sections_mean_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + "mqtt:\nprofiling:\npower:\n"))
    assert (config.mqtt, config.profiling, config.power) == (MqttConfig(), ProfilingConfig(), ModelledPowerConfig())


def test_duration_alone_replaces_runs(tmp_path):
    assert load_config(write(tmp_path, MINIMAL + "profiling: {duration_s: 2}\n")).profiling.duration_s == 2.0


@pytest.mark.parametrize("extra, expected", [
    ("mqtt:\n  prot: 1\n", "d.yaml:7: mqtt.prot: unknown key; did you mean 'port'?"),
    ("mqtt:\n  zzz: 1\n", "d.yaml:7: mqtt.zzz: unknown key; valid keys here: enabled, host, port, username, "
                          "password_file, tls, ca_file, keepalive_s, summary_interval_s, queue_max, client_id, "
                          "power_interval_s"),
    ("mqtt:\n  port: '1883'\n", "d.yaml:7: mqtt.port: expected an integer, got string '1883'"),
    ("mqtt:\n  port: 65536\n", "d.yaml:7: mqtt.port: must be between 1 and 65535, got 65536"),
    ("mqtt:\n  tls: 0\n", "d.yaml:7: mqtt.tls: expected true or false, got integer 0"),
    ("mqtt:\n  password: x\n", "d.yaml:7: mqtt.password: secrets must not be written in YAML: put it in a file "
                               "and give that file's path as password_file, or use a systemd credential "
                               "(LoadCredential=)"),
    ("logging: {level: loud}\n", "d.yaml:6: logging.level: must be one of: debug, info, warning, error; "
                                 "got string 'loud'"),
    ("profiling: {runs: 1.5}\n", "d.yaml:6: profiling.runs: expected an integer, got number 1.5"),
    ("profiling: {max_age_s: .nan}\n", "d.yaml:6: profiling.max_age_s: must be a finite number, got nan"),
    ("workload: {interval_ms: -.inf}\n", "d.yaml:6: workload.interval_ms: must be a finite number, got -inf"),
    ("workload: {seed: -1}\n", "d.yaml:6: workload.seed: must be at least 0, got -1"),
    ("state_dir: null\n", "d.yaml:6: state_dir: expected a string, got null"),
    ("version: 1\n", "d.yaml:6: version: duplicate key: already given at line 1"),
    ("targets: []\n", "d.yaml:6: targets: must list at least 1 item"),
    ("targets:\n  - {name: c, type: tflite_cpu, delegate_options: {a: 1}}\n",
     "d.yaml:7: targets[0].delegate_options: delegate_options is only for tflite_npu targets; this one is tflite_cpu"),
    ("endpoints:\n  - {name: e, url: 'http://e?x=1'}\n",
     "d.yaml:7: endpoints[0].url: URL must not have a query (?...) or fragment (#...): 'http://e?x=1'"),
    ("endpoints:\n  - {name: e, url: 'http://e', min_timeout_ms: 2001}\n",
     "d.yaml:7: endpoints[0].min_timeout_ms: must be at most timeout_ms (2000), got 2001"),
    ("workload: {models: [tiny, big]}\n",
     "d.yaml:6: workload.models[1]: no model named 'big'; configured models: tiny"),
    ("power: {active_w: {cpu9: 1}}\n",
     "d.yaml:6: power.active_w.cpu9: no target named 'cpu9'; configured targets: cpu1, cpu4, npu"),
    ("device_id: x\n", "d.yaml:6: device_id: duplicate key: already given at line 2"),
])
def test_one_problem(tmp_path, extra, expected):
    assert problems_of(tmp_path, MINIMAL + extra) == [expected]


def test_missing_required_key_is_reported_at_its_mapping(tmp_path):
    text = "# comment\nversion: 1\ndevice_id: d\nmodels:\n  - name: tiny\n\n    threads: 3\n"
    assert problems_of(tmp_path, text) == [
        "d.yaml:5: models[0].file: required key is missing",
        "d.yaml:7: models[0].threads: unknown key; valid keys here: name, file, manifest, remote_name, sha256",
    ]
    assert problems_of(tmp_path, "\n\nmqtt: {}\n") == [
        "d.yaml:3: version: required key is missing",
        "d.yaml:3: device_id: required key is missing",
        "d.yaml:3: models: required key is missing",
    ]


def test_all_problems_are_reported_together_in_file_order(tmp_path):
    text = (
        "version: 1\ndevice_id: 'a b'\nmodels:\n  - {name: m, file: m.tflite}\n  - {name: m, file: n.tflite}\n"
        "endpoints:\n  - {name: cpu1, url: 'http://e', binary: maybe}\nmqtt: {port: 0, keepalive_s: 2}\n"
    )
    assert problems_of(tmp_path, text) == [
        "d.yaml:2: device_id: invalid value 'a b': use 1 to 64 letters, digits, '_', '.' or '-', starting with a "
        "letter or digit (names appear in MQTT topics)",
        "d.yaml:5: models[1].name: name 'm' is already used by models[0] (line 4): model names must be unique",
        "d.yaml:7: endpoints[0].binary: must be one of: auto, always, never; got string 'maybe'",
        "d.yaml:7: endpoints[0].name: name 'cpu1' is already used by the default target 'cpu1' (no targets: given): "
        "target and endpoint names must be unique together",
        "d.yaml:8: mqtt.port: must be between 1 and 65535, got 0",
        "d.yaml:8: mqtt.keepalive_s: must be between 5 and 3600, got 2",
    ]


def test_dataclasses_are_frozen(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        config.device_id = "other"  # type: ignore[misc]
    assert isinstance(config.targets[0], TargetConfig)


def test_joulescope_power_needs_mqtt(tmp_path):
    assert problems_of(tmp_path, MINIMAL + "power:\n  type: joulescope\nmqtt:\n  enabled: false\n") == [
        "d.yaml:7: power.type: joulescope statistics arrive over MQTT (edgeoffload-host joulescope publishes "
        "them): set mqtt.enabled: true or choose another power type"]
    assert load_config(write(tmp_path, MINIMAL + "power:\n  type: joulescope\n")).power.type == "joulescope"


def test_energy_keys_defaults_and_bounds(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert (config.profiling.energy_duration_s, config.profiling.idle_baseline_s) == (30.0, 5.0)
    assert config.mqtt.power_interval_s == 5.0 and config.logging.decisions_file is None
    assert config.gpio_marker is None and config.targets[2].probe_timeout_s == 120.0
    text = MINIMAL + ("profiling:\n  energy_duration_s: 0\n  idle_baseline_s: .nan\ngpio_marker:\n  chip: /dev/gpiochip0\n"
                      "  line: -1\ntargets:\n  - name: cpu1\n    type: tflite_cpu\n    probe_timeout_s: 5\n")
    assert problems_of(tmp_path, text) == [
        "d.yaml:7: profiling.energy_duration_s: must be greater than 0 and at most 3600, got 0",
        "d.yaml:8: profiling.idle_baseline_s: must be a finite number, got nan",
        "d.yaml:11: gpio_marker.line: must be between 0 and 1023, got -1",
        "d.yaml:15: targets[0].probe_timeout_s: probe_timeout_s is only for tflite_npu targets; this one is tflite_cpu",
    ]
