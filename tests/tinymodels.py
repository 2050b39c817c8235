"""Tiny but real TFLite models for tests: built with TensorFlow once per session, same I/O as the study's models.

Both take a uint8 image (the request tensor); the float model casts inside the graph, the int8 model is
full-integer quantized with uint8 I/O. Built in a subprocess so the test process never imports TensorFlow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_BUILD = r'''
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, tf_keras as keras
out = sys.argv[1]
size, classes = int(sys.argv[2]), int(sys.argv[3])
keras.utils.set_random_seed(0)
inp = keras.Input((size, size, 3), dtype="float32")
x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
x = keras.layers.Conv2D(8, 3, activation="relu")(x)
x = keras.layers.GlobalAveragePooling2D()(x)
core = keras.Model(inp, keras.layers.Dense(classes, activation="softmax")(x))
u8 = keras.Input((size, size, 3), dtype="uint8")
wrapped = keras.Model(u8, core(tf.cast(u8, tf.float32)))
open(os.path.join(out, f"tiny_{size}.tflite"), "wb").write(tf.lite.TFLiteConverter.from_keras_model(wrapped).convert())
wrapped.save(os.path.join(out, f"tiny_{size}.keras"))  # the GPU path of the endpoint serves this twin
rng = np.random.default_rng(0)
def rep():
    for _ in range(16):
        yield [rng.integers(0, 256, (1, size, size, 3)).astype(np.float32)]
conv = tf.lite.TFLiteConverter.from_keras_model(core)
conv.optimizations = [tf.lite.Optimize.DEFAULT]
conv.representative_dataset = rep
conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
conv.inference_input_type = tf.uint8
conv.inference_output_type = tf.uint8
open(os.path.join(out, f"tiny_q_{size}.tflite"), "wb").write(conv.convert())
'''


def build_tiny_models(out: Path, size: int = 16, classes: int = 10) -> dict[str, Path]:
    """Write tiny_<size>.tflite (float, uint8 in), its Keras twin tiny_<size>.keras, and tiny_q_<size>.tflite
    (int8, uint8 I/O) into out."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"float": out / f"tiny_{size}.tflite", "q": out / f"tiny_q_{size}.tflite"}
    if not all(p.exists() for p in paths.values()) or not (out / f"tiny_{size}.keras").exists():
        # EDGEOFFLOAD_TF_PYTHON: an interpreter with TensorFlow, for running the suite on one without it.
        python = os.environ.get("EDGEOFFLOAD_TF_PYTHON", sys.executable)
        subprocess.run([python, "-c", _BUILD, str(out), str(size), str(classes)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return paths


def run_directly(path: Path, x):
    """The model run by a bare interpreter, as the reference our own code must match."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def reference_scores(path: Path, x):
    """The bare interpreter's answer as the daemon returns it: float32 scores, an integer output dequantized
    ((raw - zero_point) * scale)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    out = run_directly(path, x)
    if out.dtype == np.float32:
        return out
    scale, zero_point = Interpreter(model_path=str(path)).get_output_details()[0]["quantization"]
    return (out.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
