"""Fixtures of the NPU tests: the fake VX delegate library (compiled from C once per module) and the check
that no probe child outlives its test."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.delegates.build import build_fake_delegate, child_pids


@pytest.fixture(scope="module")
def fake_delegate(tmp_path_factory) -> Path:
    return build_fake_delegate(tmp_path_factory.mktemp("delegate"))


@pytest.fixture
def no_leftover_children():
    before = child_pids()
    yield
    assert child_pids() - before == set(), "a probe child outlived its test (not killed or not reaped)"
