"""Policy: parsing, defaults, digest, deadlines, network profiles, and warnings against a daemon config."""

from __future__ import annotations

import hashlib

import pytest

from edgeoffload.config import (
    DaemonConfig, EndpointConfig, ModelConfig, ModelPolicy, Policy, load_policy, parse_policy_text, policy_warnings,
)
from edgeoffload.decide.types import NETWORK_PROFILES, IdleMode, NetworkProfile, Objective
from edgeoffload.errors import ConfigError


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_policy_text(text, "p.yaml")
    return [str(p) for p in e.value.problems]


def test_minimal_policy_gets_defaults():
    text = "version: 1\nobjective: energy\n"
    policy = parse_policy_text(text, "dbus")
    assert policy == Policy(
        version=1, revision=None, objective=Objective.ENERGY, idle_mode=IdleMode.HIGH,
        network_profile=NETWORK_PROFILES["ethernet"], default_deadline_ms=None, models={},
        never_offload=frozenset(), allowed_targets=None,
        digest=hashlib.sha256(text.encode()).hexdigest()[:12], source="dbus",
    )
    assert policy.network is NETWORK_PROFILES["ethernet"]
    assert policy.deadline_for("anything") is None


def test_full_policy():
    policy = parse_policy_text(
        "version: 1\nrevision: r7\nobjective: edp\nidle_mode: low\nnetwork_profile: 5g\n"
        "default_deadline_ms: 40\nmodels:\n  a: {deadline_ms: 10}\n  b: {deadline_ms: null}\n  c: {}\n"
        "never_offload: [a]\nallowed_targets: [npu, edge]\n", "p.yaml")
    assert (policy.objective, policy.idle_mode, policy.revision) == (Objective.EDP, IdleMode.LOW, "r7")
    assert policy.network == NETWORK_PROFILES["5g"]
    assert policy.models == {"a": ModelPolicy(deadline_ms=10.0), "b": ModelPolicy(), "c": ModelPolicy()}
    assert [policy.deadline_for(m) for m in "abcd"] == [10.0, 40.0, 40.0, 40.0]
    assert policy.never_offload == frozenset({"a"})
    assert policy.allowed_targets == frozenset({"npu", "edge"})


def test_custom_network_profile():
    policy = parse_policy_text(
        "version: 1\nobjective: latency\nnetwork_profile:\n  one_way_latency_ms: 0\n  upload_bytes_per_s: 1000\n"
        "  download_bytes_per_s: 2000.5\n  upload_nj_per_byte: 0\n  download_nj_per_byte: 3\n", "p.yaml")
    assert policy.network == NetworkProfile(0.0, 1000.0, 2000.5, 0.0, 3.0, name="custom")


def test_digest_changes_with_the_text_and_matches_the_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nobjective: latency\n")
    policy = load_policy(path)
    assert policy.digest == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert policy.source == str(path)
    assert parse_policy_text("version: 1\nobjective: energy\n", "x").digest != policy.digest


@pytest.mark.parametrize("text, expected", [
    ("version: 1\n", ["p.yaml:1: objective: required key is missing"]),
    ("version: 1\nobjective: Latency\n",
     ["p.yaml:2: objective: must be one of: latency, energy, edp; got string 'Latency'"]),
    ("version: 1\nobjective: energy\nidle_mode: off\n",
     ["p.yaml:3: idle_mode: must be one of: high, low; got boolean false"]),
    ("version: 1\nobjective: energy\nnetwork_profile: 3\n",
     ["p.yaml:3: network_profile: must be one of: ethernet, radio, 5g, or a mapping with one_way_latency_ms, "
      "upload_bytes_per_s, download_bytes_per_s, upload_nj_per_byte, download_nj_per_byte; got integer 3"]),
    ("version: 1\nobjective: energy\ndefault_deadline_ms: 0\n",
     ["p.yaml:3: default_deadline_ms: must be greater than 0, got 0"]),
    ("version: 1\nobjective: energy\nmodels: {m: {deadline_ms: -1}}\n",
     ["p.yaml:3: models.m.deadline_ms: must be greater than 0, got -1"]),
    ("version: 1\nobjective: energy\nnever_offload: a\n", ["p.yaml:3: never_offload: expected a list, got string 'a'"]),
    ("version: 1\nobjective: energy\nallowed_targets: [npu, 3]\n",
     ["p.yaml:3: allowed_targets[1]: expected a string, got integer 3"]),
    ("version: 1\nobjective: energy\nobjectve: edp\n", ["p.yaml:3: objectve: unknown key; did you mean 'objective'?"]),
    ("version: 3\nobjective: energy\n", ["p.yaml:1: version: unsupported version 3: this edgeoffload reads version 1"]),
])
def test_policy_problems(text, expected):
    assert problems(text) == expected


def test_custom_network_problems_are_all_reported():
    text = ("version: 1\nobjective: energy\nnetwork_profile:\n  one_way_latency_ms: -1\n"
            "  upload_bytes_per_s: .inf\n  download_bytes_per_s: 0\n  upload_nj_per_byte: x\n  speed: 1\n")
    assert problems(text) == [
        "p.yaml:3: network_profile.download_nj_per_byte: required key is missing",
        "p.yaml:4: network_profile.one_way_latency_ms: must be at least 0, got -1",
        "p.yaml:5: network_profile.upload_bytes_per_s: must be a finite number, got inf",
        "p.yaml:6: network_profile.download_bytes_per_s: must be greater than 0, got 0",
        "p.yaml:7: network_profile.upload_nj_per_byte: expected a number, got string 'x'",
        "p.yaml:8: network_profile.speed: unknown key; valid keys here: one_way_latency_ms, upload_bytes_per_s, "
        "download_bytes_per_s, upload_nj_per_byte, download_nj_per_byte",
    ]


def test_warnings_name_what_the_config_does_not_know(tmp_path):
    config = DaemonConfig(
        version=1, device_id="d", models=(ModelConfig(name="m1", file=tmp_path / "m1.tflite"),),
        endpoints=(EndpointConfig(name="edge", url="http://e"),),
    )
    policy = parse_policy_text(
        "version: 1\nobjective: latency\nmodels: {m1: {}, m2: {}}\nnever_offload: [m3, m1]\n"
        "allowed_targets: [npu, edge, gpu]\n", "p.yaml")
    assert policy_warnings(policy, config) == [
        "p.yaml: models.m2: no model named 'm2' in the daemon config; this entry has no effect",
        "p.yaml: never_offload: no model named 'm3' in the daemon config; this entry has no effect",
        "p.yaml: allowed_targets: no target or endpoint named 'gpu' in the daemon config; this entry has no effect",
    ]
    clean = parse_policy_text("version: 1\nobjective: latency\nallowed_targets: [cpu1, edge]\n", "q.yaml")
    assert policy_warnings(clean, config) == []
