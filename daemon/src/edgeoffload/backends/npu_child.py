"""The NPU's risky steps in a child process, and the parent side that supervises it.

A delegate can hang or crash the process that loads it: in ``load_delegate``, while the interpreter is
built (the delegate's Prepare), in the first invoke (the VX driver compiles the graph: seconds to a minute)
or later. So those steps run first in a child, ``python -m edgeoffload.backends.npu_child`` (a fresh
interpreter: the daemon has threads, so no fork). The protocol:

- stdin: one JSON request (``mode`` "check": load the delegate; "probe": load it, build an interpreter for
  the model, time the first invoke, then warm-up and timed runs exactly as ``engine.profiles.time_runs``).
- stdout: JSON lines: ``{"phase": ...}`` before each step, then ``{"result": {...}}`` or
  ``{"error": ..., "kind": ...}``. The child moves the process's own stdout (fd 1) onto stderr first, so
  whatever the delegate prints cannot break the protocol.
- stderr: the child's log, faulthandler tracebacks, the delegate's chatter; the parent keeps the last lines.

``run_child`` gives each phase a time limit; a child past it gets SIGTERM, then SIGKILL, and is reaped.
"""

from __future__ import annotations

import ctypes
import faulthandler
import hashlib
import json
import logging
import os
import selectors
import signal
import site
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeoffload.errors import BackendError

log = logging.getLogger(__name__)

CACHE_ENV_ENABLE = "VIV_VX_ENABLE_CACHE_GRAPH_BINARY"
CACHE_ENV_DIR = "VIV_VX_CACHE_BINARY_GRAPH_DIR"
PHASE_LABELS = {
    "start": "start (Python and the TFLite runtime importing)",
    "load_delegate": "load delegate",
    "build_interpreter": "build interpreter (the delegate's prepare)",
    "first_invoke": "first invoke (graph compile)",
    "profiling": "profiling",
}
STDERR_LINES = 20  # how much of the child's stderr is kept for the log
_MAX_LINE_BYTES = 1 << 20
_DELEGATE_NODE = "DELEGATE"  # what the runtime names a delegate kernel node (BuiltinOperator_DELEGATE)


class NpuProbeError(BackendError):
    """The child failed. ``disables_target``: the delegate itself hung, crashed or refused (every model
    would), as opposed to one model that cannot run; ``phase`` is where it happened; ``detail`` is the
    child's own error message when it reported one (None after a hang or a crash)."""

    def __init__(self, message: str, *, phase: str, disables_target: bool, detail: str | None = None):
        super().__init__(message)
        self.phase = phase
        self.disables_target = disables_target
        self.detail = detail


# --- parent side ------------------------------------------------------------------------------------

def child_environment(cache_dir: str | os.PathLike[str] | None) -> dict[str, str]:
    """The parent's environment with the VX graph cache set when there is a dir (else the parent's settings
    stay), and this very copy of the package importable: its folder goes on PYTHONPATH unless it is a
    site-packages folder (which the child has anyway, and which must not go before the standard library)."""
    env = dict(os.environ)
    package_root = Path(__file__).resolve().parents[2]
    site_dirs = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if package_root not in site_dirs:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_root), env.get("PYTHONPATH", "")) if p)
    if cache_dir is not None:
        env[CACHE_ENV_ENABLE] = "1"
        env[CACHE_ENV_DIR] = str(cache_dir)
    return env


