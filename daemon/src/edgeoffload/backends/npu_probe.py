"""The parent side of the NPU child: start ``python -m edgeoffload.backends.npu_child``, follow its phases,
and turn a hang, a crash or a refusal into an `NpuProbeError` that names the phase.

The child and its protocol (JSON request on stdin, ``{"phase": ...}`` lines then a result or an error on
stdout, its log on stderr) are described in ``npu_child``. ``run_child`` gives each phase a time limit; a
child past it gets SIGTERM, then SIGKILL, and is reaped. This module only starts the child: it never loads
a delegate itself.
"""

from __future__ import annotations

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeoffload.errors import BackendError

log = logging.getLogger(__name__)

CHILD_MODULE = "edgeoffload.backends.npu_child"
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


class NpuProbeError(BackendError):
    """The child failed. ``disables_target``: the delegate itself hung, crashed or refused (every model
    would), as opposed to one model that cannot run; ``phase`` is where it happened; ``detail`` is the
    child's own error message when it reported one (None after a hang or a crash)."""

    def __init__(self, message: str, *, phase: str, disables_target: bool, detail: str | None = None):
        super().__init__(message)
        self.phase = phase
        self.disables_target = disables_target
        self.detail = detail


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
        proc = subprocess.Popen([sys.executable, "-m", CHILD_MODULE], stdin=subprocess.PIPE,
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
