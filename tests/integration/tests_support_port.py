"""A loopback port that nothing listens on (yet)."""

import socket


def reserve_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
