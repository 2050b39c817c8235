"""edgeoffload-host export-triton: a Triton model repository whose configs, parsed back, name exactly the tensors
our endpoint advertises for the same models; hash-verified copies; refusals. Triton itself is not run here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_manifests import corrupt, run_host, tiny_models_with_manifests

from edgeoffload.backends.modelfile import sha256_file
from edgeoffload_host.export.pbtxt import Ident, PbtxtError, Tensor, check, parse, tensors_of
from edgeoffload_host.serve.repository import ServedModel
from edgeoffload_host.serve.runtime import TfliteRuntime


@pytest.fixture
def models(tiny_models, tmp_path):
    return tiny_models_with_manifests(tiny_models, tmp_path / "models")


def _endpoint_metadata(path: Path) -> dict:
    """What `edgeoffload-host serve` answers to GET /v2/models/<name> for this file (its CPU path; the GPU path
    advertises the same names and shapes, and `load_model` would import TensorFlow to look for a GPU)."""
    served = ServedModel(path.stem, path, TfliteRuntime(path, workers=1, threads=1))
    try:
        return served.metadata()
    finally:
        served.runtime.close()


def _as_tensors(entries: list[dict]) -> tuple[Tensor, ...]:
    return tuple(Tensor(e["name"], e["datatype"], tuple(e["shape"])) for e in entries)


def test_export_writes_configs_matching_our_endpoint(models, tmp_path, capsys):
    repo = tmp_path / "triton"
    assert run_host(["export-triton", str(models), "--out", str(repo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"exported tiny_16 \(Tiny 16\) -> {repo}/tiny_16/1/model.tflite \(0\.0 MB, backend "
                        r"armnn_tflite, sha256 verified; .* UINT8\[1, 16, 16, 3\], .* FP32\[1, 10\]; config checked, "
                        r"\d+\.\d s\)", lines[0]), lines[0]
    assert lines[1].startswith(f"exported tiny_q_16 (Tiny Q 16) -> {repo}/tiny_q_16/1/model.tflite")
    assert lines[-1] == f"next: tritonserver --model-repository={repo.resolve()}"
    assert sorted(p.name for p in repo.iterdir()) == ["README", "tiny_16", "tiny_q_16"]
    assert f"tritonserver --model-repository={repo.resolve()}" in (repo / "README").read_text()
    for stem in ("tiny_16", "tiny_q_16"):
        assert sha256_file(repo / stem / "1" / "model.tflite") == sha256_file(models / f"{stem}.tflite")
        parsed = parse((repo / stem / "config.pbtxt").read_text())
        meta = _endpoint_metadata(models / f"{stem}.tflite")
        assert parsed["name"] == meta["name"] == stem  # the daemon asks Triton for the same model names
        assert (parsed["backend"], parsed["max_batch_size"]) == ("armnn_tflite", 0)
        assert parsed["instance_group"] == [{"count": 1, "kind": Ident("KIND_CPU")}]
        assert tensors_of(parsed, "input") == _as_tensors(meta["inputs"])
        assert tensors_of(parsed, "output") == _as_tensors(meta["outputs"])
    q_out = tensors_of(parse((repo / "tiny_q_16" / "config.pbtxt").read_text()), "output")[0]
    assert (q_out.datatype, q_out.dims) == ("UINT8", (1, 10))  # int8 model, uint8 I/O: raw scores, as we serve


def test_export_refuses_a_corrupted_model_and_writes_nothing(models, tmp_path, capsys):
    corrupt(models / "tiny_q_16.tflite")
    repo = tmp_path / "triton"
    assert run_host(["export-triton", str(models), "--out", str(repo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"edgeoffload-host: error: {models}/tiny_q_16.tflite: sha256 mismatch: "
                          f"manifest {models}/tiny_q_16.tflite.manifest.json expects "), err
    assert not repo.exists()


def test_export_never_replaces_without_force(models, tmp_path, capsys):
    repo = tmp_path / "triton"
    (repo / "tiny_16").mkdir(parents=True)
    assert run_host(["export-triton", str(models), "--out", str(repo)]) == 2
    assert capsys.readouterr().err.strip() == (f"edgeoffload-host: error: {repo}/tiny_16 already "
                                               "exists; pass --force to replace it or --out another folder")
    assert run_host(["export-triton", str(models), "--out", str(repo), "--force", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in document["models"]] == ["tiny_16", "tiny_q_16"]
    assert (repo / "tiny_16" / "config.pbtxt").is_file()


@pytest.mark.parametrize("argv, message", [
    (["{tmp}/none", "--out", "{tmp}/r"], "{tmp}/none: not a directory; pass the folder"),
    (["{tmp}/empty", "--out", "{tmp}/r"], "{tmp}/empty: no .tflite files in this directory"),
    (["{models}", "--out", "{models}/tiny_16.tflite"], "--out: {models}/tiny_16.tflite exists and is not a directory"),
])
def test_export_bad_inputs_are_one_line_and_exit_2(models, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    fill = {"tmp": tmp_path, "models": models}
    assert run_host(["export-triton", *(a.format(**fill) for a in argv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeoffload-host: error: " + message.format(**fill))


def test_the_parser_reads_tritons_text_format_and_check_names_mismatches():
    text = """# a comment
