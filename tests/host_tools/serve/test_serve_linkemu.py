"""The user-space link emulator: latency and bandwidth per direction, order, and clean closes.

Timings on this machine are noisy: lower bounds are tight (a link may not be faster than modelled),
upper bounds generous.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import numpy as np
import pytest
from support import free_port

from edgeoffload.backends.remote import OipClient
from edgeoffload_host.serve.http import start_server
from edgeoffload_host.serve.linkemu import LinkEmulator


class EchoServer:
    """Echoes every byte back; closes its side when the client closes its side."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_round_trip_is_two_latencies_plus_serialisation(echo):
    size = 20_000
    with LinkEmulator("127.0.0.1", echo.port, one_way_latency_ms=30, upload_bytes_per_s=200_000,
                      download_bytes_per_s=1_000_000) as link:
        with socket.create_connection(("127.0.0.1", link.port)) as s:
            s.sendall(b"x")
            assert recv_exactly(s, 1) == b"x"  # warm up: connection set-up is not delayed
            start = time.monotonic()
            s.sendall(b"x")
            assert recv_exactly(s, 1) == b"x"
            small_s = time.monotonic() - start
            payload = np.random.default_rng(0).bytes(size)
            start = time.monotonic()
            s.sendall(payload)
            assert recv_exactly(s, size) == payload
            big_s = time.monotonic() - start
    assert 0.058 < small_s < 0.3
    expected = 0.060 + size / 200_000 + size / 1_000_000  # the echo overlaps up and down: at most this
    assert 0.060 + size / 200_000 - 0.005 < big_s < expected + 0.3


def test_order_is_kept_and_closes_propagate(echo):
    payload = np.random.default_rng(1).bytes(300_000)
    with LinkEmulator("127.0.0.1", echo.port, one_way_latency_ms=2, upload_bytes_per_s=50e6,
                      download_bytes_per_s=50e6) as link:
        with socket.create_connection(("127.0.0.1", link.port)) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)  # the echo server sees EOF, closes, and we see EOF
            s.settimeout(5)
            got = recv_exactly(s, len(payload) + 1)
    assert got == payload


def test_a_dead_upstream_closes_the_client():
    with LinkEmulator("127.0.0.1", free_port(), one_way_latency_ms=1, upload_bytes_per_s=1e6,
                      download_bytes_per_s=1e6) as link:
        with socket.create_connection(("127.0.0.1", link.port), timeout=5) as s:
            assert s.recv(10) == b""


def test_an_oip_request_through_the_link_pays_latency_and_bandwidth(tiny_models, tmp_path):
    shutil.copy(tiny_models["q"], tmp_path)
    with start_server(tmp_path, workers=1) as server, \
            LinkEmulator("127.0.0.1", server.port, one_way_latency_ms=20, upload_bytes_per_s=100_000,
                         download_bytes_per_s=1_000_000) as link:
        client = OipClient(f"http://127.0.0.1:{link.port}", binary="always")
        meta = client.model_metadata("tiny_q_16", timeout_s=5)
        x = np.zeros((1, 16, 16, 3), np.uint8)
        result = client.infer("tiny_q_16", [(meta["inputs"][0]["name"], x)], timeout_s=5)
        client.close()
    floor_ms = 40 + result.bytes_sent / 100 + result.bytes_received / 1000
    assert floor_ms * 0.95 < result.total_ms < floor_ms + 300
