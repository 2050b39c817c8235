"""Manifest format and the verified model loader, on real .tflite files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from edgeoffload.backends.modelfile import (
    Evaluation,
    Manifest,
    MethodStep,
    TensorInfo,
    Tensors,
    load_model_file,
    manifest_path_for,
    sha256_file,
    write_manifest,
    write_new_file,
)
from edgeoffload.errors import ModelError


def _manifest(path: Path, **changes) -> Manifest:
    fields = dict(
        name="Tiny Q 16",
        file=path.name,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        gzip_size_bytes=100,
        format="tflite",
        parameters=314,
        depth=3,
        source={"architecture": "tiny", "dataset": {"name": "random", "sha256": "0" * 64}},
        method=(MethodStep("fine_tune", {"epochs": 1}), MethodStep("quantize", {"io_type": "uint8"})),
        seed=0,
        versions={"tensorflow": "2.21.0"},
        tensors=Tensors(
            inputs=(TensorInfo("in", (1, 16, 16, 3), "uint8", {"scale": 1.0, "zero_point": 0}),),
            outputs=(TensorInfo("out", (1, 10), "uint8", {"scale": 0.00390625, "zero_point": 0}),),
        ),
        evaluation=Evaluation(accuracy=0.41, float_accuracy=0.43, split="held-out", n=360),
        created_utc="2026-01-01T00:00:00Z",
    )
    fields.update(changes)
    return Manifest(**fields)


@pytest.fixture
def model(tmp_path, tiny_models) -> Path:
    """A private copy of the tiny int8 model (tests modify files next to it)."""
    dst = tmp_path / "tiny_q_16.tflite"
    shutil.copyfile(tiny_models["q"], dst)
    return dst


def test_sha256_file_matches_hashlib(model):
    assert sha256_file(model) == hashlib.sha256(model.read_bytes()).hexdigest()


def test_manifest_round_trip(model):
    manifest = _manifest(model)
    path = write_manifest(model, manifest)
    assert path == model.with_name("tiny_q_16.tflite.manifest.json") == manifest_path_for(model)
    data = json.loads(path.read_text())
    assert data["schema"] == 1
    assert data["method"] == [{"step": "fine_tune", "params": {"epochs": 1}},
                              {"step": "quantize", "params": {"io_type": "uint8"}}]
    assert data["tensors"]["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert Manifest.read(path) == manifest


def test_manifest_round_trip_without_evaluation_or_quantization(model):
    manifest = _manifest(model, evaluation=None, tensors=Tensors((TensorInfo("in", (1, 2), "float32"),), ()))
    assert Manifest.read(write_manifest(model, manifest)) == manifest


def test_write_manifest_refuses_to_overwrite(model):
    write_manifest(model, _manifest(model))
    with pytest.raises(ModelError, match=r"tiny_q_16.tflite.manifest.json: already exists; artifacts are never"):
        write_manifest(model, _manifest(model, name="Other"))
    assert Manifest.read(manifest_path_for(model)).name == "Tiny Q 16"


def test_write_manifest_refuses_a_hash_that_does_not_match(model):
    with pytest.raises(ModelError, match=r"manifest sha256 f{64} does not match the file's [0-9a-f]{64}"):
        write_manifest(model, _manifest(model, sha256="f" * 64))
    assert not manifest_path_for(model).exists()


def test_write_new_file_refuses_to_overwrite(tmp_path):
    write_new_file(tmp_path / "a.tflite", b"one")
    with pytest.raises(ModelError, match="a.tflite: already exists"):
        write_new_file(tmp_path / "a.tflite", b"two")
    assert (tmp_path / "a.tflite").read_bytes() == b"one"
    assert [p.name for p in tmp_path.iterdir()] == ["a.tflite"]  # no temporary file left behind


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", r"m.json: not valid JSON \(Expecting property name"),
    ('{"schema": 1}', r"m.json: created_utc: missing key; rebuild it with `edgeoffload-host build --force` or fix"),
])
def test_manifest_read_rejects_bad_files(tmp_path, text, message):
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(ModelError, match=message):
        Manifest.read(tmp_path / "m.json")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("sha256"), r"m.json: sha256: missing key"),
    (lambda d: d.update(extra=1), r"m.json: extra: unknown key"),
    (lambda d: d.update(schema=2), r"m.json: schema: unsupported schema 2"),
    (lambda d: d.update(parameters="many"), r"m.json: parameters: expected int, got str"),
    (lambda d: d.update(parameters=True), r"m.json: parameters: expected int, got bool"),
    (lambda d: d["method"][1].pop("params"), r"m.json: method\[1\].params: missing key"),
    (lambda d: d["tensors"]["inputs"][0]["shape"].__setitem__(2, 1.5),
     r"m.json: tensors.inputs\[0\].shape\[2\]: expected int, got float"),
    (lambda d: d["tensors"]["outputs"][0]["quantization"].pop("scale"),
     r"m.json: tensors.outputs\[0\].quantization.scale: missing key"),
    (lambda d: d["versions"].update(numpy=2), r"m.json: versions.numpy: expected str, got int"),
    (lambda d: d["evaluation"].update(n=None), r"m.json: evaluation.n: expected int, got NoneType"),
])
def test_manifest_read_names_the_bad_key(tmp_path, model, edit, message):
    data = _manifest(model).to_dict()
    edit(data)
    (tmp_path / "m.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message):
        Manifest.read(tmp_path / "m.json")


def test_load_verifies_against_the_manifest_beside_the_file(model):
    write_manifest(model, _manifest(model))
    loaded = load_model_file(model)
    assert loaded.content == model.read_bytes()
    assert loaded.sha256 == sha256_file(model)
    assert loaded.manifest is not None and loaded.manifest.name == "Tiny Q 16"
    assert loaded.name == "Tiny Q 16"


def test_load_without_manifest_uses_the_file_stem(model):
    loaded = load_model_file(model, expected_sha256=sha256_file(model).upper())
    assert loaded.manifest is None and loaded.name == "tiny_q_16"


def test_a_flipped_byte_is_refused_with_both_hashes(model):
    manifest = _manifest(model)
    write_manifest(model, manifest)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ModelError) as err:
        load_model_file(model)
    assert str(err.value) == (
        f"{model}: sha256 mismatch: manifest {manifest_path_for(model)} expects {manifest.sha256}, the file has "
        f"{actual}; the file is corrupted or was changed after it was built: "
        "rebuild it with `edgeoffload-host build --force` or fix the manifest")


def test_expected_sha256_mismatch_is_refused(model):
    with pytest.raises(ModelError, match=rf"tiny_q_16.tflite: sha256 mismatch: expected {'a' * 64}, the file has "
                                         rf"{sha256_file(model)}; the file is corrupted or not the one configured"):
        load_model_file(model, expected_sha256="a" * 64)


def test_explicit_manifest_path_must_exist(model, tmp_path):
    with pytest.raises(ModelError, match=r"nowhere.json: cannot read manifest: No such file"):
        load_model_file(model, manifest_path=tmp_path / "nowhere.json")


def test_explicit_manifest_path_is_used(model, tmp_path):
    other = tmp_path / "sub"
    other.mkdir()
    twin = other / model.name
    shutil.copyfile(model, twin)
    path = write_manifest(twin, _manifest(twin, name="Elsewhere"))
    assert load_model_file(model, manifest_path=path).name == "Elsewhere"


@pytest.mark.parametrize(("content", "message"), [
    (None, r"missing.tflite: model file not found; build it with `edgeoffload-host build`"),
    (b"", r"missing.tflite: model file is empty; rebuild it"),
    (b"PK\x03\x04 this is a zip, not a model",
     r"missing.tflite: not a TFLite model \(no 'TFL3' identifier at bytes 4..8\)"),
])
def test_bad_files_are_refused(tmp_path, content, message):
    path = tmp_path / "missing.tflite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load_model_file(path)


def test_oversize_and_directory_are_refused(model, tmp_path):
    with pytest.raises(ModelError, match=r"tiny_q_16.tflite: \d+ bytes is more than the limit of 100 bytes"):
        load_model_file(model, max_bytes=100)
    with pytest.raises(ModelError, match=r"is a directory, not a model file"):
        load_model_file(tmp_path)
