"""Building blocks for whole-loop tests: a model folder, an endpoint, and daemon config files."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml


def model_dir(tmp_path: Path, tiny_models: dict[str, Path]) -> Path:
    """A folder with the tiny float and int8 models, as the endpoint and the daemon read them."""
    d = tmp_path / "models"
    d.mkdir(exist_ok=True)
    for p in tiny_models.values():
        shutil.copy(p, d / p.name)
    return d


def write_policy(path: Path, **overrides) -> Path:
    policy = {"version": 1, "objective": "latency", "network_profile": "ethernet", "idle_mode": "low"}
    policy.update(overrides)
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def write_config(tmp_path: Path, folder: Path, *, endpoint_url: str | None, broker: tuple[str, int] | None,
                 **extra) -> Path:
    """A daemon config for the tiny models: cpu1, an NPU whose delegate is absent, and an endpoint."""
    policy = write_policy(tmp_path / "policy.yaml") if not (tmp_path / "policy.yaml").exists() \
        else tmp_path / "policy.yaml"
    config = {
        "version": 1, "device_id": "test-board", "state_dir": str(tmp_path / "state"), "policy_file": str(policy),
        "models": [{"name": "tiny_16", "file": str(folder / "tiny_16.tflite")},
                   {"name": "tiny_q_16", "file": str(folder / "tiny_q_16.tflite"), "remote_name": "tiny_16"}],
        "targets": [{"name": "cpu1", "type": "tflite_cpu", "threads": 1},
                    {"name": "npu", "type": "tflite_npu", "delegate": str(tmp_path / "no-such-delegate.so")}],
        "endpoints": ([{"name": "offload", "url": endpoint_url, "health_interval_s": 0.2, "timeout_ms": 2000}]
                      if endpoint_url else []),
        "profiling": {"warmup_runs": 2, "runs": 10},
        "mqtt": ({"host": broker[0], "port": broker[1], "summary_interval_s": 0.5, "keepalive_s": 5}
                 if broker else {"enabled": False}),
        "dbus": {"bus": "none"},  # tests that use the API pass dbus={"bus": "session", ...} under dbus-run-session
    }
    config.update(extra)
    path = tmp_path / "edgeoffloadd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