def run_child(request: Mapping[str, Any], *, what: str, target: str, hint: str,
              limit_s: Callable[[str, Mapping[str, Any]], float], env: Mapping[str, str],
              term_grace_s: float = 2.0) -> dict[str, Any]:
    """Run the child on `request`; its result dict, or NpuProbeError saying what happened in which phase.

    `limit_s(phase, progress)` is the time the child may spend in a phase (`progress`: the phase line).
    `what` ("NPU probe of MODEL") starts every message; `hint` says what to check when the delegate fails.
    """
    try:
        proc = subprocess.Popen([sys.executable, "-m", "edgeoffload.backends.npu_child"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env),
                                start_new_session=True, close_fds=True)
    except OSError as e:
        raise NpuProbeError(f"{what}: cannot start {sys.executable} for the child process: {e.strerror or e}",
                            phase="start", disables_target=True) from e
    watch = _Watch(proc, limit_s)
    timed_out = killed = False
    try:
        try:
            proc.stdin.write(json.dumps(dict(request), allow_nan=False).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it died before reading: its exit status says why
        timed_out = watch.follow()
        if timed_out:
            killed = True
            _kill(proc, term_grace_s)
    finally:
        if not killed and proc.poll() is None:  # an exception on the way (KeyboardInterrupt...)
            _kill(proc, term_grace_s)
        for stream in (proc.stdout, proc.stderr):
            stream.close()
    return _outcome(watch, what=what, target=target, hint=hint, timed_out=timed_out)


class _Watch:
    """Reads the child's two pipes until both close, moving the phase deadline on each phase line."""

    def __init__(self, proc: subprocess.Popen, limit_s: Callable[[str, Mapping[str, Any]], float]):
        self.proc, self._limit_s = proc, limit_s
        self.phase, self.phase_limit_s = "start", float(limit_s("start", {}))
        self.deadline = time.monotonic() + self.phase_limit_s
        self.message: dict[str, Any] | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_LINES)
        self.protocol_error: str | None = None
        self._partial = {"out": b"", "err": b""}

    def follow(self) -> bool:
        """True when the child overran its phase's limit (it is still running then)."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ, "out")
            sel.register(self.proc.stderr, selectors.EVENT_READ, "err")
            while sel.get_map():
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    return True
                for key, _ in sel.select(remaining):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        self._lines(key.data, b"\n")  # what was left without a newline
                    else:
                        self._lines(key.data, chunk)
                if self.protocol_error:
                    return True
        try:
            self.proc.wait(timeout=max(self.deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:  # closed its pipes but did not exit
            return True
        return False

    def _lines(self, stream: str, chunk: bytes) -> None:
        data = self._partial[stream] + chunk
        *lines, self._partial[stream] = data.split(b"\n")
        if len(self._partial[stream]) > _MAX_LINE_BYTES and stream == "out":
            self.protocol_error = f"a protocol line longer than {_MAX_LINE_BYTES} bytes"
        if stream == "err":
            self._partial["err"] = self._partial["err"][-4096:]
            self.stderr_tail.extend(line.decode("utf-8", "replace").rstrip()[:400] for line in lines if line.strip())
            return
        for line in lines:
            if line.strip():
                self._protocol_line(line)

    def _protocol_line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            self.protocol_error = f"an unreadable protocol line {line[:80]!r} ({e})"
            return
        if "phase" in message and message["phase"] in PHASE_LABELS:
            self.phase = message["phase"]
            self.phase_limit_s = float(self._limit_s(self.phase, message))
            self.deadline = time.monotonic() + self.phase_limit_s
        elif "result" in message or "error" in message:
            self.message = message
        else:
            self.protocol_error = f"an unexpected protocol line {line[:80]!r}"


def _kill(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the child's process group, SIGKILL after `grace_s`, and reap it."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
    log.error("NPU child %d did not die after SIGKILL (stuck in the kernel driver?)", proc.pid)


def _outcome(watch: _Watch, *, what: str, target: str, hint: str, timed_out: bool) -> dict[str, Any]:
    label = PHASE_LABELS[watch.phase]
    disabled = f"target {target} disabled: check {hint}"
    failed = timed_out or watch.proc.returncode != 0 or watch.message is None or "error" in watch.message
    if watch.stderr_tail:
        log.log(logging.WARNING if failed else logging.DEBUG, "%s: last lines of the child's stderr:\n  %s",
                what, "\n  ".join(watch.stderr_tail))
    if watch.protocol_error:
        raise NpuProbeError(f"{what} failed in {label}: the child wrote {watch.protocol_error}; {disabled}",
                            phase=watch.phase, disables_target=True)
    if timed_out:
        raise NpuProbeError(f"{what} hung for {_seconds(watch.phase_limit_s)} s in {label}; {disabled}",
                            phase=watch.phase, disables_target=True)
    rc = watch.proc.returncode
    if rc is not None and rc < 0:
        raise NpuProbeError(f"{what} crashed with {_signal_name(-rc)} in {label}; {disabled}",
                            phase=watch.phase, disables_target=True)
    message = watch.message or {}
    if "error" in message:
        disables = message.get("kind") in ("delegate", "runtime")  # else: this model, or a bug of ours
        text = f"{what} failed in {label}: {message['error']}" + (f"; {disabled}" if disables else "")
        raise NpuProbeError(text, phase=watch.phase, disables_target=disables, detail=str(message["error"]))
    if rc != 0 or not isinstance(message.get("result"), dict):
        status = f"exited with status {rc}" if rc != 0 else "exited without a result"
        raise NpuProbeError(f"{what} {status} in {label}; {disabled}", phase=watch.phase, disables_target=True)
    return message["result"]


def _seconds(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# --- child side --------------------------------------------------------------------------------------

def delegation_of(nodes: Sequence[tuple[str, Sequence[int], Sequence[int]]], graph_inputs: Sequence[int],
                  graph_outputs: Sequence[int]) -> dict[str, Any]:
    """Whether a delegate took the graph, from the interpreter's nodes right after the delegate was applied
    (before allocate_tensors, which adds the default XNNPACK delegate's nodes): ``nodes`` are
    (name, inputs, outputs). The original ops stay in the node list; each delegated partition is a node
    named DELEGATE. "full": one partition fed only by graph inputs and constants (no tensor made by an op
    left on the CPU) that produces every graph output; "partial": some partitions, not that; "none"."""
    ops = [n for n in nodes if n[0] != _DELEGATE_NODE]
    partitions = [n for n in nodes if n[0] == _DELEGATE_NODE]
    made_by_ops = {t for _, _, outputs in ops for t in outputs}
    result = {"partitions": len(partitions), "model_ops": len(ops)}
    if not partitions:
        return {"status": "none", **result, "detail": f"no op of {len(ops)} taken: all run on the CPU"}
    _, inputs, outputs = partitions[0]
    fed_by_cpu = {t for t in inputs if t >= 0 and t in made_by_ops and t not in graph_inputs}
    if len(partitions) == 1 and not fed_by_cpu and set(graph_outputs) <= set(outputs):
        return {"status": "full", **result, "detail": f"all {len(ops)} ops in one delegate partition"}
    return {"status": "partial", **result,
            "detail": f"{len(partitions)} delegate partition(s); the other ops of {len(ops)} run on the CPU"}


def _interpreter_delegation(interpreter: Any) -> dict[str, Any]:
    try:
        nodes = [(str(d["op_name"]), [int(t) for t in d["inputs"]], [int(t) for t in d["outputs"]])
                 for d in interpreter._get_ops_details()]
        inputs = [int(d["index"]) for d in interpreter.get_input_details()]
        outputs = [int(d["index"]) for d in interpreter.get_output_details()]
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as e:
        return {"status": "unknown", "partitions": None, "model_ops": None,
                "detail": f"this runtime does not list the interpreter's nodes ({type(e).__name__}: {e})"}
    return delegation_of(nodes, inputs, outputs)


def delegate_library_problem(path: str) -> str | None:
    """Why a file cannot be a TFLite delegate, or None. Checked before load_delegate, whose half-built
    Delegate object prints a traceback from its finalizer when the library is not a delegate."""
    try:
        library = ctypes.CDLL(path)
    except OSError as e:
        return f"not a loadable shared library ({one_line(e)})"
    if not hasattr(library, "tflite_plugin_create_delegate"):
        return "the library has no tflite_plugin_create_delegate symbol: it is not a TFLite delegate"
    return None


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


class _ChildFailure(Exception):
    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class _Child:
    """The child's steps; `say` writes one protocol line."""

    def __init__(self, request: dict[str, Any], say: Callable[[dict[str, Any]], None]):
        self.request, self.say = request, say

    def run(self) -> dict[str, Any]:
        from edgeoffload.backends.tflite import import_interpreter_module, runtime_version
        from edgeoffload.errors import EdgeOffloadError

        try:
            module, version = import_interpreter_module(), runtime_version()
        except EdgeOffloadError as e:
            raise _ChildFailure(str(e), "runtime") from e
        self.say({"phase": "load_delegate"})
        t0 = time.perf_counter()
        delegate = self._load_delegate(module)
        done = {"runtime_version": version, "load_delegate_ms": (time.perf_counter() - t0) * 1000.0,
                "cache_env": {k: v for k, v in os.environ.items() if k.startswith("VIV_") or k == "USE_GPU_INFERENCE"}}
        return done if self.request["mode"] == "check" else {**done, **self._probe(module, delegate)}

    def _load_delegate(self, module: Any) -> Any:
        path, options = str(self.request["delegate"]), dict(self.request.get("options") or {})
        problem = delegate_library_problem(path)
        if problem:
            raise _ChildFailure(problem, "delegate")
        try:
            return module.load_delegate(path, options)
        except (OSError, AttributeError, ValueError, RuntimeError) as e:
            raise _ChildFailure(one_line(e), "delegate") from e

    def _probe(self, module: Any, delegate: Any) -> dict[str, Any]:
        from edgeoffload.backends.tflite import TfliteSession
        from edgeoffload.engine.profiles import sample_input, time_runs
        from edgeoffload.errors import EdgeOffloadError

        req = self.request
        self.say({"phase": "build_interpreter"})
        t0 = time.perf_counter()
        content = self._model_bytes()
        try:  # the delegation is read before allocate_tensors adds XNNPACK's nodes: a throwaway interpreter
            probe = module.Interpreter(model_content=content, num_threads=int(req["threads"]),
                                       experimental_delegates=[delegate])
            delegation = _interpreter_delegation(probe)
            del probe  # done with it; the session gets its own delegate instance, as NpuBackend does
            session = TfliteSession(content, threads=int(req["threads"]), name=str(req["model"]),
                                    delegate=self._load_delegate(module))
        except (ValueError, RuntimeError, EdgeOffloadError) as e:
            raise _ChildFailure(f"the runtime cannot load the model with the delegate: {one_line(e)}", "model") from e
        build_ms = (time.perf_counter() - t0) * 1000.0
        x = sample_input(session.input_spec.shape, session.input_spec.dtype)
        self.say({"phase": "first_invoke"})
        t0 = time.perf_counter()
        self._invoke(session.run, x)
        first_ms = (time.perf_counter() - t0) * 1000.0
        self.say({"phase": "profiling", "first_invoke_ms": first_ms})
        warm, lat = self._invoke(lambda v: time_runs(session.run, v, warmup_runs=int(req["warmup_runs"]),
                                                     runs=int(req["runs"]), duration_s=req.get("duration_s")), x)
        return {"build_ms": build_ms, "first_invoke_ms": first_ms, "warmup": warm.to_dict(),
                "latency": lat.to_dict(), "delegation": delegation}

    @staticmethod
    def _invoke(run: Callable[[Any], Any], x: Any) -> Any:
        try:
            return run(x)
        except RuntimeError as e:  # a kernel (the delegate's or a CPU one) returned an error
            raise _ChildFailure(f"invoke failed: {one_line(e)}", "model") from e

    def _model_bytes(self) -> bytes:
        path = Path(self.request["model_path"])
        try:
            content = path.read_bytes()
        except OSError as e:
            raise _ChildFailure(f"cannot read the model {path}: {e.strerror or e}", "model") from e
        actual = hashlib.sha256(content).hexdigest()
        if actual != self.request["sha256"]:
            raise _ChildFailure(f"model {path} changed since it was verified (sha256 {actual}, expected "
                                f"{self.request['sha256']}): reload the model", "model")
        return content


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this process when the parent dies (strictly: the thread that started it, which waits
    for the child), so an orphaned probe never holds the NPU."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(3)


def main() -> int:
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # print() and the delegate's printf now go to stderr, never into the protocol
    faulthandler.enable(file=sys.stderr)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="npu_child: %(levelname)s %(message)s")

    def say(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message, allow_nan=False) + "\n")
        protocol.flush()

    try:
        request = json.loads(sys.stdin.read())
        if not isinstance(request, dict) or request.get("mode") not in ("check", "probe"):
            raise ValueError("expected an object with mode check or probe")
    except ValueError as e:
        say({"error": f"unreadable request: {e}", "kind": "internal"})
        return 2
    _die_with_parent(int(request.get("parent_pid", os.getppid())))
    try:
        say({"result": _Child(request, say).run()})
    except _ChildFailure as e:
        say({"error": str(e), "kind": e.kind})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
