"""What the offload wire costs over bare TCP, measured side by side on loopback.

For a 128x128x3 uint8 request to a model whose compute is tiny:
  (a) the Open Inference Protocol round trip through the real endpoint (client.infer total time)
      minus the model time the server reports (``compute_time_ms``: interpreter.invoke() alone);
  (b) a raw TCP exchange of exactly the same byte counts (request bytes up, response bytes back)
      over one persistent socket with TCP_NODELAY: one send and one receive a side, the least any
      request/response needs. Its server sits in the endpoint's process and, like the endpoint,
      serves each connection on its own thread; both clients run on this process's main thread.
Iterations of (a) and (b) are interleaved 1:1 so that drift hits both alike; JSON mode, which is
~20x slower, runs in a loop of its own afterwards. Goal: median (a)/(b) <= 1.3. Interleaving is not
neutral: (b) runs right after (a) and finds the caches (a) used cold, so the ratio of the two run
alone is printed as well.

Then, cheaply, where the time goes: CPU per request of each process, measured while (a) runs alone
and while (b) runs alone (loopback wakeups are synchronous, so the two processes mostly take turns on
one CPU and wall time is about the sum of both), and the codec's costs in a hot loop without I/O.

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
import timeit
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from tinymodels import build_tiny_models  # noqa: E402

from edgeoffload.backends.oip_wire import (  # noqa: E402
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
)
from edgeoffload.backends.remote import OipClient  # noqa: E402
from edgeoffload_host.serve.http import start_server  # noqa: E402

SIZE = 128
BREAKDOWN_REQUESTS = 500


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
    """The far end, in its own process as an endpoint would be: the OIP endpoint and the echo server.
    Each line on stdin is answered with this process's CPU time so far; EOF ends it."""
    server = start_server(model_dir, workers=1, threads=1)
    echo = EchoServer()
    print(f"ready {server.port} {echo.port}", flush=True)
    for _ in sys.stdin:
        print(time.process_time(), flush=True)
    server.close()
    return 0


