"""The i.MX 8M Plus NPU through NXP's VX delegate (``/usr/lib/libvx_delegate.so``).

The first invoke of a model compiles its graph for the NPU (seconds to about a minute). With a cache dir the
driver stores the compiled graph there (``VIV_VX_ENABLE_CACHE_GRAPH_BINARY``), so later starts are fast.
A delegate can hang or crash the process that uses it, so each risky step is tried first in a child process
(``npu_child``): ``open()`` loads the delegate there, ``probe()`` runs a model there (load, first invoke,
timed runs). Only then does the daemon do the same in-process. A delegate that hangs, crashes or refuses
makes the target unavailable with the reason; nothing else is affected.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgeoffload.backends.modelfile import ModelFile
from edgeoffload.backends.npu_child import one_line
from edgeoffload.backends.npu_probe import CACHE_ENV_DIR, CACHE_ENV_ENABLE, NpuProbeError, child_environment, run_child
from edgeoffload.backends.tflite import LocalBackend, import_interpreter_module, runtime_version
from edgeoffload.errors import BackendError
from edgeoffload.profiling.stats import LatencyStats, WarmupStats

log = logging.getLogger(__name__)

# Everything load_delegate raises in practice: OSError (not a shared library), AttributeError (a library
# without tflite_plugin_create_delegate), ValueError (the delegate refused), RuntimeError (not CPython).
_DELEGATE_ERRORS = (OSError, AttributeError, ValueError, RuntimeError)

CHECK_TIMEOUT_S = 30.0  # loading the delegate in the check child (it takes well under a second)
PROBE_TIMEOUT_S = 120.0  # each phase of a probe; the first invoke compiles the graph (up to about a minute)
START_TIMEOUT_S = 60.0  # the child's Python starting and importing numpy and the runtime


class NpuTargetConfig(Protocol):
    name: str
    threads: int
    delegate: str
    delegate_options: Mapping[str, str]


@dataclass(frozen=True)
class Delegation:
    """How much of a model the delegate took: status "full" (one partition, every op), "partial", "none",
    or "unknown" when the runtime does not list the interpreter's nodes (then the counts are None)."""

    status: str
    partitions: int | None
    model_ops: int | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "partitions": self.partitions, "model_ops": self.model_ops,
                "detail": self.detail}


@dataclass(frozen=True)
class NpuProbeResult:
    """A model run in the child with the delegate: the first invoke (graph compile) timed on its own,
    then warm-up and timed runs as ``engine.profiles.time_runs`` does them."""

    model: str
    sha256: str
    target: str
    delegate: str
    threads: int
    runtime_version: str
    load_delegate_ms: float
    build_ms: float
    first_invoke_ms: float
    warmup: WarmupStats
    latency: LatencyStats
    delegation: Delegation
    cache_env: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "sha256": self.sha256, "target": self.target, "delegate": self.delegate,
                "threads": self.threads, "runtime_version": self.runtime_version,
                "load_delegate_ms": self.load_delegate_ms, "build_ms": self.build_ms,
                "first_invoke_ms": self.first_invoke_ms, "warmup": self.warmup.to_dict(),
                "latency": self.latency.to_dict(), "delegation": self.delegation.to_dict(),
                "cache_env": dict(self.cache_env)}


def _hint(delegate: str | os.PathLike[str]) -> str:
    return (f"the delegate {delegate} and its delegate_options, the NPU driver (galcore) and the kernel log "
            "(dmesg), then restart the daemon")


