"""Install what `edgeoffload-host build` wrote: every *.tflite of a folder with its <model>.manifest.json,
after checking each model's sha256 against its manifest (edgeoffload-models' do_install)."""

import glob
import hashlib
import json
import os
import shutil


class ModelCheckError(Exception):
    """A model folder the image must not be built from; the message says which file and what to do."""


def manifest_sha256(model):
    """The sha256 a model's manifest expects."""
    manifest = model + ".manifest.json"
    try:
        with open(manifest) as f:
            expected = json.load(f)["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelCheckError("%s: no usable manifest %s (%s): rebuild the model with edgeoffload-host build "
                              "--force" % (model, manifest, e)) from e
    if not isinstance(expected, str) or len(expected) != 64:
        raise ModelCheckError("%s: manifest %s has no valid sha256 (%r): rebuild the model with "
                              "edgeoffload-host build --force" % (model, manifest, expected))
    return expected.lower()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_models(src):
    """The sorted *.tflite paths of `src`, each matching its manifest; ModelCheckError on the first that
    does not (or when there is none)."""
    models = sorted(glob.glob(os.path.join(glob.escape(src), "*.tflite")))
    if not models:
        raise ModelCheckError("EDGEOFFLOAD_MODELS_DIR = %s holds no *.tflite model: build them "
                              "(edgeoffload-host build --out %s) or set EDGEOFFLOAD_MODELS_DIR to the folder "
                              "that has them" % (src, src))
    for model in models:
        expected, actual = manifest_sha256(model), file_sha256(model)
        if actual != expected:
            raise ModelCheckError("%s: sha256 %s does not match %s.manifest.json, which expects %s: the model "
                                  "changed after its manifest was written; rebuild it with edgeoffload-host "
                                  "build --force" % (model, actual, model, expected))
    return models


def install_models(src, dst):
    """Check every model of `src`, then copy models and manifests into `dst` (created), mode 0644.
    Returns the installed file names."""
    models = check_models(src)
    os.makedirs(dst, exist_ok=True)
    names = []
    for path in models + [m + ".manifest.json" for m in models]:
        target = os.path.join(dst, os.path.basename(path))
        shutil.copyfile(path, target)
        os.chmod(target, 0o644)
        names.append(os.path.basename(path))
    return names
