"""The policy holder: reloads keep the previous policy on error; replace() validates, writes atomically, applies."""

import os

import pytest

from edgeoffload.engine.policy_watch import PolicyHolder
from edgeoffload.errors import ConfigError, PolicyInvalidError, ServiceError

GOOD = "version: 1\nobjective: latency\n"
ENERGY = "version: 1\nrevision: r2\nobjective: energy\n"


@pytest.fixture
def holder(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    heard = []
    h = PolicyHolder(path, on_change=lambda p, err: heard.append((p and p.objective.value, err)))
    h.load_initial()
    h.heard = heard
    return h


def test_replace_validates_writes_and_applies(holder, tmp_path):
    policy = holder.replace(ENERGY, "SetPolicy")
    assert holder.current is policy and policy.objective.value == "energy"
    assert policy.text == ENERGY and policy.source == str(holder.path)
    assert holder.path.read_text() == ENERGY
    assert sorted(os.listdir(tmp_path)) == ["policy.yaml"]  # no temporary file left behind
    assert holder.heard == [("energy", None)]


@pytest.mark.parametrize("text, message", [
    ("version: 1\nobjective: fast\n", "SetPolicy:2: objective: must be one of: latency, energy, edp"),
    ("version: 1\nobjective: latency\nspeed: 3\n", "SetPolicy:3: speed: unknown key"),
    ("version: 1\nobjective: [latency\n", "SetPolicy:"),
    ("", "SetPolicy:1: (file): file is empty"),
])
def test_a_bad_text_changes_nothing(holder, text, message):
    before = holder.current
    with pytest.raises(PolicyInvalidError) as e:
        holder.replace(text, "SetPolicy")
    assert isinstance(e.value, ConfigError) and message in str(e.value)
    assert holder.current is before
    assert holder.path.read_text() == GOOD
    assert holder.heard == []


def test_an_unwritable_folder_changes_nothing(holder, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(ServiceError, match="cannot write the policy file .*previous policy stays in force"):
            holder.replace(ENERGY, "SetPolicy")
    finally:
        tmp_path.chmod(0o755)
    assert holder.current.objective.value == "latency" and holder.path.read_text() == GOOD


def test_a_missing_folder_changes_nothing(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    h = PolicyHolder(path)
    h.load_initial()
    h.path = tmp_path / "gone" / "policy.yaml"
    with pytest.raises(ServiceError, match="cannot write the policy file .*gone/policy.yaml"):
        h.replace(ENERGY, "SetPolicy")
    assert h.current.objective.value == "latency"


def test_replace_keeps_the_files_permissions(holder):
    holder.path.chmod(0o640)
    holder.replace(ENERGY, "SetPolicy")
    assert holder.path.stat().st_mode & 0o777 == 0o640


def test_reload_of_a_broken_file_keeps_the_previous_policy(holder):
    holder.path.write_text("version: 1\nobjective: fast\n")
    assert holder.reload() is False
    assert holder.current.objective.value == "latency"
    assert "objective: must be one of" in holder.error
    assert holder.heard[-1][0] is None
    holder.path.write_text(ENERGY)
    assert holder.reload() is True and holder.error is None and holder.current.text == ENERGY
