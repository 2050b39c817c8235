"""A user-space link emulator: a TCP proxy that adds one-way latency and per-direction bandwidth.

The kernel here has no netem, so the demo reproduces the study's Ethernet and radio links on
loopback by putting this proxy between the daemon's client and the endpoint. Each direction is a
link of its own: a chunk read at time t starts serialising when the link is free, takes
len/bandwidth seconds, and arrives one-way-latency later. Order is kept; EOF and resets are passed on.
TCP's handshake is not delayed (the proxy accepts at once), only the data.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time

logger = logging.getLogger(__name__)

CHUNK_BYTES = 16 * 1024
_EOF = object()  # the sender closed cleanly: pass a FIN on
_ABORT = object()  # the sender's side broke: close both sockets


class _Direction:
    """One way of one connection: a reader thread timestamps chunks, a writer thread delivers them."""

    def __init__(self, src: socket.socket, dst: socket.socket, latency_s: float, bytes_per_s: float,
                 on_done, name: str):
        self._src, self._dst = src, dst
        self._latency_s, self._bytes_per_s = latency_s, bytes_per_s
        self._queue: queue.Queue = queue.Queue(maxsize=1024)
        self._on_done = on_done
        self._threads = [threading.Thread(target=self._read, name=f"{name}-read", daemon=True),
                         threading.Thread(target=self._write, name=f"{name}-write", daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        link_free = 0.0
        end = _EOF
        try:
            while True:
                data = self._src.recv(CHUNK_BYTES)
                if not data:
                    break
                start = max(time.monotonic(), link_free)
                link_free = start + len(data) / self._bytes_per_s
                self._queue.put((link_free + self._latency_s, data))
        except OSError as exc:
            logger.debug("link emulator: read ended: %s", exc)
            end = _ABORT
        self._queue.put((link_free + self._latency_s, end))

    def _write(self) -> None:
        clean = True
        while True:
            due, data = self._queue.get()
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if data is _EOF or data is _ABORT:
                clean = data is _EOF
                break
            try:
                self._dst.sendall(data)
            except OSError as exc:
                logger.debug("link emulator: write ended: %s", exc)
                clean = False
                break
        if clean:
            try:
                self._dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self._on_done(clean)


class _Pair:
    """A client connection and its upstream connection; closed when both directions are done."""

    def __init__(self, client: socket.socket, upstream: socket.socket, emulator: LinkEmulator):
        self._sockets = (client, upstream)
        self._lock = threading.Lock()
        self._remaining = 2
        self._emulator = emulator
        latency_s = emulator.one_way_latency_ms / 1e3
        self.directions = (
            _Direction(client, upstream, latency_s, emulator.upload_bytes_per_s, self._done, "link-up"),
            _Direction(upstream, client, latency_s, emulator.download_bytes_per_s, self._done, "link-down"),
        )

    def start(self) -> None:
        for direction in self.directions:
            direction.start()

    def _done(self, clean: bool) -> None:
        with self._lock:
            self._remaining -= 1
            last = self._remaining == 0
        if last or not clean:
            self.close()

    def close(self) -> None:
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._emulator._forget(self)


class LinkEmulator:
    """``LinkEmulator(host, port, one_way_latency_ms=10, upload_bytes_per_s=3.04e6, ...)``; ``start()``
    returns the port to connect to instead of the upstream's."""

    def __init__(self, upstream_host: str, upstream_port: int, *, one_way_latency_ms: float,
                 upload_bytes_per_s: float, download_bytes_per_s: float,
                 listen_host: str = "127.0.0.1", listen_port: int = 0):
        if one_way_latency_ms < 0 or upload_bytes_per_s <= 0 or download_bytes_per_s <= 0:
            raise ValueError("latency must be >= 0 ms and bandwidths > 0 bytes/s, got "
                             f"{one_way_latency_ms}, {upload_bytes_per_s}, {download_bytes_per_s}")
        self.upstream = (upstream_host, upstream_port)
        self.one_way_latency_ms = one_way_latency_ms
        self.upload_bytes_per_s = upload_bytes_per_s
        self.download_bytes_per_s = download_bytes_per_s
        self._listen = (listen_host, listen_port)
        self._listener: socket.socket | None = None
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.port = 0

    def start(self) -> int:
        self._listener = listener = socket.create_server(self._listen)
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(listener,), name=f"linkemu-{self.port}", daemon=True).start()
        logger.info("link emulator on %s:%s -> %s:%s (%s ms one way, up %s B/s, down %s B/s)",
                    self._listen[0], self.port, *self.upstream, self.one_way_latency_ms,
                    self.upload_bytes_per_s, self.download_bytes_per_s)
        return self.port

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError as exc:
                logger.warning("link emulator: cannot reach %s:%s: %s", *self.upstream, exc)
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, upstream, self)
            with self._lock:
                self._pairs.add(pair)
            pair.start()

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread on Linux
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()

    def __enter__(self) -> LinkEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
