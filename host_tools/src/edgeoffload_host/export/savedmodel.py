"""The float model's Keras twin as a TensorFlow SavedModel for Triton (``platform: tensorflow_savedmodel``).

Triton's TensorFlow backend names a SavedModel's tensors by the keys of its ``serving_default`` signature.
To advertise the same names as our endpoint (the .tflite tensor names, e.g. ``serving_default_image:0``), the
signature's keys are set to those names. TensorFlow does not accept ``:`` in a function's argument name, so
the input key is renamed in ``saved_model.pb`` after saving (a SignatureDef key is any string); the result is
then loaded the way Triton loads it (a session and the SignatureDef) and must give the .tflite's scores.
TensorFlow is imported only here.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeoffload.errors import ModelError
from edgeoffload_host.export.pbtxt import Tensor

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
MAX_ABS_DIFF = 1e-3  # float32 TFLite vs TensorFlow on the same weights


def _arg_name(name: str) -> str:
    """A valid TensorFlow argument name for a tensor name (``serving_default_image:0`` -> ``..._image_0``)."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return safe if safe[:1].isalpha() else f"x_{safe}"


def _save(keras_path: Path, tmp: Path, inp: Tensor, out: Tensor) -> str:
    from edgeoffload_host.models.zoo import import_keras

    tf, keras = import_keras()
    try:
        model = keras.models.load_model(str(keras_path), compile=False)
    except Exception as e:  # Keras raises many kinds for unreadable files
        raise ModelError(f"{keras_path}: cannot load the Keras model: {e}") from e
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"{keras_path}: {len(model.inputs)} inputs / {len(model.outputs)} outputs; "
                         "the SavedModel export handles models with one of each")
    arg = _arg_name(inp.name)
    dtype = tf.as_dtype(model.inputs[0].dtype)

    @tf.function(input_signature=[tf.TensorSpec(inp.dims, dtype, name=arg)])
    def serve(x: Any) -> dict[str, Any]:
        return {out.name: model(x, training=False)}

    tf.saved_model.save(model, str(tmp), signatures={SIGNATURE: serve})
    return arg


def _rename_input(saved: Path, old: str, new: str) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    pb = saved / "saved_model.pb"
    proto.ParseFromString(pb.read_bytes())
    for graph in proto.meta_graphs:
        inputs = graph.signature_def[SIGNATURE].inputs
        if old != new:
            inputs[new].CopyFrom(inputs[old])
            del inputs[old]
    pb.write_bytes(proto.SerializeToString())
    _refresh_fingerprint(saved)


def _refresh_fingerprint(saved: Path) -> None:
    """fingerprint.pb hashes saved_model.pb: write it again, or drop it (it is optional) if that fails."""
    try:
        from tensorflow.python.saved_model import fingerprinting_utils  # no public API for this

        fingerprinting_utils.write_fingerprint(str(saved))
    except Exception as e:  # a private module: any failure just means no fingerprint
        log.debug("cannot rewrite %s/fingerprint.pb (%s): removing it", saved, e)
        (saved / "fingerprint.pb").unlink(missing_ok=True)


def run_as_triton_does(saved: Path, inp: Tensor, out: Tensor, x: np.ndarray) -> np.ndarray:
    """Load with a session and run through the SignatureDef's keys (what Triton's TensorFlow backend does)."""
    import tensorflow as tf

    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(saved))
        signature = meta.signature_def[SIGNATURE]
        if set(signature.inputs) != {inp.name} or set(signature.outputs) != {out.name}:
            raise ModelError(f"{saved}: signature keys {sorted(signature.inputs)} -> {sorted(signature.outputs)}, "
                             f"expected [{inp.name!r}] -> [{out.name!r}]")
        return session.run(signature.outputs[out.name].name, {signature.inputs[inp.name].name: x})


def export_savedmodel(keras_path: Path, tflite_content: bytes, dest: Path, inp: Tensor, out: Tensor) -> None:
    """Write ``dest`` (``.../1/model.savedmodel``) and check it against the .tflite on one image."""
    from edgeoffload.backends.tflite import TfliteSession

    with tempfile.TemporaryDirectory(prefix=".savedmodel.", dir=dest.parent) as tmp_dir:
        tmp = Path(tmp_dir) / "model.savedmodel"
        arg = _save(keras_path, tmp, inp, out)
        _rename_input(tmp, arg, inp.name)
        x = np.random.default_rng(0).integers(0, 256, inp.dims).astype(np.uint8)
        got = run_as_triton_does(tmp, inp, out, x.astype(_numpy_dtype(inp)))
        want = TfliteSession(tflite_content, threads=1, name=keras_path.stem).run(x)
        diff = float(np.max(np.abs(np.asarray(got, np.float32) - want)))
        if got.shape != want.shape or diff > MAX_ABS_DIFF:
            raise ModelError(f"{keras_path}: the SavedModel's scores differ from {keras_path.stem}.tflite's "
                             f"(shape {got.shape} vs {want.shape}, max |diff| {diff:.2g}); rebuild the model")
        shutil.move(str(tmp), dest)
    log.debug("SavedModel %s matches the .tflite (max |diff| %.2g)", dest, diff)


def _numpy_dtype(t: Tensor) -> np.dtype:
    from edgeoffload.backends.oip_wire import DATATYPES

    return DATATYPES[t.datatype]
