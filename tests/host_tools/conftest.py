"""Fixtures for the host tools' tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_RUN_COMMAND = r"""
import argparse, sys
from edgeoffload_host.models import BuildCommand
parser = argparse.ArgumentParser(prog="edgeoffload-host build")
BuildCommand().add_arguments(parser)
sys.exit(BuildCommand().run(parser.parse_args(sys.argv[1:])))
"""


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Path, list[str]]:
    """MobileNet 32 in all four variants (float, q, pq, pwq), weights none, digits, short epochs (5 steps
    each for fine-tuning, pruning and clustering), through the command in a subprocess (the test process
    never imports TensorFlow). Shared by the build and compression tests and the demo test (which needs
    mobilenet_32.tflite and mobilenet_q_32.tflite)."""
    out = tmp_path_factory.mktemp("models")
    argv = ["--out", str(out), "--weights", "none", "--variants", "float,q,pq,pwq", "--epochs", "1",
            "--steps-per-epoch", "5", "--prune-epochs", "1", "--cluster-epochs", "1", "--batch-size", "16",
            "--seed", "0"]
    done = subprocess.run([sys.executable, "-c", _RUN_COMMAND, *argv], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout.splitlines()
