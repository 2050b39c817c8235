"""TFLite interpreter sessions and the embedded CPU backend.

The interpreter module is imported lazily: ``tflite_runtime`` (older NXP BSPs) or ``ai_edge_litert``
(newer BSPs, PyPI). Every model takes a uint8 image as its request tensor; a session adapts that tensor to
the model's input (cast or quantize) and returns float32 scores (dequantized for integer outputs).
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from edgeoffload.backends.modelfile import ModelFile
from edgeoffload.errors import BackendError, ModelError, RequestError

log = logging.getLogger(__name__)

_MODULES = ("tflite_runtime.interpreter", "ai_edge_litert.interpreter")
_INSTALL_HINT = "install ai-edge-litert (pip) or tensorflow-lite (BSP)"


def import_interpreter_module() -> ModuleType:
    """The first TFLite interpreter module that imports; BackendError naming the fix if none does."""
    errors = []
    for name in _MODULES:
        try:
            return importlib.import_module(name)
        except ImportError as e:
            errors.append(f"{name}: {e}")
    raise BackendError(f"no TFLite runtime found ({'; '.join(errors)}): {_INSTALL_HINT}")


def runtime_version() -> str:
    """Which runtime is used and its version, e.g. ``ai_edge_litert 2.3.0``."""
    module = import_interpreter_module()
    package = module.__name__.split(".")[0]
    version = getattr(importlib.import_module(package), "__version__", None)
    if version is None:
        from importlib import metadata

        dist = {"tflite_runtime": "tflite-runtime", "ai_edge_litert": "ai-edge-litert"}.get(package, package)
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "unknown"
    return f"{package} {version}"


@dataclass(frozen=True)
class TensorSpec:
    """A model tensor as the interpreter reports it; quantization is (scale, zero_point) or None."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    quantization: tuple[float, int] | None

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> TensorSpec:
        scale, zero_point = details.get("quantization", (0.0, 0))
        quant = (float(scale), int(zero_point)) if scale else None
        shape = tuple(int(d) for d in details["shape"])
        return cls(str(details["name"]), shape, np.dtype(details["dtype"]), quant)


class TfliteSession:
    """One interpreter for one model. Thread-safe: runs are serialised by a lock."""

    def __init__(self, content: bytes, *, threads: int, delegate: Any = None, name: str):
        self.name = name
        self._content = content  # the interpreter reads from this buffer: keep it alive
        self._lock = threading.Lock()
        module = import_interpreter_module()
        delegates = [delegate] if delegate is not None else None
        try:
            self._interpreter = module.Interpreter(model_content=content, num_threads=threads,
                                                   experimental_delegates=delegates)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            where = " with its delegate" if delegate is not None else ""
            raise ModelError(f"model {name}: the TFLite runtime cannot load it{where}: {e}; "
                             "the file may be corrupted: rebuild it") from e
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"model {name}: has {len(inputs)} inputs and {len(outputs)} outputs; "
                             "edgeoffload serves models with one image input and one output")
        self.input_spec = TensorSpec.from_details(inputs[0])
        self.output_spec = TensorSpec.from_details(outputs[0])
        self._input_index = int(inputs[0]["index"])
        self._output_index = int(outputs[0]["index"])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one request: x is [1,H,W,3] or [H,W,3] uint8 (float only for float-input models).

        Returns the model's output (with its batch dimension) as float32, dequantized if it is an integer.
        """
        adapted = np.ascontiguousarray(self._adapt_input(x))
        with self._lock:
            self._interpreter.set_tensor(self._input_index, adapted)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._output_index).copy()
        return self._adapt_output(raw)

    def _adapt_input(self, x: np.ndarray) -> np.ndarray:
        spec = self.input_spec
        if not isinstance(x, np.ndarray):
            raise RequestError(f"model {self.name}: request tensor must be a numpy array, "
                               f"got {type(x).__name__}")
        if x.shape != spec.shape:
            if x.shape != spec.shape[1:]:
                raise RequestError(
                    f"model {self.name}: request tensor shape {list(x.shape)} does not match the model's "
                    f"input shape {list(spec.shape)} (or {list(spec.shape[1:])} without the batch dimension)")
            x = x[np.newaxis]
        float_model = np.issubdtype(spec.dtype, np.floating)
        if x.dtype != np.uint8 and not (float_model and np.issubdtype(x.dtype, np.floating)):
            accepted = "uint8 or float" if float_model else "uint8"
            raise RequestError(f"model {self.name}: request tensor dtype {x.dtype} is not accepted: "
                               f"the model expects {accepted} ({spec.dtype} input)")
        if float_model:
            return x.astype(spec.dtype, copy=False)
        if spec.quantization is not None and spec.quantization != (1.0, 0):
            return _quantize(x, spec.quantization, spec.dtype)
        if x.dtype != spec.dtype:
            return _quantize(x, (1.0, 0), spec.dtype)
        return x

    def _adapt_output(self, raw: np.ndarray) -> np.ndarray:
        quant = self.output_spec.quantization
        if quant is None or np.issubdtype(raw.dtype, np.floating):
            return raw.astype(np.float32, copy=False)
        scale, zero_point = quant
        return ((raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def _quantize(x: np.ndarray, quant: tuple[float, int], dtype: np.dtype) -> np.ndarray:
    scale, zero_point = quant
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / np.float32(scale) + np.float32(zero_point))
    return np.clip(q, info.min, info.max).astype(dtype)


class LocalTargetConfig(Protocol):
    """What a local backend needs from its target's config (the config dataclasses satisfy this)."""

    name: str
    threads: int