name: "m"
platform: "tensorflow_savedmodel"
max_batch_size: 0
input [ { name: "in:0", data_type: TYPE_UINT8, dims: [ 1, 8, 8, 3 ] } ]
output { name: "a" data_type: TYPE_FP32 dims: [ 1, 10 ] }
output { name: 'b' data_type: TYPE_INT64 dims: [ -1 ] }
optimization { execution_accelerators { cpu_execution_accelerator : [ { name : "xnnpack" } ] } }
"""
    parsed = parse(text)
    assert parsed["optimization"] == {"execution_accelerators": {"cpu_execution_accelerator": [{"name": "xnnpack"}]}}
    assert tensors_of(parsed, "output") == (Tensor("a", "FP32", (1, 10)), Tensor("b", "INT64", (-1,)))
    inputs = (Tensor("in:0", "UINT8", (1, 8, 8, 3)),)
    assert check(text, "m", inputs, tensors_of(parsed, "output")) == []
    assert check(text, "m", (Tensor("in:0", "UINT8", (1, 9, 9, 3)),), tensors_of(parsed, "output")) == [
        "input [('in:0', 'UINT8', [1, 8, 8, 3])] but the model has [('in:0', 'UINT8', [1, 9, 9, 3])]"]
    assert check('name: "m" input [ {', "m", inputs, ()) == ["does not parse: unexpected end of text, expected '}'"]
    with pytest.raises(PbtxtError, match="line 1: unexpected '@'"):
        parse("name: @")


_SAVEDMODEL_CHECK = r"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tiny_manifests import run_host
rc = run_host(["export-triton", sys.argv[2], "--out", sys.argv[3], "--format", "savedmodel"])
import tensorflow as tf
with tf.compat.v1.Session(graph=tf.Graph()) as s:
    meta = tf.compat.v1.saved_model.loader.load(s, ["serve"], str(Path(sys.argv[3]) / "tiny_16/1/model.savedmodel"))
    sig = meta.signature_def["serving_default"]
    print(json.dumps({"rc": rc, "inputs": sorted(sig.inputs), "outputs": sorted(sig.outputs)}))
"""


@pytest.mark.slow
def test_savedmodel_export_keeps_the_endpoints_tensor_names(models, tmp_path):
    repo = tmp_path / "triton"
    done = subprocess.run([sys.executable, "-c", _SAVEDMODEL_CHECK, str(Path(__file__).parent), str(models),
                           str(repo)], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "exported tiny_16 (Tiny 16) -> " in done.stdout and "scores match the .tflite" in done.stdout
    meta = _endpoint_metadata(models / "tiny_16.tflite")
    assert result == {"rc": 0, "inputs": [meta["inputs"][0]["name"]], "outputs": [meta["outputs"][0]["name"]]}
    parsed = parse((repo / "tiny_16" / "config.pbtxt").read_text())
    assert parsed["platform"] == "tensorflow_savedmodel" and "backend" not in parsed
    assert tensors_of(parsed, "input") == _as_tensors(meta["inputs"])
    assert tensors_of(parsed, "output") == _as_tensors(meta["outputs"])
    assert (repo / "tiny_q_16" / "1" / "model.tflite").is_file()  # no Keras twin: stays tflite
