"""edgeoffload-host evaluate: real tiny models, verified, scored on the builder's digits split, timed per thread
count; one line per model; one-line errors and exit 2 for bad inputs."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from tiny_manifests import corrupt, run_host, tiny_models_with_manifests

from edgeoffload.backends.tflite import import_interpreter_module
from edgeoffload_host.evaluate import read_results
from edgeoffload_host.models.data import load_dataset


@pytest.fixture
def models(tiny_models, tmp_path):
    return tiny_models_with_manifests(tiny_models, tmp_path / "models")


def _direct_accuracy(path, images, labels) -> float:
    """The reference: a bare interpreter, uint8 images as they are (scale 1, zero point 0 inputs)."""
    interpreter = import_interpreter_module().Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    hits = 0
    for x, y in zip(images, labels, strict=True):
        interpreter.set_tensor(inp, x[np.newaxis])
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_tensor(out)) == y)
    return hits / len(labels)


def test_evaluate_writes_one_line_per_model_and_the_results(models, capsys):
    rc = run_host(["evaluate", str(models), "--threads", "1,2", "--warmup", "2", "--runs", "5"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert re.fullmatch(r"loaded scikit-learn digits: 359 held-out images, 16 px, split seed 0 \(\d+\.\d s\)",
                        lines[0])
    for line, (name, file) in zip(lines[1:3], [("Tiny 16", "tiny_16.tflite"), ("Tiny Q 16", "tiny_q_16.tflite")]):
        assert re.fullmatch(rf"evaluated {name} <- {file} \(0\.0 MB, gzip 0\.0 MB\): acc 0\.\d{{3}} on 359 "
                            r"held-out; 1 thread \d+\.\d\d ms \(p99 \d+\.\d\d\), 2 threads \d+\.\d\d ms "
                            r"\(p99 \d+\.\d\d\) \(\d+\.\d s\)", line), line
    assert re.fullmatch(rf"wrote {models}/evaluation.json \(2 models, \d+\.\d kB, \d+\.\d s\)", lines[3])
    assert lines[4:] == [f"next: edgeoffload-host report {models}/evaluation.json --out {models}/report"]

    results = read_results(models / "evaluation.json")
    assert results["settings"] == {"threads": [1, 2], "warmup": 2, "runs": 5}
    assert results["runtime"].startswith(("ai_edge_litert ", "tflite_runtime "))
    float_entry, q_entry = results["models"]
    assert (float_entry["name"], float_entry["letters"], float_entry["label"]) == ("Tiny 16", "", "float")
    assert (q_entry["name"], q_entry["letters"], q_entry["label"]) == ("Tiny Q 16", "Q", "Q")
    held = load_dataset("digits", 16, seed=0)
    for entry, file in ((float_entry, "tiny_16.tflite"), (q_entry, "tiny_q_16.tflite")):
        assert entry["verified"] is True and entry["file"] == file
        assert (entry["architecture"], entry["architecture_name"], entry["input_px"]) == ("tiny", "Tiny", 16)
        assert entry["size_bytes"] == (models / file).stat().st_size and 0 < entry["gzip_size_bytes"]
        assert entry["dataset"]["matches_build"] is True and entry["dataset"]["n"] == 359
        assert entry["accuracy"] == pytest.approx(_direct_accuracy(models / file, held.x_test, held.y_test))
        assert set(entry["latency_ms"]) == {"1", "2"}
        stats = entry["latency_ms"]["1"]
        assert stats["n"] == 5 and 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]


def test_evaluate_json_names_the_file_and_the_next_command(models, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = run_host(["evaluate", str(models / "tiny_q_16.tflite"), "--threads", "1", "--runs", "2", "--warmup",
                   "0", "--out", str(out), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert rc == 0 and document["results_file"] == str(out) and document["next"].startswith("edgeoffload-host report")
    assert [m["name"] for m in document["models"]] == ["Tiny Q 16"]
    assert json.loads(out.read_text())["models"] == document["models"]


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_evaluate_bad_inputs_are_one_line_and_exit_2(models, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes.tflite").write_text("not a model at all\n")
    cases = [
        ([str(tmp_path / "nope.tflite")], f"{tmp_path}/nope.tflite: no such file or directory"),
        ([str(empty)], f"{empty}: no .tflite files in this directory"),
        ([str(tmp_path / "notes.tflite")], f"{tmp_path}/notes.tflite: not a TFLite model"),
        ([str(models / "tiny_16.keras")], f"{models}/tiny_16.keras: not a TFLite model"),
        ([str(models), "--threads", "1,zero"], "--threads: 'zero' is not a whole number"),
        ([str(models), "--runs", "0"], "--runs: 0 is below the minimum 1"),
        ([str(models), "--dataset", str(tmp_path / "nowhere")], "--dataset: "),
    ]
    for argv, message in cases:
        assert run_host(["evaluate", *argv]) == 2, argv
        assert _error(capsys).startswith(f"edgeoffload-host: error: {message}"), argv


def test_evaluate_refuses_a_corrupted_model_with_the_loaders_message(models, capsys):
    corrupt(models / "tiny_q_16.tflite")
    assert run_host(["evaluate", str(models)]) == 2
    assert re.fullmatch(rf"edgeoffload-host: error: {models}/tiny_q_16.tflite: sha256 mismatch: manifest "
                        rf"{models}/tiny_q_16.tflite.manifest.json expects [0-9a-f]{{64}}, "
                        r"the file has [0-9a-f]{64}; the file is corrupted or was changed after it was built: .*", _error(capsys))
    assert not (models / "evaluation.json").exists()  # nothing measured, nothing written


def test_evaluate_never_overwrites_results_without_force(models, tmp_path, capsys):
    out = tmp_path / "results.json"
    out.write_text("{}")
    argv = ["evaluate", str(models / "tiny_16.tflite"), "--threads", "1", "--runs", "1", "--out", str(out)]
    assert run_host(argv) == 2
    assert _error(capsys) == (f"edgeoffload-host: error: {out} already exists; pass --force to replace it "
                              "or --out another file")
    assert out.read_text() == "{}"
    assert run_host([*argv, "--force"]) == 0
    assert read_results(out)["models"][0]["name"] == "Tiny 16"


def test_a_model_without_manifest_needs_dataset_and_is_marked_unverified(tiny_models, tmp_path, capsys):
    path = shutil.copy(tiny_models["q"], tmp_path / "mine.tflite")
    assert run_host(["evaluate", str(path), "--threads", "1", "--runs", "1"]) == 2
    assert _error(capsys) == (f"edgeoffload-host: error: {path}: it has no manifest naming its dataset, "
                              "which cannot be loaded here; pass --dataset digits|cifar10|cifar100|DIR")
    assert run_host(["evaluate", str(path), "--threads", "1", "--runs", "1", "--dataset", "digits"]) == 0
    assert "no manifest: unverified" in capsys.readouterr().out
    entry = read_results(tmp_path / "evaluation.json")["models"][0]
    assert (entry["name"], entry["verified"], entry["input_px"], entry["label"]) == ("mine", False, 16, "model")
