"""Fixtures shared by the whole suite."""

from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tinymodels import build_tiny_models  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# pytest-timeout (pytest.ini: 300 s) interrupts a slow test from Python; a test stuck where Python never runs
# again (a deadlock on the GIL inside a C library) is ended here instead: faulthandler's own thread prints
# every thread's stack and exits the run, so CI fails in minutes, saying where, instead of hanging.
HARD_TIMEOUT_S = 420
_watchdog_file = None


def pytest_configure(config) -> None:
    global _watchdog_file
    _watchdog_file = os.fdopen(os.dup(sys.__stderr__.fileno()), "w")  # capture replaces fd 2 during tests


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _watchdog_file is not None:
        faulthandler.dump_traceback_later(HARD_TIMEOUT_S, exit=True, file=_watchdog_file)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Real .tflite files: {"float": tiny_16.tflite, "q": tiny_q_16.tflite}, 16x16x3 uint8 in, 10 classes."""
    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture
def repo_root() -> Path:
    return REPO
