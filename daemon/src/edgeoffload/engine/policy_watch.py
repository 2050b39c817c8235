"""The policy in force, reloaded on SIGHUP and when its file changes; a bad file keeps the previous one."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Callable

from edgeoffload.atomicfile import replace_file
from edgeoffload.config import load_policy, parse_policy_text
from edgeoffload.errors import ConfigError, EdgeOffloadError, PolicyInvalidError, ServiceError

log = logging.getLogger(__name__)


class PolicyHolder:
    """Thread-safe holder of the current policy with a polling file watcher (no inotify dependency).

    Every change (a reload from the file, a replacement over D-Bus) happens under one lock, so listeners
    hear about changes one at a time and in the order they were applied.
    """

    def __init__(self, path: Path, *, poll_s: float = 1.0,
                 on_change: Callable[[object | None, str | None], None] | None = None) -> None:
        self.path = Path(path)
        self.poll_s = poll_s
        self.on_change = on_change  # (new policy or None, error text or None)
        self.error: str | None = None
        self._policy = None
        self._stamp: tuple | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def load_initial(self) -> None:
        """The first load: a bad policy file at start is fatal (ConfigError propagates)."""
        self._stamp = self._file_stamp()
        policy = load_policy(self.path)
        with self._lock:
            self._policy = policy

    @property
    def current(self):
        return self._policy  # one reference read is atomic; writers hold the lock

    def reload(self) -> bool:
        """Re-read the file; on error keep the previous policy, record and report the error."""
        with self._lock:
            self._stamp = self._file_stamp()
            try:
                policy = load_policy(self.path)
            except (EdgeOffloadError, OSError) as exc:
                self.error = str(exc)
                log.error("policy %s rejected, previous policy stays in force:\n%s", self.path, exc)
                self._notify(None, self.error)
                return False
            self._apply(policy)
            return True

    def replace(self, text: str, source_name: str):
        """Validate `text` exactly like the file, write it atomically to the policy file, apply it.

        ConfigError (every problem, named after `source_name`) or ServiceError (the file cannot be written)
        leave the policy in force and the file as they were.
        """
        with self._lock:
            try:
                policy = parse_policy_text(text, source_name)
            except ConfigError as exc:
                raise PolicyInvalidError(exc.problems or str(exc)) from None
            try:
                replace_file(self.path, text.encode("utf-8"))
            except OSError as exc:
                raise ServiceError(f"cannot write the policy file {self.path}: {exc.strerror or exc}; nothing "
                                   "changed, the previous policy stays in force (is the folder writable by "
                                   "the service user?)") from exc
            self._stamp = self._file_stamp()
            self._apply(dataclasses.replace(policy, source=str(self.path)))
            return self._policy

    def _apply(self, policy) -> None:
        self._policy = policy
        self.error = None
        log.info("policy %s applied (digest %s, objective %s)", self.path, policy.digest, policy.objective.value)
        self._notify(policy, None)

    def request_reload(self) -> None:
        """Safe to call from a signal handler: the watcher thread does the work."""
        self._stamp = None
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="policy-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                if self._file_stamp() != self._stamp:
                    self.reload()

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _notify(self, policy, error: str | None) -> None:
        if self.on_change is not None:
            try:
                self.on_change(policy, error)
            except Exception:
                log.exception("policy change listener failed")
