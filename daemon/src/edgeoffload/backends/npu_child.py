"""The NPU's risky steps, run in a child process that the parent (``npu_probe.run_child``) supervises.

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

The phase names are those of ``npu_probe.PHASE_LABELS``; the parent gives each a time limit.
"""

from __future__ import annotations

import ctypes
import faulthandler
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_DELEGATE_NODE = "DELEGATE"  # what the runtime names a delegate kernel node (BuiltinOperator_DELEGATE)


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
