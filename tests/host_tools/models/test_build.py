"""edgeoffload-host build: a real MobileNet 32 build (in a subprocess: this process never imports TensorFlow),
checked with the daemon's own loader and CPU backend; plus the command's errors for bad flags."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeoffload.backends.modelfile import Manifest, load_model_file, manifest_path_for, sha256_file
from edgeoffload.backends.tflite import CpuBackend, import_interpreter_module
from edgeoffload.errors import ModelError
from edgeoffload_host.models import BuildCommand, BuildOptions, build_models
from edgeoffload_host.models.build import Step, _clear_targets, artifact_paths
from edgeoffload_host.models.command import format_step, step_dict
from edgeoffload_host.models.data import load_dataset, resize_bilinear
from edgeoffload_host.models.zoo import ARCHITECTURES, file_stem, study_name

MOBILENET_32_PARAMETERS = 3_516_964  # REFERENCE §1, Table 2.1

def _run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edgeoffload-host build")
    command = BuildCommand()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


_SIZES = r"\((?P<mb>\d+\.\d) MB, gzip (?P<gz>\d+\.\d) MB, \d+\.\d s, acc 0\.\d\d"
_VERSUS = r" vs float 0\.\d\d\)"


@pytest.mark.slow
def test_build_prints_one_line_per_step_and_the_next_command(built):
    out, lines = built
    assert re.fullmatch(r"loaded scikit-learn digits: 1438 train / 359 held-out, 32 px \(\d+\.\d s\)", lines[0])
    assert re.fullmatch(r"trained Mobilenet 32 \(\d+\.\d s, float acc 0\.\d\d\)", lines[1])
    assert re.fullmatch(rf"saved Mobilenet 32 -> {out}/mobilenet_32.keras {_SIZES}\)", lines[2])
    assert re.fullmatch(rf"built Mobilenet 32 -> {out}/mobilenet_32.tflite {_SIZES}{_VERSUS}", lines[3])
    assert re.fullmatch(rf"built Mobilenet Q 32 -> {out}/mobilenet_q_32.tflite {_SIZES}{_VERSUS}", lines[4])
    assert re.fullmatch(r"pruned Mobilenet P 32 \(\d+\.\d s, 50\.0% zeros in the pruned kernels, "
                        rf"keras acc 0\.\d\d{_VERSUS}", lines[5])
    assert re.fullmatch(rf"built Mobilenet PQ 32 -> {out}/mobilenet_pq_32.tflite {_SIZES}{_VERSUS}", lines[6])
    assert re.fullmatch(r"clustered Mobilenet PW 32 \(\d+\.\d s, 50\.0% zeros in the pruned kernels, at most "
                        rf"1\d values per output channel, keras acc 0\.\d\d{_VERSUS}", lines[7])
    assert re.fullmatch(rf"built Mobilenet PWQ 32 -> {out}/mobilenet_pwq_32.tflite {_SIZES}{_VERSUS}", lines[8])
    assert lines[9:] == [f"next: edgeoffload-host serve --models {out}/"]
    sizes = {line.split(" -> ")[1].split(" (")[0]: re.search(_SIZES, line) for line in lines if " -> " in line}
    gzip_mb = {Path(path).name: float(m["gz"]) for path, m in sizes.items()}
    # pruning and clustering shrink only the gzip size: zeros and repeated values compress
    assert gzip_mb["mobilenet_pwq_32.tflite"] < gzip_mb["mobilenet_pq_32.tflite"] < gzip_mb["mobilenet_q_32.tflite"]


@pytest.mark.slow
def test_built_models_verify_and_match_their_manifests(built):
    out, _ = built
    float_model = load_model_file(out / "mobilenet_32.tflite")
    q_model = load_model_file(out / "mobilenet_q_32.tflite")
    keras_manifest = Manifest.read(manifest_path_for(out / "mobilenet_32.keras"))
    assert keras_manifest.sha256 == sha256_file(out / "mobilenet_32.keras") and keras_manifest.format == "keras"
    compressed = [load_model_file(out / f"mobilenet_{v}_32.tflite").manifest for v in ("pq", "pwq")]
    for manifest in (float_model.manifest, q_model.manifest, keras_manifest, *compressed):
        assert manifest.parameters == MOBILENET_32_PARAMETERS
        assert manifest.seed == 0 and manifest.source["dataset"]["name"] == "scikit-learn digits"
        assert manifest.evaluation.n == 359 and manifest.evaluation.split == "held-out"
        assert manifest.versions["tensorflow"] and manifest.versions["tf-keras"]
    assert (float_model.name, q_model.name) == ("Mobilenet 32", "Mobilenet Q 32")
    assert [m.step for m in q_model.manifest.method] == ["fine_tune", "recalibrate_batchnorm", "quantize"]
    assert [m.name for m in compressed] == ["Mobilenet PQ 32", "Mobilenet PWQ 32"]
    assert [m.step for m in float_model.manifest.method] == ["fine_tune", "recalibrate_batchnorm", "convert"]
    assert q_model.manifest.size_bytes < float_model.manifest.size_bytes / 3


@pytest.mark.slow
def test_int8_model_is_full_integer_with_uint8_input(built):
    out, _ = built
    interpreter = import_interpreter_module().Interpreter(model_path=str(out / "mobilenet_q_32.tflite"))
    details = interpreter.get_input_details()[0]
    assert details["dtype"] == np.uint8 and details["quantization"] == (1.0, 0)
    kinds = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert "int8" in kinds and "float32" not in kinds
    manifest = Manifest.read(manifest_path_for(out / "mobilenet_q_32.tflite"))
    assert manifest.tensors.inputs[0].quantization == {"scale": 1.0, "zero_point": 0}
    assert manifest.tensors.inputs[0].dtype == "uint8" and manifest.tensors.outputs[0].shape == (1, 100)
    float_in = Manifest.read(manifest_path_for(out / "mobilenet_32.tflite")).tensors.inputs[0]
    assert (float_in.dtype, float_in.shape, float_in.quantization) == ("uint8", (1, 32, 32, 3), None)


@pytest.mark.slow
def test_cpu_backend_reproduces_the_manifest_accuracy(built):
    out, _ = built
    data = load_dataset("digits", 32, seed=0)
    backend = CpuBackend(argparse.Namespace(name="cpu", threads=2))
    backend.open()
    for file in ("mobilenet_32.tflite", "mobilenet_q_32.tflite"):
        model = load_model_file(out / file)
        assert model.manifest.source["dataset"]["sha256"] == data.sha256
        backend.load(model)
        scores = np.stack([backend.run(model.name, x)[0] for x in data.x_test])
        assert scores.shape == (359, 100) and scores.dtype == np.float32
        quant = backend.output_spec(model.name).quantization
        step = quant[0] if quant else 0.0  # each of the 100 int8 scores is off by up to half a step
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-4 + 100 * step / 2)
        accuracy = float(np.mean(np.argmax(scores, axis=1) == data.y_test))
        assert accuracy == pytest.approx(model.manifest.evaluation.accuracy)
    backend.close()


@pytest.mark.slow
def test_existing_artifacts_are_never_overwritten(built, capsys):
    out, _ = built
    before = sha256_file(out / "mobilenet_q_32.tflite")
    assert _run_command(["--out", str(out), "--weights", "none"]) == 2
    assert capsys.readouterr().err == (f"edgeoffload-host build: error: {out}/mobilenet_32.tflite already exists; "
                                       "artifacts are never overwritten: pass --force to remove it and build it "
                                       "again\n")
    assert sha256_file(out / "mobilenet_q_32.tflite") == before


@pytest.mark.parametrize(("argv", "message"), [
    (["--models", "mobilenet,alexnet"],
     "--models: unknown model 'alexnet' (choose from inceptionv3, mobilenet, resnet50, vgg16)"),
    (["--inputs", "16"], "--inputs: input size 16 px is outside Mobilenet's range 32..1024"),
    (["--models", "inceptionv3", "--inputs", "75,32"],
     "--inputs: input size 32 px is outside InceptionV3's range 75..1024"),
    (["--inputs", "32px"], "--inputs: '32px' is not a whole number"),
    (["--weights", "/no/such/weights.h5"],
     "--weights: cannot read '/no/such/weights.h5': No such file or directory "
     "(use none, imagenet or a readable weights file)"),
    (["--variants", "float,wq"], "--variants: unknown variant 'wq' (choose from float, pq, pwq, q)"),
    (["--io-type", "int16"], "--io-type: 'int16' is not one of uint8, int8"),
    (["--dataset", "/no/such/folder"],
     "--dataset: '/no/such/folder' is not digits, cifar10, cifar100 or a directory of class folders"),
    (["--dataset", "cifar1000"], "--dataset: 'cifar1000' is not digits, cifar10, cifar100 or a directory"),
    (["--epochs", "-1"], "--epochs: -1 is below the minimum 0"),
    (["--batch-size", "0"], "--batch-size: 0 is below the minimum 1"),
    (["--sparsity", "1"], "--sparsity: 1 is not between 0 and 1"),
    (["--sparsity", "half"], "--sparsity: 'half' is not a number"),
    (["--clusters", "1"], "--clusters: 1 is below the minimum 2"),
    (["--cluster-init", "kmeans"], "--cluster-init: 'kmeans' is not one of linear, kmeans++, density, random"),
    (["--prune-epochs", "0"], "--prune-epochs: 0 is below the minimum 1"),
    (["--prune-frequency", "0"], "--prune-frequency: 0 is below the minimum 1"),
    (["--cluster-epochs", "-2"], "--cluster-epochs: -2 is below the minimum 0"),
    (["--learning-rate", "0"], "--learning-rate: 0 is not above 0"),
    (["--calibration-samples", "0"], "--calibration-samples: 0 is below the minimum 1"),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert _run_command(["--out", str(tmp_path / "models"), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"edgeoffload-host build: error: {message}")
    assert captured.err.count("\n") == 1
    assert not (tmp_path / "models").exists()


def test_importing_the_command_does_not_import_tensorflow():
    code = ("import sys, edgeoffload_host.models.command, edgeoffload_host.models; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_force_removes_old_artifacts_and_says_so(tmp_path):
    opts = BuildOptions(tmp_path, variants=("q",), force=True)
    old = tmp_path / "mobilenet_q_32.tflite"
    old.write_bytes(b"old")
    manifest_path_for(old).write_text("{}")
    steps = []
    _clear_targets(opts, steps.append)
    assert not old.exists() and not manifest_path_for(old).exists()
    assert [(s.action, s.path) for s in steps] == [("removed", old)]


def test_build_models_refuses_before_building(tmp_path):
    (tmp_path / "mobilenet_32.keras").write_bytes(b"old")
    with pytest.raises(ModelError, match=r"mobilenet_32.keras already exists; artifacts are never overwritten"):
        build_models(tmp_path, variants=("float",))
    assert (tmp_path / "mobilenet_32.keras").read_bytes() == b"old"


def test_artifact_names_follow_the_study():
    arch = ARCHITECTURES["mobilenet"]
    assert (study_name(arch, "q", 32), file_stem(arch, "q", 32)) == ("Mobilenet Q 32", "mobilenet_q_32")
    assert (study_name(arch, "", 128), file_stem(arch, "", 128)) == ("Mobilenet 128", "mobilenet_128")
    opts = BuildOptions(Path("m"), models=("mobilenet", "vgg16"), inputs=(32,))
    assert [p.name for p in artifact_paths(opts)] == [
        "mobilenet_32.tflite", "mobilenet_32.keras", "mobilenet_q_32.tflite",
        "vgg16_32.tflite", "vgg16_32.keras", "vgg16_q_32.tflite"]
    opts = BuildOptions(Path("m"), inputs=(32, 75), variants=("pwq", "pq"))
    assert [p.name for p in artifact_paths(opts)] == [
        "mobilenet_pwq_32.tflite", "mobilenet_pq_32.tflite", "mobilenet_pwq_75.tflite", "mobilenet_pq_75.tflite"]
    assert study_name(arch, "pwq", 32) == "Mobilenet PWQ 32"


def test_digits_are_split_reproducibly_as_uint8_rgb():
    a, b = load_dataset("digits", 32, seed=0), load_dataset("digits", 32, seed=0)
    assert a.sha256 == b.sha256 and a.x_train.shape == (1438, 32, 32, 3) and a.x_test.dtype == np.uint8
    assert a.x_train.max() == 255 and a.labels == tuple("0123456789")
    assert np.array_equal(a.x_train[..., 0], a.x_train[..., 2])  # grey as RGB
    assert load_dataset("digits", 32, seed=1).sha256 != a.sha256


def test_resize_bilinear_keeps_flat_images_flat():
    flat = np.full((2, 8, 8, 3), 77, np.uint8)
    assert np.array_equal(resize_bilinear(flat, 32), np.full((2, 32, 32, 3), 77, np.uint8))
    ramp = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (1, 8, 1)).reshape(1, 8, 8, 1)
    assert np.all(np.diff(resize_bilinear(ramp, 32)[0, 0, :, 0].astype(int)) >= 0)


def test_json_refusal_is_still_one_line_on_stderr(tmp_path, capsys):
    (tmp_path / "mobilenet_q_32.tflite").write_bytes(b"old")
    assert _run_command(["--out", str(tmp_path), "--variants", "q", "--weights", "none", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "mobilenet_q_32.tflite already exists" in captured.err


def test_step_lines_and_json_records():
    step = Step("built", "Mobilenet Q 32", 12.34, Path("models/mobilenet_q_32.tflite"), 3_814_136, 0.4123, 0.4311,
                3_561_234)
    assert format_step(step) == ("built Mobilenet Q 32 -> models/mobilenet_q_32.tflite "
                                 "(3.8 MB, gzip 3.6 MB, 12.3 s, acc 0.41 vs float 0.43)")
    assert json.loads(json.dumps(step_dict(step))) == {
        "action": "built", "name": "Mobilenet Q 32", "seconds": 12.34, "path": "models/mobilenet_q_32.tflite",
        "size_bytes": 3814136, "gzip_size_bytes": 3561234, "accuracy": 0.4123, "float_accuracy": 0.4311,
        "sparsity": None, "max_unique": None}
    clustered = Step("clustered", "Mobilenet PW 32", 20.04, accuracy=0.25, float_accuracy=0.3, sparsity=0.5,
                     max_unique=16)
    assert format_step(clustered) == ("clustered Mobilenet PW 32 (20.0 s, 50.0% zeros in the pruned kernels, "
                                      "at most 16 values per output channel, keras acc 0.25 vs float 0.30)")
    removed = Step("removed", "mobilenet_q_32.tflite", 0.0, Path("models/mobilenet_q_32.tflite"))
    assert format_step(removed) == "removed old models/mobilenet_q_32.tflite and its manifest (--force)"


@pytest.mark.slow
def test_step_lines_have_sizes_that_match_the_files(built):
    out, lines = built
    assert len([line for line in lines if " -> " in line]) == 5
    for line in (line for line in lines if " -> " in line):
        path = Path(line.split(" -> ")[1].split(" (")[0])
        size_mb = float(line.split(" (")[1].split(" MB")[0])
        assert size_mb == pytest.approx(path.stat().st_size / 1e6, abs=0.06)


_LOAD_FOLDER = r"""
import sys
from edgeoffload_host.models.zoo import import_keras
from edgeoffload_host.models.data import load_dataset
from edgeoffload.errors import ModelError
import_keras()
d = load_dataset(sys.argv[1], 32, seed=0)
print(d.labels, d.x_train.shape, d.x_test.shape, sorted(d.y_train.tolist() + d.y_test.tolist()))
try:
    load_dataset(sys.argv[2], 32)
except ModelError as e:
    print(e)
"""


@pytest.mark.slow
def test_folder_dataset_decodes_png_and_jpeg(tmp_path):
    from PIL import Image  # matplotlib's dependency, always beside the host tools

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "ok" / label).mkdir(parents=True)
        for i in range(5):
            image = Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8))
            image.save(tmp_path / "ok" / label / f"{i}.{'png' if i % 2 else 'jpg'}")
        (tmp_path / "ok" / label / "notes.txt").write_text("ignored")
    (tmp_path / "bad" / "cat").mkdir(parents=True)
    (tmp_path / "bad" / "cat" / "0.png").write_bytes(b"not a png")
    done = subprocess.run([sys.executable, "-c", _LOAD_FOLDER, str(tmp_path / "ok"), str(tmp_path / "bad")],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "('cat', 'dog') (8, 32, 32, 3) (2, 32, 32, 3) [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]"
    assert lines[1].startswith(f"dataset {tmp_path / 'bad'}: cannot decode {tmp_path / 'bad' / 'cat' / '0.png'}")