class _Far:
    """The child process, with the ports it serves and its CPU time on request."""

    def __init__(self, model_dir: Path):
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", str(model_dir)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        _, oip, echo = self.proc.stdout.readline().split()
        self.oip_port, self.echo_port = int(oip), int(echo)

    def cpu_s(self) -> float:
        self.proc.stdin.write("cpu\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class _Rig:
    """The clients of (a), (a') and (b), set up against the child's endpoint and echo server."""

    def __init__(self, far: _Far, model: str):
        url = f"http://127.0.0.1:{far.oip_port}"
        self.model = model
        self.binary, self.json = OipClient(url, binary="always"), OipClient(url, binary="never")
        meta = self.binary.model_metadata(model, timeout_s=5)
        x = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
        self.inputs = [(meta["inputs"][0]["name"], x)]
        self.probe = self.binary.infer(model, self.inputs, timeout_s=5)
        self.raw = socket.create_connection(("127.0.0.1", far.echo_port))
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.raw.sendall(struct.pack("<II", self.probe.bytes_sent, self.probe.bytes_received))
        self.request_bytes = bytes(self.probe.bytes_sent)
        self.reply = memoryview(bytearray(self.probe.bytes_received))

    def oip(self, client: OipClient) -> tuple[float, float, float]:
        """(wire ms, total ms, compute ms) of one infer."""
        r = client.infer(self.model, self.inputs, timeout_s=5)
        return r.total_ms - (r.server_ms or 0.0), r.total_ms, r.server_ms or 0.0

    def tcp(self) -> float:
        t0 = time.perf_counter()
        self.raw.sendall(self.request_bytes)
        _recv_exactly(self.raw, self.reply)
        return (time.perf_counter() - t0) * 1e3

    def close(self) -> None:
        self.raw.close()
        self.binary.close()
        self.json.close()


def _measure(rig: _Rig, iterations: int, warmup: int) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {k: [] for k in ("wire_bin", "wire_json", "tcp", "total_bin", "total_json")}
    for i in range(warmup + iterations):
        wire, total, _ = rig.oip(rig.binary)
        t_tcp = rig.tcp()
        if i >= warmup:
            rows["wire_bin"].append(wire)
            rows["total_bin"].append(total)
            rows["tcp"].append(t_tcp)
    for i in range(warmup // 10 + max(iterations // 10, 20)):
        wire, total, _ = rig.oip(rig.json)
        if i >= warmup // 10:
            rows["wire_json"].append(wire)
            rows["total_json"].append(total)
    return rows


def _cpu_per_request(far: _Far, run, n: int) -> tuple[float, float, float, float]:
    """Median client CPU, mean server CPU, mean compute and median wall per request, in us."""
    client, walls, compute = [], [], 0.0
    server0 = far.cpu_s()
    for _ in range(n):
        c0 = time.process_time()
        wall, computed = run()
        client.append(time.process_time() - c0)
        walls.append(wall)
        compute += computed
    server_s = far.cpu_s() - server0
    return (statistics.median(client) * 1e6, server_s / n * 1e6, compute / n * 1e3,
            statistics.median(walls) * 1e3)


def _codec_us(rig: _Rig) -> dict[str, float]:
    """Each codec step in a hot loop (no I/O), as a floor for what the wire must cost."""
    body, headers = encode_infer_request(rig.inputs, binary=True)
    length = headers["Inference-Header-Content-Length"]
    outputs = list(rig.probe.outputs.items())
    answer, answer_headers = encode_infer_response(rig.model, outputs, binary=True, request_id=None,
                                                   parameters={"compute_time_ms": 0.25}, model_version="1")
    steps = {
        "client encode": lambda: encode_infer_request(rig.inputs, binary=True),
        "server decode": lambda: decode_infer_request(body, length, max_tensor_bytes=1 << 26),
        "server encode": lambda: encode_infer_response(rig.model, outputs, binary=True, request_id=None,
                                                       parameters={"compute_time_ms": 0.25}, model_version="1"),
        "client decode": lambda: decode_infer_response(answer, answer_headers["Inference-Header-Content-Length"]),
    }
    return {name: min(timeit.repeat(step, number=500, repeat=3)) / 500 * 1e6 for name, step in steps.items()}


def _breakdown(far: _Far, rig: _Rig) -> dict:
    def oip():
        wire, _, computed = rig.oip(rig.binary)
        return wire, computed

    return {"oip": _cpu_per_request(far, oip, BREAKDOWN_REQUESTS),
            "tcp": _cpu_per_request(far, lambda: (rig.tcp(), 0.0), BREAKDOWN_REQUESTS),
            "codec": _codec_us(rig)}


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
    far = _Far(model_dir)
    try:
        rig = _Rig(far, paths["q"].stem)
        rows = _measure(rig, args.iterations, args.warmup)
        breakdown = _breakdown(far, rig)
        rig.close()
    finally:
        far.close()
    _report(rows, args.iterations, rig.probe, breakdown)
    return 0


def _stats(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


def _report(rows: dict, iterations: int, probe, breakdown: dict) -> None:
    print(f"request {probe.bytes_sent} B up, response {probe.bytes_received} B down (binary); {iterations} "
          f"iterations; endpoint and echo server in one child process, a thread per connection; clients here")
    labels = [("(a) OIP binary, minus compute", "wire_bin"), ("(b) raw TCP, same bytes", "tcp"),
              ("(a') OIP JSON, minus compute", "wire_json"), ("OIP binary, total", "total_bin"),
              ("OIP JSON, total", "total_json")]
    for label, key in labels:
        median, p90 = _stats(rows[key])
        print(f"  {label:32s} median {median * 1e3:8.1f} us   p90 {p90 * 1e3:8.1f} us   (n={len(rows[key])})")
    (a, a90), (b, b90) = _stats(rows["wire_bin"]), _stats(rows["tcp"])
    print(f"ratio (a)/(b), binary: median {a / b:.2f}, p90 {a90 / b90:.2f}  (goal <= 1.3)")
    print(f"ratio (a')/(b), JSON: median {_stats(rows['wire_json'])[0] / b:.2f}")
    print(f"ratio JSON/binary round trip (total): {_stats(rows['total_json'])[0] / _stats(rows['total_bin'])[0]:.2f}")
    print(f"where the time goes, CPU per request ({BREAKDOWN_REQUESTS} of each, run alone):")
    client, server, compute, wall = breakdown["oip"]
    print(f"  (a) client {client:6.1f} us + server {server - compute:6.1f} us outside the model "
          f"(model {compute:.1f} us) = {client + server - compute:6.1f} us; wall minus model {wall:6.1f} us")
    client, server, _, wall_b = breakdown["tcp"]
    print(f"  (b) client {client:6.1f} us + server {server:6.1f} us = {client + server:6.1f} us; wall {wall_b:6.1f} us")
    print(f"  ratio (a)/(b) run alone: {wall / wall_b:.2f}  (interleaved, (b) runs with the caches (a) just left cold)")
    print("  codec in a hot loop, no I/O: " + ", ".join(f"{k} {v:.1f} us" for k, v in breakdown["codec"].items()))


if __name__ == "__main__":
    sys.exit(main())
