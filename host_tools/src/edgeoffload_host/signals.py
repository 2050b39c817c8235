"""SIGINT and SIGTERM as a stop request for the long-running host commands (serve, joulescope)."""

from __future__ import annotations

import signal
import threading


def install_stop_handlers(stop: threading.Event) -> dict:
    """SIGINT and SIGTERM set ``stop`` (only possible from the main thread); returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    return previous


def restore_handlers(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
