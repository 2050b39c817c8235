"""Model artifacts and their manifests: the format the host writes and the verified loader the daemon uses.

Every artifact (``mobilenet_q_32.tflite``) has a manifest beside it (``mobilenet_q_32.tflite.manifest.json``,
JSON, ``"schema": 1``) that records its sha256, where it came from, how it was made and how well it does.
Artifacts and manifests are never modified after they are written; the daemon checks the hash before it
loads a model. This module is board-side: stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeoffload.errors import ModelError

log = logging.getLogger(__name__)

SCHEMA = 1
MANIFEST_SUFFIX = ".manifest.json"
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite file
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: bigger than any model the study uses (VGG16-128 float is ~67 MB)
_FIX = "rebuild it with `edgeoffload-host build --force` or fix the manifest"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path_for(artifact: str | os.PathLike[str]) -> Path:
    """Where an artifact's manifest lives: ``<artifact>.manifest.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor: quantization is ``{"scale": float, "zero_point": int}`` or None."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: dict[str, float | int] | None = None


@dataclass(frozen=True)
class Tensors:
    """The model's request (inputs) and result (outputs) tensors, in the model's order."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


@dataclass(frozen=True)
class MethodStep:
    """One step of how the artifact was made (``fine_tune``, ``convert``, ``quantize``...), in order applied."""

    step: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """Top-1 accuracy of this artifact and of the float Keras baseline on the same held-out split."""

    accuracy: float | None
    float_accuracy: float | None
    split: str
    n: int


@dataclass(frozen=True)
class Manifest:
    """What an artifact is, where it came from and how it was made. Dicts are plain JSON: do not mutate."""

    name: str
    file: str
    sha256: str
    size_bytes: int
    gzip_size_bytes: int
    format: str
    parameters: int
    depth: int
    source: dict[str, Any]
    method: tuple[MethodStep, ...]
    seed: int
    versions: dict[str, str]
    tensors: Tensors
    evaluation: Evaluation | None
    created_utc: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "file": self.file,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "gzip_size_bytes": self.gzip_size_bytes,
            "format": self.format,
            "parameters": self.parameters,
            "depth": self.depth,
            "source": self.source,
            "method": [asdict(m) for m in self.method],
            "seed": self.seed,
            "versions": self.versions,
            "tensors": {
                "inputs": [_tensor_dict(t) for t in self.tensors.inputs],
                "outputs": [_tensor_dict(t) for t in self.tensors.outputs],
            },
            "evaluation": asdict(self.evaluation) if self.evaluation else None,
            "created_utc": self.created_utc,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<manifest>") -> Manifest:
        """Strict parse: every key present with the right type; unknown keys are errors."""
        return _parse_manifest(_Fields(origin), data)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Manifest:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ModelError(f"{path}: cannot read manifest: {e.strerror or e}") from e
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{path}: not valid JSON ({e}); {_FIX}") from e
        return cls.from_dict(data, str(path))


def _tensor_dict(t: TensorInfo) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "quantization": t.quantization}


class _Fields:
    """Typed access to JSON objects that names the file and key path in every error."""

    def __init__(self, origin: str):
        self.origin = origin

    def fail(self, key: str, message: str) -> ModelError:
        return ModelError(f"{self.origin}: {key}: {message}; {_FIX}")

    def obj(self, value: Any, key: str, keys: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key or "(top)", f"expected an object, got {type(value).__name__}")
        missing = sorted(keys - value.keys())
        if missing:
            raise self.fail(_join(key, missing[0]), "missing key")
        unknown = sorted(value.keys() - keys)
        if unknown:
            raise self.fail(_join(key, unknown[0]), "unknown key")
        return value

    def get(self, obj: dict[str, Any], parent: str, name: str, kind: type | tuple[type, ...],
            optional: bool = False) -> Any:
        return self.check(obj[name], _join(parent, name), kind, optional)

    def check(self, value: Any, key: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
        if value is None and optional:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            want = " or ".join(k.__name__ for k in kinds)
            raise self.fail(key, f"expected {want}, got {type(value).__name__}")
        return value


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


_TOP_KEYS = {"schema", "name", "file", "sha256", "size_bytes", "gzip_size_bytes", "format", "parameters",
             "depth", "source", "method", "seed", "versions", "tensors", "evaluation", "created_utc"}


def _parse_manifest(f: _Fields, data: Any) -> Manifest:
    top = f.obj(data, "", _TOP_KEYS)
    if f.get(top, "", "schema", int) != SCHEMA:
        raise f.fail("schema", f"unsupported schema {top['schema']} (this daemon reads schema {SCHEMA})")
    sha = f.get(top, "", "sha256", str)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise f.fail("sha256", "expected 64 lowercase hex digits")
    tensors = f.obj(top["tensors"], "tensors", {"inputs", "outputs"})
    return Manifest(
        name=f.get(top, "", "name", str),
        file=f.get(top, "", "file", str),
        sha256=sha,
        size_bytes=f.get(top, "", "size_bytes", int),
        gzip_size_bytes=f.get(top, "", "gzip_size_bytes", int),
        format=f.get(top, "", "format", str),
        parameters=f.get(top, "", "parameters", int),
        depth=f.get(top, "", "depth", int),
        source=f.get(top, "", "source", dict),
        method=tuple(_parse_step(f, s, f"method[{i}]") for i, s in enumerate(f.get(top, "", "method", list))),
        seed=f.get(top, "", "seed", int),
        versions=_parse_str_map(f, f.get(top, "", "versions", dict), "versions"),
        tensors=Tensors(_parse_tensors(f, tensors, "inputs"), _parse_tensors(f, tensors, "outputs")),
        evaluation=_parse_evaluation(f, top["evaluation"]),
        created_utc=f.get(top, "", "created_utc", str),
    )


def _parse_step(f: _Fields, value: Any, key: str) -> MethodStep:
    step = f.obj(value, key, {"step", "params"})
    return MethodStep(f.get(step, key, "step", str), f.get(step, key, "params", dict))


def _parse_str_map(f: _Fields, value: dict[str, Any], key: str) -> dict[str, str]:
    for name, item in value.items():
        f.check(item, _join(key, name), str)
    return dict(value)


def _parse_tensors(f: _Fields, tensors: dict[str, Any], which: str) -> tuple[TensorInfo, ...]:
    out = []
    for i, value in enumerate(f.get(tensors, "tensors", which, list)):
        key = f"tensors.{which}[{i}]"
        t = f.obj(value, key, {"name", "shape", "dtype", "quantization"})
        shape = f.get(t, key, "shape", list)
        for j, dim in enumerate(shape):
            f.check(dim, f"{key}.shape[{j}]", int)
        quant = f.get(t, key, "quantization", dict, optional=True)
        if quant is not None:
            q = f.obj(quant, f"{key}.quantization", {"scale", "zero_point"})
            quant = {"scale": float(f.get(q, f"{key}.quantization", "scale", (int, float))),
                     "zero_point": f.get(q, f"{key}.quantization", "zero_point", int)}
        out.append(TensorInfo(f.get(t, key, "name", str), tuple(shape), f.get(t, key, "dtype", str), quant))
    return tuple(out)


def _parse_evaluation(f: _Fields, value: Any) -> Evaluation | None:
    if value is None:
        return None
    e = f.obj(value, "evaluation", {"accuracy", "float_accuracy", "split", "n"})
    acc = f.get(e, "evaluation", "accuracy", (int, float), optional=True)
    float_acc = f.get(e, "evaluation", "float_accuracy", (int, float), optional=True)
    return Evaluation(
        accuracy=None if acc is None else float(acc),
        float_accuracy=None if float_acc is None else float(float_acc),
        split=f.get(e, "evaluation", "split", str),
        n=f.get(e, "evaluation", "n", int),
    )


def write_new_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write bytes to a new file atomically; ModelError if the path exists (artifacts are never modified)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish_new_file(Path(tmp), path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def publish_new_file(tmp: Path, path: Path) -> None:
    """Give a finished temporary file its final name without replacing anything (a hard link, atomic).

    The file becomes world-readable (0644): the daemon's own user loads what the build wrote.
    """
    try:
        os.chmod(tmp, 0o644)
        os.link(tmp, path)
    except FileExistsError:
        raise ModelError(f"{path}: already exists; artifacts are never overwritten: "
                         "remove it first (edgeoffload-host build --force does)") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot write: {e.strerror or e}") from e


def write_manifest(artifact_path: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write ``<artifact>.manifest.json`` atomically; the artifact must exist and match the manifest's hash."""
    artifact = Path(artifact_path)
    if manifest.file != artifact.name:
        raise ModelError(f"{artifact}: manifest names file {manifest.file!r}, not {artifact.name!r}")
    try:
        actual = sha256_file(artifact)
    except OSError as e:
        raise ModelError(f"{artifact}: cannot read artifact to check its hash: {e.strerror or e}") from e
    if actual != manifest.sha256:
        raise ModelError(f"{artifact}: manifest sha256 {manifest.sha256} does not match the file's {actual}")
    path = write_new_file(manifest_path_for(artifact), manifest.to_json().encode("utf-8"))
    log.debug("wrote manifest %s", path)
    return path