class LocalBackend:
    """Common part of the CPU and NPU backends: one session per loaded model, keyed by model name."""

    kind = "local"

    def __init__(self, config: LocalTargetConfig):
        self.name: str = config.name
        self.threads: int = int(config.threads)
        self.available = False
        self.unavailable_reason: str | None = "not opened"
        self.runtime_version = "unknown"
        self._sessions: dict[str, TfliteSession] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        """Import the runtime. A missing runtime makes the target unavailable (with the reason); no raise."""
        try:
            import_interpreter_module()
            self.runtime_version = runtime_version()
        except BackendError as e:
            self._mark_unavailable(str(e))
            return
        self.available, self.unavailable_reason = True, None
        log.info("target %s ready (%s, %d threads)", self.name, self.runtime_version, self.threads)

    def _mark_unavailable(self, reason: str) -> None:
        self.available, self.unavailable_reason = False, reason
        log.warning("target %s unavailable: %s", self.name, reason)

    def _delegate(self) -> Any:
        return None

    def load(self, model: ModelFile, name: str | None = None) -> None:
        """Create a session for a verified model (replacing one of the same name); BackendError if unavailable."""
        name = name or model.name
        if not self.available:
            raise BackendError(f"target {self.name}: cannot load model {name}: "
                               f"target unavailable ({self.unavailable_reason})")
        session = TfliteSession(model.content, threads=self.threads, delegate=self._delegate(), name=name)
        with self._lock:
            self._sessions[name] = session
        log.info("target %s loaded model %s from %s (sha256 %s)", self.name, name, model.path, model.sha256[:12])

    def loaded(self, model_name: str) -> bool:
        with self._lock:
            return model_name in self._sessions

    def unload(self, model_name: str) -> None:
        with self._lock:
            self._sessions.pop(model_name, None)

    def _session(self, model_name: str) -> TfliteSession:
        with self._lock:
            session = self._sessions.get(model_name)
            known = sorted(self._sessions)
        if session is None:
            raise RequestError(f"target {self.name}: model {model_name!r} is not loaded "
                               f"(loaded: {', '.join(known) or 'none'})")
        return session

    def run(self, model_name: str, x: np.ndarray) -> np.ndarray:
        return self._session(model_name).run(x)

    def input_spec(self, model_name: str) -> TensorSpec:
        return self._session(model_name).input_spec

    def output_spec(self, model_name: str) -> TensorSpec:
        return self._session(model_name).output_spec

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
        self.available, self.unavailable_reason = False, "closed"
        log.debug("target %s closed", self.name)


class CpuBackend(LocalBackend):
    """The board's Cortex-A53 cores through the TFLite CPU kernels (XNNPACK), ``threads`` of them."""
