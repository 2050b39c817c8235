"""Infer over D-Bus against the same inference called in process, for a 128x128x3 uint8 tensor, in one run.

Starts a private dbus-daemon and the real daemon service (TFLite CPU target, MobileNet 128 int8 and float;
built into --models-dir if missing) publishing org.edgeoffload.Daemon1 on it. A client in a separate process
(as a local app would be) calls Infer through edgeoffload.api.dbus_client; the parent calls Service.infer, the
same path the D-Bus handler takes. Rounds alternate so both see the same machine load. Prints medians, the
ratio and the absolute overhead per call, split into the daemon's own run of the request (slower when a
second process competes for the caches) and the rest (the bus, marshalling, thread hand-offs); also what
pydbus's generic marshalling of the tensor would cost.

    python bench/bench_dbus_infer.py [--models-dir bench-out/models128] [--calls 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from edgeoffload.config import load_config
from edgeoffload.service import Service

MODELS = ("mobilenet_q_128", "mobilenet_128")
CLIENT = r"""
import json, sys, time
import numpy as np
from edgeoffload.api.dbus_client import DaemonClient
client = DaemonClient("session")
x = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
for line in sys.stdin:
    model, n = line.split()
    out = []
    for _ in range(int(n)):
        t0 = time.perf_counter()
        reply = client.infer(model, x)
        out.append(((time.perf_counter() - t0) * 1000.0, reply.latency_ms))
    print(json.dumps(out), flush=True)
"""


def _bus(tmp: Path) -> tuple[subprocess.Popen, str]:
    conf = tmp / "bus.conf"
    conf.write_text(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir={tmp}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
<allow own="*"/></policy></busconfig>""")
    proc = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--print-address", "--nofork"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return proc, proc.stdout.readline().strip()


def _config(tmp: Path, models: Path) -> Path:
    (tmp / "policy.yaml").write_text("version: 1\nobjective: latency\n")
    cfg = {"version": 1, "device_id": "bench", "state_dir": str(tmp / "state"), "policy_file": str(tmp / "policy.yaml"),
           "models": [{"name": m, "file": str(models / f"{m}.tflite")} for m in MODELS],
           "targets": [{"name": "cpu1", "type": "tflite_cpu", "threads": 1}],
           "profiling": {"warmup_runs": 3, "runs": 20}, "mqtt": {"enabled": False},
           "dbus": {"bus": "session", "decision_signals_per_s": 5}}
    (tmp / "d.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "d.yaml"


def _in_process(svc: Service, model: str, x: np.ndarray, n: int) -> list[tuple[float, float]]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        o = svc.infer(model, x)
        out.append(((time.perf_counter() - t0) * 1000.0, o.latency_ms))
    return out


def _generic_pydbus_ms(model: str, x: np.ndarray, calls: int = 3) -> float:
    """The same call through pydbus's proxy: the tensor becomes a list of ints each way."""
    import pydbus

    proxy = pydbus.connect(os.environ["DBUS_SESSION_BUS_ADDRESS"]).get("org.edgeoffload.Daemon1",
                                                                       "/org/edgeoffload/Daemon1")
    data, samples = x.tobytes(), []
    for _ in range(calls):
        t0 = time.perf_counter()
        proxy.Infer(model, data, list(x.shape), "uint8")
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=Path("bench-out/models128"))
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    args.models_dir = args.models_dir.resolve()
    if not all((args.models_dir / f"{m}.tflite").exists() for m in MODELS):
        from edgeoffload_host.models.build import build_models
        build_models(args.models_dir, inputs=(128,), weights="none", dataset="digits", epochs=1, force=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        bus, address = _bus(tmp)
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
        svc = Service(load_config(_config(tmp, args.models_dir)))
        client = None
        try:
            svc.start()
            if svc.dbus is None or set(MODELS) - set(svc.executor.models):
                print(f"cannot measure: D-Bus {svc.dbus_error or 'ok'}; models {svc.model_errors}", file=sys.stderr)
                return 1
            client = subprocess.Popen([sys.executable, "-c", CLIENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, env=os.environ.copy())
            x = np.random.default_rng(0).integers(0, 256, (1, 128, 128, 3), dtype=np.uint8)
            print(f"Infer, 128x128x3 uint8 ({x.nbytes} bytes), cpu1, {args.rounds} alternating rounds of "
                  f"{args.calls} calls; medians:")
            for model in MODELS:
                local, remote = [], []
                for _ in range(args.rounds):
                    local += _in_process(svc, model, x, args.calls)
                    client.stdin.write(f"{model} {args.calls}\n")
                    client.stdin.flush()
                    remote += json.loads(client.stdout.readline())
                lm, rm = (statistics.median(t for t, _ in local), statistics.median(t for t, _ in remote))
                served = statistics.median(ms for _, ms in remote)
                print(f"  {model:<16} in process {lm:8.3f} ms   over D-Bus {rm:8.3f} ms   ratio {rm / lm:5.2f}x   "
                      f"overhead {rm - lm:6.3f} ms/call")
                print(f"  {'':<16} of which the daemon's own run of the request took {served:.3f} ms over D-Bus "
                      f"(in process {statistics.median(ms for _, ms in local):.3f} ms): the bus and marshalling "
                      f"{rm - served:.3f} ms")
            print(f"  for scale: the same call through pydbus's generic proxy (tensor as a list of ints): "
                  f"{_generic_pydbus_ms(MODELS[0], x[0]):.1f} ms")
        finally:
            if client is not None:
                client.stdin.close()
                client.wait(10)
            svc.stop()
            bus.terminate()
            bus.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
