"""Table 2.1 of the study (REFERENCE §1): the builder's cores have exactly its parameter counts, all 11 rows.

The cores are constructed with weights none in subprocesses (this process never imports TensorFlow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TABLE_2_1 = {
    ("inceptionv3", 75): 22_353_028,
    ("inceptionv3", 128): 23_925_892,
    ("resnet50", 32): 24_137_956,
    ("resnet50", 75): 28_332_260,
    ("resnet50", 128): 32_002_276,
    ("mobilenet", 32): 3_516_964,
    ("mobilenet", 75): 4_303_396,
    ("mobilenet", 128): 7_449_124,
    ("vgg16", 32): 14_871_716,
    ("vgg16", 75): 15_264_932,
    ("vgg16", 128): 16_837_796,
}

_COUNT = r"""
import json, sys
from edgeoffload_host.models.zoo import build_core, import_keras
_, keras = import_keras()
counts = []
for key, px in json.loads(sys.argv[1]):
    counts.append([key, px, build_core(key, px, classes=100, weights="none").count_params()])
    keras.backend.clear_session()
print(json.dumps(counts))
"""


@pytest.mark.slow
def test_cores_have_the_parameter_counts_of_table_2_1():
    rows = [list(row) for row in TABLE_2_1]
    halves = (rows[0::2], rows[1::2])  # two processes: most of the time is spent building layers in Python
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen([sys.executable, "-c", _COUNT, json.dumps(half)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for half in halves]
    counts = {}
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        counts |= {(key, px): n for key, px, n in json.loads(out.splitlines()[-1])}
    assert counts == TABLE_2_1
