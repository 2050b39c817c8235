"""Fixtures shared by the whole suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tinymodels import build_tiny_models  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Real .tflite files: {"float": tiny_16.tflite, "q": tiny_q_16.tflite}, 16x16x3 uint8 in, 10 classes."""
    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture
def repo_root() -> Path:
    return REPO
