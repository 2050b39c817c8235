"""Small helpers for tests, importable by name (pytest loads every conftest.py as `conftest`, so helpers
imported from there clash between folders)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
