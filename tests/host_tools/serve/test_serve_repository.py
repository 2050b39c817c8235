"""The endpoint's model repository and runtimes, on the real tiny models."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgeoffload.errors import ModelError, RequestError
from edgeoffload_host.serve import repository as repo_module
from edgeoffload_host.serve.repository import ModelRepository
from edgeoffload_host.serve.runtime import TfliteRuntime
from tinymodels import run_directly


@pytest.fixture
def models_dir(tiny_models, tmp_path) -> Path:
    for path in tiny_models.values():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path




def test_scan_serves_every_tflite_by_stem_with_metadata(models_dir):
    repository = ModelRepository.scan(models_dir, workers=2, threads=1)
    assert repository.names == ["tiny_16", "tiny_q_16"]
    meta = repository.get("tiny_16").metadata()
    assert meta["name"] == "tiny_16" and meta["versions"] == ["1"] and meta["platform"] == "tflite_cpu"
    assert [(t["datatype"], t["shape"]) for t in meta["inputs"]] == [("UINT8", [1, 16, 16, 3])]
    assert [(t["datatype"], t["shape"]) for t in meta["outputs"]] == [("FP32", [1, 10])]
    q_meta = repository.get("tiny_q_16").metadata()
    assert [(t["datatype"], t["shape"]) for t in q_meta["outputs"]] == [("UINT8", [1, 10])]
    assert repository.get("nope") is None
    repository.close()


def test_manifest_hash_is_checked_and_a_mismatch_refuses_only_that_model(models_dir, caplog):
    good = models_dir / "tiny_16.tflite"
    (models_dir / "tiny_16.tflite.manifest.json").write_text(
        json.dumps({"sha256": hashlib.sha256(good.read_bytes()).hexdigest(), "source": "test"}))
    (models_dir / "tiny_q_16.tflite.manifest.json").write_text(json.dumps({"sha256": "0" * 64}))
    with caplog.at_level(logging.ERROR):
        repository = ModelRepository.scan(models_dir, workers=1)
    assert repository.names == ["tiny_16"]
    assert "does not match its manifest" in repository.refused["tiny_q_16.tflite"]
    assert "not serving tiny_q_16.tflite" in caplog.text and "0000000000" in caplog.text


def test_a_file_that_is_not_a_model_is_skipped_with_its_name_logged(models_dir, caplog):
    (models_dir / "broken.tflite").write_bytes(b"this is not a flatbuffer" * 10)
    (models_dir / "notes.txt").write_text("not a model either, and not *.tflite")
    with caplog.at_level(logging.ERROR):
        repository = ModelRepository.scan(models_dir, workers=1)
    assert repository.names == ["tiny_16", "tiny_q_16"]
    assert "not serving broken.tflite" in caplog.text and "not a loadable TFLite model" in caplog.text


def test_a_missing_directory_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match=f"models directory {tmp_path / 'nope'} does not exist"):
        ModelRepository.scan(tmp_path / "nope")


def test_cpu_path_never_imports_tensorflow(models_dir, monkeypatch):
    if "tensorflow" in sys.modules:
        pytest.skip("something else in this process imported tensorflow already")
    asked = []
    monkeypatch.setattr(repo_module, "_tensorflow_gpu_available", lambda: asked.append(1) or False)
    ModelRepository.scan(models_dir, workers=1).close()
    assert asked == [] and "tensorflow" not in sys.modules
    (models_dir / "tiny_16.keras").write_bytes(b"placeholder")  # a Keras twin: now the GPU is asked about
    repository = ModelRepository.scan(models_dir, workers=1)
    assert asked == [1] and repository.get("tiny_16").runtime.platform == "tflite_cpu"


def test_runtime_matches_the_interpreter_under_concurrency(tiny_models):
    runtime = TfliteRuntime(tiny_models["q"], workers=3, threads=1)
    xs = np.random.default_rng(1).integers(0, 256, (24, 1, 16, 16, 3), dtype=np.uint8)
    expected = [run_directly(tiny_models["q"], x) for x in xs]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda x: runtime.run([x]), xs))
    for (outputs, compute_ms), want in zip(results, expected):
        np.testing.assert_array_equal(outputs[0][1], want)
        assert compute_ms > 0


@pytest.mark.parametrize(("inputs", "message"), [
    ([("other", np.zeros((1, 16, 16, 3), np.uint8))], "input 'other' is not an input of model 'tiny_16'"),
    ([], "input '{name}' of model 'tiny_16' is missing"),
    ([("{name}", np.zeros((1, 16, 16, 3), np.float32))],
     "input '{name}': datatype FP32 but model 'tiny_16' expects UINT8"),
    ([("{name}", np.zeros((1, 16, 16), np.uint8))],
     "input '{name}': shape [1, 16, 16] but model 'tiny_16' expects [1, 16, 16, 3]"),
    ([("{name}", np.zeros((2, 16, 16, 3), np.uint8))], "input '{name}': batch size 2 is not supported (1..1)"),
])
def test_inputs_are_checked_against_the_metadata(models_dir, inputs, message):
    model = ModelRepository.scan(models_dir, workers=1).get("tiny_16")
    name = model.runtime.inputs[0].name
    inputs = [(n.format(name=name), a) for n, a in inputs]
    with pytest.raises(RequestError) as info:
        model.order_inputs(inputs)
    assert message.format(name=name) in str(info.value)
