"""The four study variants of MobileNet 32 (the session's `built` models): pruning and clustering measured by
the builder (manifest) and checked again here in the .tflite files themselves, int8 tensors in the Q
variants, manifests that verify with the daemon's loader, and a corrupted artifact that it refuses."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgeoffload.backends.modelfile import load_model_file, manifest_path_for
from edgeoffload.backends.tflite import import_interpreter_module
from edgeoffload.errors import ModelError
from edgeoffload_host.models.compress import check_clusters, check_sparsity, unique_per_channel

VARIANT_FILES = {"float": "mobilenet_32.tflite", "q": "mobilenet_q_32.tflite", "pq": "mobilenet_pq_32.tflite",
                 "pwq": "mobilenet_pwq_32.tflite"}
PRUNED_LAYERS = 16  # conv1, 13 pointwise convolutions, 2 dense; the 13 depthwise convolutions stay dense


def _weights(path) -> list[tuple[str, np.ndarray, int]]:
    """(op, int8 weights, quantized axis) of every CONV_2D and FULLY_CONNECTED op of a .tflite."""
    interpreter = import_interpreter_module().Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():  # no public API lists an op's weight tensor
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            tensor = tensors[op["inputs"][1]]
            axis = tensor["quantization_parameters"]["quantized_dimension"]
            found.append((op["op_name"], interpreter.get_tensor(tensor["index"]), axis))
    return found


def _measure_step(manifest) -> dict:
    return [m.params for m in manifest.method if m.step == "measure"][-1]


@pytest.mark.slow
def test_compressed_variants_record_their_methods_in_order(built):
    out, _ = built
    steps = {v: [m.step for m in load_model_file(out / f).manifest.method] for v, f in VARIANT_FILES.items()}
    shared = ["fine_tune", "recalibrate_batchnorm"]
    prune = ["prune", "fine_tune", "strip_pruning", "recalibrate_batchnorm", "measure"]
    cluster = ["cluster", "fine_tune", "strip_clustering", "recalibrate_batchnorm", "measure"]
    assert steps == {"float": [*shared, "convert"], "q": [*shared, "quantize"],
                     "pq": [*shared, *prune, "quantize"], "pwq": [*shared, *prune, *cluster, "quantize"]}
    pwq = load_model_file(out / VARIANT_FILES["pwq"]).manifest
    params = {m.step: m.params for m in pwq.method}  # the last of each name
    assert params["prune"] | {"layers": None, "which": None} == {
        "api": "tfmot.sparsity.keras.prune_low_magnitude", "schedule": "ConstantSparsity",
        "target_sparsity": 0.5, "begin_step": 1, "frequency": 100, "layers": None, "which": None}
    assert len(params["prune"]["layers"]) == PRUNED_LAYERS and "DepthwiseConv2D" in params["prune"]["which"]
    assert {k: params["cluster"][k] for k in ("number_of_clusters", "centroid_initialization",
                                              "preserve_sparsity")} == {
        "number_of_clusters": 16, "centroid_initialization": "LINEAR", "preserve_sparsity": True}
    assert params["fine_tune"]["steps"] == 5 and params["quantize"]["representative_split"] == "train"


@pytest.mark.slow
def test_pruned_kernels_are_half_zeros_in_the_manifest_and_in_the_file(built):
    out, _ = built
    for variant in ("pq", "pwq"):
        manifest = load_model_file(out / VARIANT_FILES[variant]).manifest
        sparsity = _measure_step(manifest)["sparsity"]
        assert sparsity["layers"] == PRUNED_LAYERS and sparsity["per_layer"]["min"] >= 0.49
        assert sparsity["zeros"] >= 0.49 and "stripped Keras kernels" in sparsity["measured_on"]
        weights = _weights(out / VARIANT_FILES[variant])
        assert len(weights) == PRUNED_LAYERS
        assert min(float(np.mean(w == 0)) for _, w, _ in weights) >= 0.49  # BN folding and int8 keep zeros
    unpruned = _weights(out / VARIANT_FILES["q"])
    assert max(float(np.mean(w == 0)) for _, w, _ in unpruned) < 0.1


@pytest.mark.slow
def test_clustered_kernels_hold_at_most_16_values_per_output_channel(built):
    out, _ = built
    manifest = load_model_file(out / VARIANT_FILES["pwq"]).manifest
    uniques = _measure_step(manifest)["unique_values_per_output_channel"]
    assert uniques["layers"] == PRUNED_LAYERS and uniques["max"] <= 16 and 2 <= uniques["mean"] <= 16
    for _, w, axis in _weights(out / VARIANT_FILES["pwq"]):
        assert unique_per_channel(np.moveaxis(w, axis, -1)).max() <= 16
    pq_counts = [unique_per_channel(np.moveaxis(w, a, -1)).max() for _, w, a in _weights(out / VARIANT_FILES["pq"])]
    assert max(pq_counts) > 16  # only clustering limits the values


@pytest.mark.slow
def test_q_variants_are_int8_and_record_their_tensor_types(built):
    out, _ = built
    baseline = load_model_file(out / VARIANT_FILES["float"]).manifest.evaluation.float_accuracy
    for variant in ("q", "pq", "pwq"):
        manifest = load_model_file(out / VARIANT_FILES[variant]).manifest
        types = manifest.method[-1].params["tensor_types"]
        assert types["int8"] > 50 and "float32" not in types and types["uint8"] == 2  # uint8 in and out
        assert all(w.dtype == np.int8 for _, w, _ in _weights(out / VARIANT_FILES[variant]))
        assert manifest.evaluation.float_accuracy == baseline and manifest.evaluation.n == 359
    float_types = load_model_file(out / VARIANT_FILES["float"]).manifest.method[-1].params["tensor_types"]
    assert "int8" not in float_types and float_types["float32"] > 50


@pytest.mark.slow
def test_a_corrupted_artifact_is_refused_by_the_daemon_loader(built, tmp_path):
    out, _ = built
    for file in VARIANT_FILES.values():
        assert load_model_file(out / file).sha256 == load_model_file(out / file).manifest.sha256
    copy = tmp_path / VARIANT_FILES["pwq"]
    shutil.copy(out / VARIANT_FILES["pwq"], copy)
    shutil.copy(manifest_path_for(out / VARIANT_FILES["pwq"]), manifest_path_for(copy))
    content = bytearray(copy.read_bytes())
    content[len(content) // 2] ^= 0xFF
    copy.write_bytes(bytes(content))
    with pytest.raises(ModelError, match=rf"^{copy}: sha256 mismatch: manifest {manifest_path_for(copy)} expects "
                                         r"[0-9a-f]{64}, the file has [0-9a-f]{64}; the file is corrupted"):
        load_model_file(copy)


def test_unique_values_are_counted_per_output_channel():
    kernel = np.zeros((3, 3, 2, 4), np.float32)  # [h, w, in, out]
    kernel[..., 1] = np.arange(18).reshape(3, 3, 2)
    kernel[0, 0, 0, 2] = 5.0
    assert unique_per_channel(kernel).tolist() == [1, 18, 2, 1]
    assert unique_per_channel(np.array([[1.0, 2.0], [1.0, 3.0]])).tolist() == [1, 2]


def test_measurements_that_miss_the_target_are_errors():
    summary = {"zeros": 0.3, "per_layer": {"min": 0.0, "mean": 0.3}}
    with pytest.raises(ModelError, match=r"^Mobilenet P 32: a pruned kernel has only 0.0% zeros, target 50%; "
                                         r"pruning did not take effect"):
        check_sparsity(summary, 0.5, "Mobilenet P 32")
    check_sparsity({"zeros": 0.495, "per_layer": {"min": 0.495, "mean": 0.5}}, 0.5, "ok")
    with pytest.raises(ModelError, match=r"a clustered kernel channel holds 17 distinct values, more than the 16"):
        check_clusters({"max": 17}, 16, "Mobilenet PW 32")
