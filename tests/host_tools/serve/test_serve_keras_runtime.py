"""The endpoint's TensorFlow (GPU) runtime, run here on the CPU in a subprocess: same answers as TFLite.

Where TensorFlow sees a GPU the same code runs there; only device placement is not exercised here.
"""

import json
import subprocess
import sys

import pytest

SCRIPT = r'''
import json, sys
import numpy as np
from pathlib import Path
from edgeoffload_host.serve.runtime import KerasGpuRuntime, TfliteRuntime
tflite = Path(sys.argv[1])
cpu = TfliteRuntime(tflite, workers=1, threads=1)
gpu = KerasGpuRuntime(tflite.with_suffix(".keras"), cpu)
x = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
(name_c, out_c), = cpu.run([x])[0]
(name_g, out_g), = gpu.run([x])[0]
print(json.dumps({"platform": gpu.platform, "names": [name_c, name_g], "max_diff": float(np.abs(out_c - out_g).max()),
                  "dtype": str(out_g.dtype), "outputs": [o.datatype for o in gpu.outputs]}))
'''


@pytest.mark.slow
def test_keras_twin_gives_the_tflite_answers(tiny_models):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_models["float"])], capture_output=True, text=True,
                          timeout=180, env={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
                                            "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["platform"] == "tensorflow_gpu"
    assert result["names"][0] == result["names"][1]
    assert result["max_diff"] < 1e-5
    assert result["outputs"] == ["FP32"]
