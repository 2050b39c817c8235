"""What the offload wire costs over bare TCP, measured side by side on loopback.

For a 128x128x3 uint8 request to a model whose compute is tiny:
  (a) the Open Inference Protocol round trip through the real endpoint (client.infer total time)
      minus the compute time the server reports, in binary and in JSON mode;
  (b) a raw TCP exchange of exactly the same byte counts (request bytes up, response bytes back)
      over one persistent socket with TCP_NODELAY.
Iterations of (a) and (b) are interleaved so that drift hits both alike. Goal: median (a)/(b) <= 1.3.

    python bench/bench_wire_overhead.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from tinymodels import build_tiny_models  # noqa: E402

from edgeoffload.backends.remote import OipClient  # noqa: E402
from edgeoffload_host.serve.http import start_server  # noqa: E402

SIZE = 128


def _recv_exactly(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if not n:
            raise ConnectionError("peer closed")
        got += n


class EchoServer:
    """Per connection: reads two 4-byte sizes (up, down) once, then reads ``up`` bytes and answers
    ``down`` bytes, for as long as the connection lasts."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self._listener.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sizes = memoryview(bytearray(8))
        with conn:
            try:
                _recv_exactly(conn, sizes)
                up, down = struct.unpack("<II", sizes)
                inbox, answer = memoryview(bytearray(up)), bytes(down)
                while True:
                    _recv_exactly(conn, inbox)
                    conn.sendall(answer)
            except (ConnectionError, OSError):
                return


def serve_child(model_dir: str) -> int:
    """The far end, in its own process as an endpoint would be: the OIP endpoint and the echo server."""
    server = start_server(model_dir, workers=1, threads=1)
    echo = EchoServer()
    print(f"ready {server.port} {echo.port}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.close()
    return 0


def _stats(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def _measure(oip_port: int, echo_port: int, model: str, iterations: int, warmup: int) -> dict:
    url = f"http://127.0.0.1:{oip_port}"
    binary, json_client = OipClient(url, binary="always"), OipClient(url, binary="never")
    meta = binary.model_metadata(model, timeout_s=5)
    x = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
    inputs = [(meta["inputs"][0]["name"], x)]
    probe = binary.infer(model, inputs, timeout_s=5)
    raw = socket.create_connection(("127.0.0.1", echo_port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw.sendall(struct.pack("<II", probe.bytes_sent, probe.bytes_received))
    request_bytes = bytes(probe.bytes_sent)
    reply = memoryview(bytearray(probe.bytes_received))
    rows: dict[str, list[float]] = {k: [] for k in ("wire_bin", "wire_json", "tcp", "total_bin", "total_json")}
    for i in range(warmup + iterations):
        r = binary.infer(model, inputs, timeout_s=5)
        t0 = time.perf_counter()
        raw.sendall(request_bytes)
        _recv_exactly(raw, reply)
        t_tcp = (time.perf_counter() - t0) * 1e3
        rj = json_client.infer(model, inputs, timeout_s=5) if i % 10 == 0 else None
        if i < warmup:
            continue
        rows["wire_bin"].append(r.total_ms - (r.server_ms or 0.0))
        rows["total_bin"].append(r.total_ms)
        rows["tcp"].append(t_tcp)
        if rj is not None:
            rows["wire_json"].append(rj.total_ms - (rj.server_ms or 0.0))
            rows["total_json"].append(rj.total_ms)
    raw.close()
    binary.close()
    json_client.close()
    rows["sizes"] = [probe.bytes_sent, probe.bytes_received]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--child", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return serve_child(args.child)

    models = Path(tempfile.gettempdir()) / "edgeoffload-bench-models"
    started = time.perf_counter()
    paths = build_tiny_models(models, size=SIZE)
    model_dir = Path(tempfile.mkdtemp(prefix="edgeoffload-bench-"))
    (model_dir / paths["q"].name).write_bytes(paths["q"].read_bytes())
    print(f"model {paths['q'].name} ready in {time.perf_counter() - started:.1f} s")
    child = subprocess.Popen([sys.executable, __file__, "--child", str(model_dir)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        _, oip_port, echo_port = child.stdout.readline().split()
        rows = _measure(int(oip_port), int(echo_port), paths["q"].stem, args.iterations, args.warmup)
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    _report(rows, args.iterations)
    return 0


def _report(rows: dict, iterations: int) -> None:
    sent, received = rows["sizes"]
    print(f"request {sent} B up, response {received} B down (binary); {iterations} iterations; "
          f"endpoint and echo server in one child process, clients here")
    labels = [("(a) OIP binary, minus compute", "wire_bin"), ("(a') OIP JSON, minus compute", "wire_json"),
              ("(b) raw TCP, same bytes", "tcp"), ("OIP binary, total", "total_bin"),
              ("OIP JSON, total", "total_json")]
    for label, key in labels:
        median, p90 = _stats(rows[key])
        print(f"  {label:32s} median {median * 1e3:8.1f} us   p90 {p90 * 1e3:8.1f} us   (n={len(rows[key])})")
    print(f"ratio (a)/(b), binary: {_stats(rows['wire_bin'])[0] / _stats(rows['tcp'])[0]:.2f}  (goal <= 1.3)")
    print(f"ratio JSON/binary round trip (total): {_stats(rows['total_json'])[0] / _stats(rows['total_bin'])[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
