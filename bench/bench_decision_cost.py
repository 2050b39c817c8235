"""Decision cost per request over the fastest local inference in the model set, measured in one run.

Sets up the real daemon pieces (service, TFLite CPU targets, the real endpoint on loopback) on the demo's
model set (MobileNet 32 float and int8; built into --models-dir if missing), then measures side by side:
  - the fastest local inference: median of each model on each CPU target, the smallest of them;
  - the decision as requests pay it: a cached decision (nothing material changed) and a fresh one;
  - how often a real stream of requests needs a fresh decision (estimates moving > 2 %, probes).
Goal: effective decision cost <= 1 % of the fastest local inference.

    python bench/bench_decision_cost.py [--models-dir demo-out/models] [--requests 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from edgeoffload.config import load_config
from edgeoffload.service import Service
from edgeoffload_host.serve.http import start_server


def _config(tmp: Path, models: Path, url: str) -> Path:
    (tmp / "policy.yaml").write_text(yaml.safe_dump({"version": 1, "objective": "energy", "idle_mode": "low"}))
    cfg = {"version": 1, "device_id": "bench", "state_dir": str(tmp / "state"), "policy_file": str(tmp / "policy.yaml"),
           "models": [{"name": p.stem, "file": str(p), "remote_name": "mobilenet_32"}
                      for p in (models / "mobilenet_32.tflite", models / "mobilenet_q_32.tflite")],
           "targets": [{"name": "cpu1", "type": "tflite_cpu", "threads": 1},
                       {"name": "cpu2", "type": "tflite_cpu", "threads": 2}],
           "endpoints": [{"name": "offload", "url": url, "health_interval_s": 0.5}],
           "profiling": {"warmup_runs": 5, "runs": 50}, "mqtt": {"enabled": False}}
    (tmp / "d.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "d.yaml"


def _median_us(fn, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=Path("demo-out/models"))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not (args.models_dir / "mobilenet_q_32.tflite").exists():
        from edgeoffload_host.models.build import build_models
        build_models(args.models_dir, weights="none", dataset="digits", epochs=1, force=True)
    args.models_dir = args.models_dir.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="bench-decision-"))
    server = start_server(args.models_dir, port=0, workers=2, threads=1)
    svc = Service(load_config(_config(tmp, args.models_dir, server.url)))
    svc.start()
    try:
        ex = svc.executor
        rng = np.random.default_rng(0)
        names = list(ex.models)
        before = ex.decisions_computed
        for i in range(args.requests):
            m = names[i % len(names)]
            ex.run(m, rng.integers(0, 256, ex.models[m].input_shape, dtype=np.uint8))
        fresh_rate = (ex.decisions_computed - before) / args.requests
        local, warm, cold = {}, [], []
        for _ in range(args.rounds):  # interleaved, so drift on this shared machine hits all alike
            for m in names:
                x = rng.integers(0, 256, ex.models[m].input_shape, dtype=np.uint8)
                for t, backend in svc.local.items():
                    local.setdefault((m, t), []).append(_median_us(lambda: backend.run(m, x), 200))
                warm.append(_median_us(lambda: ex.decide(m), 2000))

                def fresh():
                    ex.epoch.bump()  # invalidate, as a moved estimate would
                    ex.decide(m)
                cold.append(_median_us(fresh, 500))
        local_med = {k: statistics.median(v) for k, v in local.items()}
        fastest_key = min(local_med, key=local_med.get)
        fastest = local_med[fastest_key]
        warm_us, cold_us = statistics.median(warm), statistics.median(cold)
        effective = (1 - fresh_rate) * warm_us + fresh_rate * cold_us
        for (m, t), us in sorted(local_med.items()):
            print(f"local inference {m:<16} on {t}: {us:8.1f} us (median)")
        print(f"fastest local inference: {fastest_key[0]} on {fastest_key[1]}, {fastest:.1f} us")
        print(f"decision, cached: {warm_us:.2f} us  fresh: {cold_us:.2f} us  "
              f"fresh in a {args.requests}-request stream: {100 * fresh_rate:.1f} %")
        print(f"ratio cached/fastest local: {100 * warm_us / fastest:.2f} %")
        print(f"ratio fresh/fastest local:  {100 * cold_us / fastest:.2f} %")
        print(f"ratio effective/fastest local: {100 * effective / fastest:.2f} %  (goal <= 1 %)")
    finally:
        svc.stop()
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
