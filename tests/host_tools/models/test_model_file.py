"""`edgeoffload-host build --model-file`: a user's own Keras model gets the same variants and manifests; bad
flags and unreadable or unusable model files are one line on stderr and exit 2. Also CIFAR's loader, with a
stand-in for keras.datasets (tests never download)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgeoffload.backends.modelfile import load_model_file, manifest_path_for, sha256_file
from edgeoffload.errors import ModelError
from edgeoffload_host.cli import main
from edgeoffload_host.models.data import load_cifar

PROG = "edgeoffload-host build"


@pytest.mark.parametrize(("extra", "message"), [
    (["--model-file", "/no/such/net.keras"], "--model-file: cannot read '/no/such/net.keras': No such file or "
                                             "directory (give a .keras or .h5 file or a SavedModel folder)"),
    (["--models", "vgg16"], "--models: not used with --model-file (its input size and classes come from the "
                            "model); leave it out"),
    (["--inputs", "32"], "--inputs: not used with --model-file"),
    (["--classes", "10"], "--classes: not used with --model-file"),
    (["--weights", "imagenet"], "--weights: 'imagenet' applies to --models; with --model-file the model keeps "
                                "its own weights, or give a weights file PATH to load"),
    (["--weights", "none"], "--weights: 'none' applies to --models"),
])
def test_model_file_flags_are_checked_before_anything_is_loaded(tmp_path, capsys, extra, message):
    model = tmp_path / "net.keras"
    model.write_bytes(b"checked later, when TensorFlow loads it")
    assert main(["build", "--out", str(tmp_path / "out"), "--model-file", str(model), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"{PROG}: error: {message}")
    assert not (tmp_path / "out").exists()


_USER_MODELS = r"""
import contextlib, io, json, sys
from pathlib import Path
from edgeoffload_host.cli import main
from edgeoffload_host.models.sources import user_spec
from edgeoffload_host.models.zoo import import_keras

_, keras = import_keras()
root = Path(sys.argv[1])
keras.utils.set_random_seed(0)
pixels = keras.Input((16, 16, 3))
x = keras.layers.Rescaling(1 / 255)(pixels)
x = keras.layers.Conv2D(8, 3, use_bias=False)(x)
x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
model = keras.Model(pixels, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x)))
model.save(root / "My Net.keras")
model.save(root / "saved_net")  # a SavedModel folder
wide = keras.Input((16, 20, 3))
keras.Model(wide, keras.layers.Dense(10)(keras.layers.Flatten()(wide))).save(root / "wide.h5")
(root / "broken.keras").write_bytes(b"not a model")
common = ["--variants", "float,q,pq,pwq", "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "16",
          "--prune-epochs", "1", "--cluster-epochs", "1", "--calibration-samples", "10"]
results = {}
for name in ("My Net.keras", "broken.keras", "wide.h5"):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["build", "--out", str(root / "out"), "--model-file", str(root / name), *common])
    results[name] = [code, err.getvalue()]
spec = user_spec(root / "saved_net")
results["saved_net"] = [spec.key, spec.display, spec.input_px, spec.classes, spec.from_logits]
print(json.dumps(results))
"""


@pytest.mark.slow
def test_a_user_model_gets_all_variants_and_unusable_files_are_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-c", _USER_MODELS, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    assert results["My Net.keras"] == [0, ""]
    code, err = results["broken.keras"]
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"{PROG}: error: model file {tmp_path}/broken.keras: cannot load it as a Keras model (")
    assert err.endswith("); give a .keras or .h5 file or a Keras SavedModel folder\n")
    assert results["wide.h5"] == [2, f"{PROG}: error: model file {tmp_path}/wide.h5: input (None, 16, 20, 3) is "
                                     "not one [N,H,W,3] image with H == W; models here take square RGB images\n"]
    assert results["saved_net"] == ["saved_net", "saved_net", 16, 10, False]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".json")) == [
        "my_net_16.keras", "my_net_16.tflite", "my_net_pq_16.tflite", "my_net_pwq_16.tflite", "my_net_q_16.tflite"]
    names = [load_model_file(out / f"my_net_{v}16.tflite").manifest.name for v in ("", "q_", "pq_", "pwq_")]
    assert names == ["My Net 16", "My Net Q 16", "My Net PQ 16", "My Net PWQ 16"]
    pwq = load_model_file(out / "my_net_pwq_16.tflite").manifest
    assert pwq.parameters == 15_938 and pwq.source["model_sha256"] == sha256_file(tmp_path / "My Net.keras")
    assert {k: pwq.source[k] for k in ("input_px", "classes", "outputs")} == {
        "input_px": 16, "classes": 10, "outputs": "probabilities"}
    measured = [m.params for m in pwq.method if m.step == "measure"][-1]
    assert measured["sparsity"]["layers"] == 2 and measured["sparsity"]["per_layer"]["min"] >= 0.49
    assert measured["unique_values_per_output_channel"]["max"] <= 16
    assert manifest_path_for(out / "my_net_16.keras").is_file()


def test_cifar_keeps_its_own_split_and_is_resized():
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), np.arange(6).reshape(6, 1) % 3)
    test = (rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), np.array([[0], [2]]))
    data = load_cifar("cifar10", 16, load_data=lambda: (train, test))
    assert (data.name, data.labels[:2], data.x_train.shape, data.x_test.shape) == (
        "CIFAR-10", ("airplane", "automobile"), (6, 16, 16, 3), (2, 16, 16, 3))
    assert data.y_test.tolist() == [0, 2] and data.y_train.dtype == np.int64
    assert data.describe()["split_method"] == "official train/test" and data.test_fraction == 0.25


def test_cifar_without_internet_is_one_clear_error():
    def offline():
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    with pytest.raises(ModelError) as caught:
        load_cifar("cifar100", 32, load_data=offline)
    assert str(caught.value) == (
        "dataset cifar100: cannot get CIFAR-100 through keras.datasets (URL fetch failure on "
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz: None -- [Errno -3] Temporary failure in name "
        "resolution); it is downloaded once and needs internet: use --dataset digits or a folder")
