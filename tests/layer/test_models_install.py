"""edgeoffload-models' do_install (meta-edgeoffload/lib/edgeoffloadlayer/models.py, which bitbake imports through
layer.conf's addpylib): real models with the manifests edgeoffload-host writes install; a model changed after
its manifest, a missing or broken manifest, or an empty folder stop the build with a message naming the file."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from edgeoffload.backends.modelfile import load_model_file, manifest_path_for

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "meta-edgeoffload" / "lib"))
sys.path.insert(0, str(ROOT / "tests" / "host_tools"))

from edgeoffloadlayer import BBIMPORTS, models  # noqa: E402
from tiny_manifests import corrupt, tiny_models_with_manifests  # noqa: E402

RECIPE = ROOT / "meta-edgeoffload" / "recipes-edgeoffload" / "edgeoffload-models" / "edgeoffload-models_0.1.0.bb"


@pytest.fixture
def model_dir(tiny_models, tmp_path) -> Path:
    out = tiny_models_with_manifests(tiny_models, tmp_path / "models")
    for keras in out.glob("*.keras*"):  # the recipe installs .tflite models only; keep the folder realistic
        keras.unlink()
    return out


def test_installs_models_and_manifests_that_the_daemon_accepts(model_dir, tmp_path):
    dst = tmp_path / "image" / "usr" / "share" / "edgeoffload" / "models"
    names = models.install_models(str(model_dir), str(dst))
    assert sorted(names) == sorted(["tiny_16.tflite", "tiny_q_16.tflite", "tiny_16.tflite.manifest.json",
                                    "tiny_q_16.tflite.manifest.json"])
    for name in names:
        assert (dst / name).read_bytes() == (model_dir / name).read_bytes()
        assert stat.S_IMODE((dst / name).stat().st_mode) == 0o644
    for model in ("tiny_16.tflite", "tiny_q_16.tflite"):  # what the board then loads, hash-checked
        assert load_model_file(dst / model).sha256 == json.loads(manifest_path_for(dst / model).read_text())["sha256"]


def test_a_model_changed_after_its_manifest_fails_naming_both(model_dir, tmp_path):
    corrupt(model_dir / "tiny_q_16.tflite")
    with pytest.raises(models.ModelCheckError) as e:
        models.install_models(str(model_dir), str(tmp_path / "dst"))
    msg = str(e.value)
    expected = json.loads((model_dir / "tiny_q_16.tflite.manifest.json").read_text())["sha256"]
    assert f"{model_dir}/tiny_q_16.tflite: sha256 " in msg and f"which expects {expected}" in msg
    assert "rebuild it with edgeoffload-host build --force" in msg
    assert not (tmp_path / "dst").exists(), "nothing is installed when one model fails"


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.unlink(), "no usable manifest"),
    (lambda m: m.write_text("{not json"), "no usable manifest"),
    (lambda m: m.write_text(json.dumps({"name": "x"})), "no usable manifest"),
    (lambda m: m.write_text(json.dumps({"sha256": 12})), "has no valid sha256 (12)"),
    (lambda m: m.write_text("[]"), "no usable manifest"),
])
def test_a_missing_or_broken_manifest_fails_naming_it(model_dir, tmp_path, damage, message):
    manifest = model_dir / "tiny_16.tflite.manifest.json"
    damage(manifest)
    with pytest.raises(models.ModelCheckError) as e:
        models.install_models(str(model_dir), str(tmp_path / "dst"))
    assert str(e.value).startswith(f"{model_dir}/tiny_16.tflite: ")
    assert message in str(e.value) and str(manifest) in str(e.value)


def test_an_empty_folder_says_how_to_fill_it(tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(models.ModelCheckError, match=r"EDGEOFFLOAD_MODELS_DIR = .*/models holds no \*\.tflite "
                       r"model: build them \(edgeoffload-host build --out .*/models\)"):
        models.check_models(str(tmp_path / "models"))


def test_a_folder_name_with_glob_characters_is_taken_literally(model_dir, tmp_path):
    odd = tmp_path / "models [v2]"
    os.rename(model_dir, odd)
    assert [Path(p).name for p in models.check_models(str(odd))] == ["tiny_16.tflite", "tiny_q_16.tflite"]


def test_the_recipe_calls_the_helper_and_bitbake_hashes_it():
    text = RECIPE.read_text()
    assert "edgeoffloadlayer.models.install_models(" in text and "except edgeoffloadlayer.models.ModelCheckError" in text
    assert "models" in BBIMPORTS  # bitbake adds these modules' functions to the signatures of tasks calling them
    layer_conf = (ROOT / "meta-edgeoffload" / "conf" / "layer.conf").read_text()
    assert "addpylib ${LAYERDIR}/lib edgeoffloadlayer" in layer_conf