def _positive(value: Any, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BackendError(f"{what}: {name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def check_delegate(delegate: str | os.PathLike[str], options: Mapping[str, str] | None = None, *,
                   cache_dir: str | os.PathLike[str] | None = None, timeout_s: float = CHECK_TIMEOUT_S,
                   target: str = "npu", start_timeout_s: float = START_TIMEOUT_S,
                   term_grace_s: float = 2.0) -> str:
    """Load the delegate in a child; the runtime version it reports, or NpuProbeError (hang, crash, refusal:
    all with ``disables_target``) naming the delegate and the phase."""
    what = f"NPU delegate check of {delegate}"
    timeout_s = _positive(timeout_s, "timeout_s", what)
    request = {"mode": "check", "parent_pid": os.getpid(), "delegate": str(delegate),
               "options": {str(k): str(v) for k, v in dict(options or {}).items()}}
    result = run_child(request, what=what, target=target, hint=_hint(delegate), env=child_environment(cache_dir),
                       limit_s=lambda phase, _: start_timeout_s if phase == "start" else timeout_s,
                       term_grace_s=term_grace_s)
    return str(result.get("runtime_version", "unknown"))


def probe_npu(model: ModelFile, *, delegate: str | os.PathLike[str], options: Mapping[str, str] | None = None,
              threads: int = 1, cache_dir: str | os.PathLike[str] | None = None, warmup_runs: int = 3,
              runs: int = 30, duration_s: float | None = None, timeout_s: float = PROBE_TIMEOUT_S,
              target: str = "npu", start_timeout_s: float = START_TIMEOUT_S,
              term_grace_s: float = 2.0) -> NpuProbeResult:
    """Run `model` with the delegate in a child process and measure it.

    Every phase (load delegate, build interpreter, first invoke) may take `timeout_s`; profiling may take
    `timeout_s` + `duration_s` + (warm-up and counted runs) × the first invoke's time. Past that the child is
    killed (SIGTERM, then SIGKILL) and reaped. Raises NpuProbeError: on a hang, a crash (the signal is
    named) or a delegate that refuses, with ``disables_target``; when only this model cannot run, without.
    """
    what = f"NPU probe of {model.name}"
    timeout_s = _positive(timeout_s, "timeout_s", what)
    if duration_s is not None:
        duration_s = _positive(duration_s, "duration_s", what)
    if isinstance(warmup_runs, bool) or not isinstance(warmup_runs, int) or warmup_runs < 0:
        raise BackendError(f"{what}: warmup_runs must be an integer >= 0, got {warmup_runs!r}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise BackendError(f"{what}: runs must be an integer >= 1, got {runs!r}")
    request = {"mode": "probe", "parent_pid": os.getpid(), "delegate": str(delegate),
               "options": {str(k): str(v) for k, v in dict(options or {}).items()}, "model": model.name,
               "model_path": str(Path(model.path).resolve()), "sha256": model.sha256, "threads": int(threads),
               "warmup_runs": warmup_runs, "runs": runs, "duration_s": duration_s}
    counted = warmup_runs + (0 if duration_s is not None else runs)

    def limit_s(phase: str, progress: Mapping[str, Any]) -> float:
        if phase == "start":
            return start_timeout_s
        if phase != "profiling":
            return timeout_s
        first_s = float(progress.get("first_invoke_ms", 0.0)) / 1000.0
        first_s = first_s if math.isfinite(first_s) and first_s > 0 else 0.0
        return timeout_s + (duration_s or 0.0) + counted * first_s

    result = run_child(request, what=what, target=target, hint=_hint(delegate), env=child_environment(cache_dir),
                       limit_s=limit_s, term_grace_s=term_grace_s)
    try:
        return _probe_result(result, model, target=target, delegate=str(delegate), threads=int(threads))
    except (KeyError, TypeError, ValueError) as e:
        raise NpuProbeError(f"{what}: the child's result is unreadable ({type(e).__name__}: {e}); this is a "
                            "bug: report it with the daemon's log", phase="profiling", disables_target=False) from e


def _probe_result(r: dict[str, Any], model: ModelFile, *, target: str, delegate: str, threads: int
                  ) -> NpuProbeResult:
    d = r["delegation"]
    delegation = Delegation(str(d["status"]), None if d["partitions"] is None else int(d["partitions"]),
                            None if d["model_ops"] is None else int(d["model_ops"]), str(d["detail"]))
    return NpuProbeResult(
        model=model.name, sha256=model.sha256, target=target, delegate=delegate, threads=threads,
        runtime_version=str(r["runtime_version"]), load_delegate_ms=float(r["load_delegate_ms"]),
        build_ms=float(r["build_ms"]), first_invoke_ms=float(r["first_invoke_ms"]),
        warmup=WarmupStats(**r["warmup"]), latency=LatencyStats(**r["latency"]), delegation=delegation,
        cache_env={str(k): str(v) for k, v in dict(r["cache_env"]).items()})


class NpuBackend(LocalBackend):
    """A TFLite interpreter per model with the VX delegate; ``threads`` run the ops the NPU cannot.

    ``check_timeout_s`` bounds the delegate check in ``open()`` (default: CHECK_TIMEOUT_S or
    ``probe_timeout_s``, whichever is less, so the configured limit also bounds loading the delegate);
    ``probe_timeout_s`` is the default per-phase limit of ``probe()`` (and of the probe ``load()`` runs for a
    model not probed yet).
    """

    def __init__(self, config: NpuTargetConfig, *, cache_dir: str | os.PathLike[str] | None = None,
                 check_timeout_s: float | None = None, probe_timeout_s: float = PROBE_TIMEOUT_S,
                 term_grace_s: float = 2.0):
        super().__init__(config)
        self.delegate_path = Path(config.delegate)
        self.delegate_options = {str(k): str(v) for k, v in dict(config.delegate_options or {}).items()}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.check_timeout_s = min(CHECK_TIMEOUT_S, probe_timeout_s) if check_timeout_s is None else check_timeout_s
        self.probe_timeout_s = probe_timeout_s
        self.term_grace_s = term_grace_s
        self._cache_ready = False
        self._module: Any = None
        self._probes: dict[str, NpuProbeResult] = {}  # by model sha256: models that ran in a child

    def open(self) -> None:
        """Check the delegate in a child, then load it in-process; on any failure mark the target
        unavailable (with the reason) and return."""
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
        self._cache_ready = self._set_cache_environment()
        try:
            check_delegate(self.delegate_path, self.delegate_options, cache_dir=self._child_cache_dir(),
                           timeout_s=self.check_timeout_s, target=self.name, term_grace_s=self.term_grace_s)
        except NpuProbeError as e:
            refused = e.detail is not None and e.phase == "load_delegate"
            self._mark_unavailable(f"delegate {self.delegate_path} failed to load: {e.detail}" if refused else str(e))
            return
        try:
            self._module.load_delegate(str(self.delegate_path), self.delegate_options)
        except _DELEGATE_ERRORS as e:
            self._mark_unavailable(f"delegate {self.delegate_path} failed to load: {one_line(e)}")
            return
        self.available, self.unavailable_reason = True, None
        log.info("target %s ready (%s, delegate %s)", self.name, self.runtime_version, self.delegate_path)

    def probe(self, model: ModelFile, *, warmup_runs: int = 3, runs: int = 30, duration_s: float | None = None,
              timeout_s: float | None = None) -> NpuProbeResult:
        """Run `model` in a child (see `probe_npu`) and remember that it works, so `load()` may load it.

        Raises BackendError when the target is unavailable; NpuProbeError (a BackendError) when the probe
        fails: after a hang, a crash or a refusing delegate the target is marked unavailable first."""
        if not self.available:
            raise BackendError(f"target {self.name}: cannot probe model {model.name}: "
                               f"target unavailable ({self.unavailable_reason})")
        try:
            result = probe_npu(model, delegate=self.delegate_path, options=self.delegate_options,
                               threads=self.threads, cache_dir=self._child_cache_dir(), warmup_runs=warmup_runs,
                               runs=runs, duration_s=duration_s, target=self.name, term_grace_s=self.term_grace_s,
                               timeout_s=self.probe_timeout_s if timeout_s is None else timeout_s)
        except NpuProbeError as e:
            if e.disables_target:
                self._mark_unavailable(str(e))
            raise
        with self._lock:
            self._probes[model.sha256] = result
        log.info("target %s probed %s: first invoke %.1f ms, mean %.3f ms over %d runs, delegate took %s (%s)",
                 self.name, model.name, result.first_invoke_ms, result.latency.mean_ms, result.latency.n,
                 result.delegation.status, result.delegation.detail)
        return result

    def probed(self, model: ModelFile) -> NpuProbeResult | None:
        """The last successful probe of this model's bytes, or None."""
        with self._lock:
            return self._probes.get(model.sha256)

    def load(self, model: ModelFile, name: str | None = None) -> None:
        """Load in-process, after a successful probe of this model (one is run, briefly, when none was)."""
        if self.available and self.probed(model) is None:
            self.probe(model, warmup_runs=0, runs=1)
        super().load(model, name)

    def close(self) -> None:
        super().close()
        with self._lock:
            self._probes.clear()

    def _child_cache_dir(self) -> Path | None:
        return self.cache_dir if self._cache_ready else None

    def _set_cache_environment(self) -> bool:
        """The VX driver reads these when the delegate loads (REFERENCE §7); process-wide by nature."""
        if self.cache_dir is None:
            return False
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.warning("target %s: cannot create NPU graph cache %s (%s): compiling without cache",
                        self.name, self.cache_dir, e.strerror or e)
            return False
        os.environ[CACHE_ENV_ENABLE] = "1"
        os.environ[CACHE_ENV_DIR] = str(self.cache_dir)
        return True

    def _delegate(self) -> Any:
        """A fresh delegate instance for each interpreter (the VX delegate keeps per-graph state)."""
        try:
            return self._module.load_delegate(str(self.delegate_path), self.delegate_options)
        except _DELEGATE_ERRORS as e:
            raise BackendError(f"target {self.name}: delegate {self.delegate_path} failed to load: "
                               f"{one_line(e)}") from e
