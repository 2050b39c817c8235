"""Fixtures for the sysfs readers: a fresh copy of a fixture tree per test, a clock the test moves, and a
way to read a file as a process that file permissions apply to (root ignores chmod)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sysfs"


@pytest.fixture
def sysfs_tree(tmp_path) -> Callable[[str], Path]:
    """`sysfs_tree("ina3221")`: a copy of tests/fixtures/sysfs/ina3221 that the test may change."""

    def copy(name: str) -> Path:
        root = tmp_path / name
        shutil.copytree(FIXTURES / name, root, symlinks=True)
        return root

    return copy


class ManualClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, t_s: float = 100.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s

    def advance(self, dt_s: float) -> None:
        self.t_s += dt_s


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def run_unprivileged() -> Callable[[str], str]:
    """Run Python `code` in a child that file permissions apply to and return its stdout. As root the child
    keeps uid 0 but loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (setpriv), so a mode-000 file is denied."""

    def run(code: str) -> str:
        command = [sys.executable, "-c", code]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv (util-linux): cannot make a file unreadable")
            command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    return run
