"""The i.MX 8M Plus NPU through NXP's VX delegate (``/usr/lib/libvx_delegate.so``).

The first invoke of a model compiles its graph for the NPU (seconds to about a minute). With a cache dir the
driver stores the compiled graph there (``VIV_VX_ENABLE_CACHE_GRAPH_BINARY``), so later starts are fast.
A missing or broken delegate makes the target unavailable with the reason; nothing else is affected.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from edgeoffload.backends.tflite import LocalBackend, import_interpreter_module, runtime_version
from edgeoffload.errors import BackendError

log = logging.getLogger(__name__)

# Everything load_delegate raises in practice: OSError (not a shared library), AttributeError (a library
# without tflite_plugin_create_delegate), ValueError (the delegate refused), RuntimeError (not CPython).
_DELEGATE_ERRORS = (OSError, AttributeError, ValueError, RuntimeError)


class NpuTargetConfig(Protocol):
    name: str
    threads: int
    delegate: str
    delegate_options: Mapping[str, str]


class NpuBackend(LocalBackend):
    """A TFLite interpreter per model with the VX delegate; ``threads`` run the ops the NPU cannot."""

    def __init__(self, config: NpuTargetConfig, *, cache_dir: str | os.PathLike[str] | None = None):
        super().__init__(config)
        self.delegate_path = Path(config.delegate)
        self.delegate_options = {str(k): str(v) for k, v in dict(config.delegate_options or {}).items()}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._module: Any = None

    def open(self) -> None:
        """Load the delegate once to check it works; on any failure mark the target unavailable and return."""
        if not self.delegate_path.is_file():
            self._mark_unavailable(f"delegate {self.delegate_path} not found: install tensorflow-lite-vx-delegate "
                                   "(BSP) or set the target's delegate path")
            return
        try:
            self._module = import_interpreter_module()
            self.runtime_version = runtime_version()
        except BackendError as e:
            self._mark_unavailable(str(e))
            return
        self._set_cache_environment()
        problem = _check_delegate_library(self.delegate_path)
        if problem:
            self._mark_unavailable(f"delegate {self.delegate_path} failed to load: {problem}")
            return
        try:
            self._module.load_delegate(str(self.delegate_path), self.delegate_options)
        except _DELEGATE_ERRORS as e:
            self._mark_unavailable(f"delegate {self.delegate_path} failed to load: {_one_line(e)}")
            return
        self.available, self.unavailable_reason = True, None
        log.info("target %s ready (%s, delegate %s)", self.name, self.runtime_version, self.delegate_path)

    def _set_cache_environment(self) -> None:
        """The VX driver reads these when the delegate loads (REFERENCE §7); process-wide by nature."""
        if self.cache_dir is None:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.warning("target %s: cannot create NPU graph cache %s (%s): compiling without cache",
                        self.name, self.cache_dir, e.strerror or e)
            return
        os.environ["VIV_VX_ENABLE_CACHE_GRAPH_BINARY"] = "1"
        os.environ["VIV_VX_CACHE_BINARY_GRAPH_DIR"] = str(self.cache_dir)

    def _delegate(self) -> Any:
        """A fresh delegate instance for each interpreter (the VX delegate keeps per-graph state)."""
        try:
            return self._module.load_delegate(str(self.delegate_path), self.delegate_options)
        except _DELEGATE_ERRORS as e:
            raise BackendError(f"target {self.name}: delegate {self.delegate_path} failed to load: "
                               f"{_one_line(e)}") from e


def _check_delegate_library(path: Path) -> str | None:
    """Why a file cannot be a TFLite delegate, or None. Checked before load_delegate, whose half-built
    Delegate object prints a traceback from its finalizer when the library is not a delegate."""
    try:
        library = ctypes.CDLL(str(path))
    except OSError as e:
        return f"not a loadable shared library ({_one_line(e)})"
    if not hasattr(library, "tflite_plugin_create_delegate"):
        return "the library has no tflite_plugin_create_delegate symbol: it is not a TFLite delegate"
    return None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