@dataclass(frozen=True)
class ModelFile:
    """A model read once from disk whose bytes were verified against its manifest and/or an expected hash."""

    path: Path
    content: bytes = field(repr=False)
    sha256: str
    manifest: Manifest | None = None

    @property
    def name(self) -> str:
        """The study name from the manifest (``Mobilenet Q 32``), else the file's stem."""
        return self.manifest.name if self.manifest else self.path.stem


def _read_model_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise ModelError(f"{path}: {size} bytes is more than the limit of {max_bytes} bytes; "
                                 "raise the limit if this model is meant to be this big")
            content = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found; build it with `edgeoffload-host build`") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a model file") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read model file: {e.strerror or e}") from e
    if len(content) > max_bytes:
        raise ModelError(f"{path}: more than the limit of {max_bytes} bytes")
    if not content:
        raise ModelError(f"{path}: model file is empty; rebuild it")
    if content[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{path}: not a TFLite model (no 'TFL3' identifier at bytes 4..8); "
                         "point the config at a .tflite file")
    return content


def load_model_file(path: str | os.PathLike[str], *, manifest_path: str | os.PathLike[str] | None = None,
                    expected_sha256: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> ModelFile:
    """Read a .tflite file once and verify it.

    The manifest is ``manifest_path`` (must exist) or ``<file>.manifest.json`` when that exists. Its sha256,
    and ``expected_sha256`` when given, must match the bytes read. Any problem is a ModelError that names
    the file and says what to do.
    """
    path = Path(path)
    content = _read_model_bytes(path, max_bytes)
    actual = hashlib.sha256(content).hexdigest()
    if manifest_path is None and manifest_path_for(path).is_file():
        manifest_path = manifest_path_for(path)
    manifest = None
    if manifest_path is not None:
        manifest = Manifest.read(manifest_path)
        if manifest.sha256 != actual:
            raise ModelError(
                f"{path}: sha256 mismatch: manifest {manifest_path} expects {manifest.sha256}, the file has "
                f"{actual}; the file is corrupted or was changed after it was built: {_FIX}")
    if expected_sha256 is not None and expected_sha256.lower() != actual:
        raise ModelError(f"{path}: sha256 mismatch: expected {expected_sha256.lower()}, the file has {actual}; "
                         f"the file is corrupted or not the one configured: {_FIX}")
    if manifest is None and expected_sha256 is None:
        log.warning("model %s has no manifest and no expected sha256: loading it unverified", path)
    return ModelFile(path=path, content=content, sha256=actual, manifest=manifest)
