"""The default files shipped in conf/ are valid (globbed, so new ones are covered)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from edgeoffload.config import DaemonConfig, Policy, check_files, load_config, load_policy

CONF = Path(__file__).resolve().parents[3] / "conf"
CONF_FILES = sorted(CONF.rglob("*.yaml"))
POLICIES = sorted((CONF / "policies").glob("*.yaml"))


def test_conf_has_the_defaults():
    names = {p.relative_to(CONF).as_posix() for p in CONF_FILES}
    assert {"edgeoffloadd.yaml", "policies/policy.yaml"} <= names


@pytest.mark.parametrize("path", CONF_FILES, ids=lambda p: p.relative_to(CONF).as_posix())
def test_conf_file_is_valid(path):
    out, err = io.StringIO(), io.StringIO()
    assert check_files([path], out=out, err=err) == 0, err.getvalue()
    assert out.getvalue().startswith(f"{path}: ok (")


def test_default_daemon_config_loads():
    config = load_config(CONF / "edgeoffloadd.yaml")
    assert isinstance(config, DaemonConfig)
    assert config.policy_file == Path("/etc/edgeoffload/policy.yaml")
    assert [t.name for t in config.targets] == ["cpu1", "cpu4", "npu"]


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policy_loads(path):
    policy = load_policy(path)
    assert isinstance(policy, Policy)
    assert policy.source == str(path) and len(policy.digest) == 12
