"""`edgeoffload-host demo`: the whole edge-vs-offload loop on this machine, ending by itself.

Builds the small model set, starts the offload endpoint behind a link emulator (the study's Ethernet by
default), starts an embedded MQTT broker unless one is given, runs the daemon with a workload, prints a live
table of its decisions from MQTT, and ends with a summary and a plot in the manner of the study's Figure 4.1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from edgeoffload.decide.types import NETWORK_PROFILES
from edgeoffload.errors import EdgeOffloadError

DEVICE_ID = "demo"


class DemoCommand:
    name = "demo"
    help = "run the whole loop on this machine (models, endpoint, broker, daemon) and plot the result"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, default=Path("demo-out"), help="working folder (default demo-out/)")
        p.add_argument("--requests", type=int, default=90, help="requests the daemon replays (default 90)")
        p.add_argument("--link", choices=[*NETWORK_PROFILES, "loopback"], default="ethernet",
                       help="link emulated between daemon and endpoint (default ethernet, as in the study)")
        p.add_argument("--objective", choices=["latency", "energy", "edp"], default="latency")
        p.add_argument("--deadline-ms", type=float, default=None, help="deadline for every model")
        p.add_argument("--broker", default=None, metavar="HOST:PORT",
                       help="use this MQTT broker instead of the embedded one")
        p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs for the demo models")

    def run(self, args: argparse.Namespace) -> int:
        if args.requests < 3:
            raise EdgeOffloadError("--requests must be at least 3 (the demo runs three phases)")
        out = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        models = _step("models", lambda: _models(out / "models", args.epochs))
        with _Stack() as stack:
            server = _step("endpoint", lambda: stack.push(_Once(_start_endpoint(out / "models"))))
            url, link = server.url, server
            if args.link != "loopback":
                link = _step(f"link emulator ({args.link})", lambda: stack.push(_Once(_start_link(server, args.link))))
                url = f"http://127.0.0.1:{link.port}"
            host, port = _step("broker", lambda: _broker(args.broker, stack))
            cfg_path = _write_config(out, models, url, host, port, args)
            from edgeoffload_host.demo_watch import DaemonWatch
            watch = stack.push(DaemonWatch(host, port, DEVICE_ID))
            rc = _run_phases(cfg_path, out / "policy.yaml", watch, args, stop_endpoint=[link, server])
            time.sleep(0.5)  # the last messages are in flight
            return _finish(out, watch, args, rc)


def _run_phases(cfg_path: Path, policy_path: Path, watch, args, stop_endpoint: list) -> int:
    """Phase 1: the study's policy. Phase 2: an operator pushes an offload-only policy (SIGHUP).
    Phase 3: the endpoint goes away mid-run; requests fall back to local and none is lost."""
    proc = _start_daemon(cfg_path)
    third = args.requests // 3
    try:
        _wait_decisions(watch, proc, third)
        if proc.poll() is None:
            policy = yaml.safe_load(policy_path.read_text())
            policy.update(revision="demo-offload-only", allowed_targets=["offload"])
            policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
            print("[demo] --- phase 2: operator pushes a policy allowing only the offload target (SIGHUP) ---",
                  flush=True)
            proc.send_signal(signal.SIGHUP)
        _wait_decisions(watch, proc, 2 * third)
        if proc.poll() is None:
            print("[demo] --- phase 3: the offload endpoint goes down mid-run ---", flush=True)
            for item in stop_endpoint:
                item.close()
        return proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def _wait_decisions(watch, proc, count: int, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(watch.decisions) < count and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


class _Once:
    """Closes the wrapped object once, however often close() is called."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self._closed = False

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._inner.close()


def _step(what: str, fn):
    t0 = time.monotonic()
    result = fn()
    print(f"[demo] {what}: ready in {time.monotonic() - t0:.1f} s", flush=True)
    return result


class _Stack:
    """Closes what was started, in reverse order, whatever happens."""

    def __init__(self) -> None:
        self._items: list = []

    def push(self, item):
        self._items.append(item)
        return item

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for item in reversed(self._items):
            try:
                item.close()
            except Exception as e:  # keep closing the rest
                print(f"[demo] closing {type(item).__name__}: {e}", file=sys.stderr)


def _models(models_dir: Path, epochs: int) -> list[Path]:
    from edgeoffload_host.models.build import build_models
    wanted = [models_dir / "mobilenet_32.tflite", models_dir / "mobilenet_q_32.tflite"]
    if all(p.exists() for p in wanted):
        return wanted
    build_models(models_dir, models=("mobilenet",), inputs=(32,), variants=("float", "q"), weights="none",
                 dataset="digits", epochs=epochs, seed=0, force=True)
    return wanted


def _start_endpoint(models_dir: Path):
    from edgeoffload_host.serve.http import start_server
    return start_server(models_dir, host="127.0.0.1", port=0, workers=2, threads=2)


def _start_link(server, link: str):
    from edgeoffload_host.serve.linkemu import LinkEmulator
    p = NETWORK_PROFILES[link]
    emu = LinkEmulator("127.0.0.1", server.port, one_way_latency_ms=p.one_way_latency_ms,
                       upload_bytes_per_s=p.upload_bytes_per_s, download_bytes_per_s=p.download_bytes_per_s)
    emu.start()
    return emu


def _broker(given: str | None, stack: _Stack) -> tuple[str, int]:
    if given:
        host, _, port = given.rpartition(":")
        if not host or not port.isdigit():
            raise EdgeOffloadError(f"--broker {given!r}: expected HOST:PORT")
        return host, int(port)
    from edgeoffload_host.serve.broker import EmbeddedBroker
    broker = stack.push(EmbeddedBroker().start())
    return broker.host, broker.port


def _write_config(out: Path, models: list[Path], url: str, host: str, port: int, args) -> Path:
    policy = {"version": 1, "revision": "demo", "objective": args.objective, "idle_mode": "low",
              "network_profile": args.link if args.link in NETWORK_PROFILES else "ethernet"}
    if args.deadline_ms:
        policy["default_deadline_ms"] = args.deadline_ms
    (out / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    config = {
        "version": 1, "device_id": DEVICE_ID, "state_dir": str(out / "state"), "policy_file": str(out / "policy.yaml"),
        "models": [{"name": p.stem, "file": str(p), "remote_name": "mobilenet_32"} for p in models],
        "targets": [{"name": "cpu1", "type": "tflite_cpu", "threads": 1},
                    {"name": "cpu2", "type": "tflite_cpu", "threads": 2},
                    {"name": "npu", "type": "tflite_npu"}],
        "endpoints": [{"name": "offload", "url": url, "health_interval_s": 1.0}],
        "profiling": {"warmup_runs": 3, "runs": 50, "on_start": True},
        "mqtt": {"host": host, "port": port, "summary_interval_s": 2.0},
        "dbus": {"bus": "none"},  # the demo reports over MQTT; a PC has no system-bus policy for the daemon
        "workload": {"requests": args.requests, "interval_ms": 30},
        "logging": {"level": "warning"},
    }
    path = out / "edgeoffloadd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _start_daemon(cfg_path: Path) -> subprocess.Popen:
    args = ["--config", str(cfg_path), "--exit-after-workload"]
    cmd = [sys.executable, "-c", "import sys; from edgeoffload.cli import daemon_main; sys.exit(daemon_main())", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    print(f"[demo] daemon: edgeoffloadd {' '.join(args)}", flush=True)
    return subprocess.Popen(cmd, env=env)


def _finish(out: Path, watch, args, rc: int) -> int:
    decisions = list(watch.decisions)
    profile = watch.latest.get("profile", {}).get("profiles", [])
    if rc != 0 or not decisions:
        print(f"[demo] the daemon exited with {rc} after {len(decisions)} decisions", file=sys.stderr)
        return rc or 1
    latency: dict[str, dict[str, float]] = {}
    for p in profile:
        latency.setdefault(p["model"], {})[p["target"]] = p["latency"]["mean_ms"]
    threshold = {}
    for model in latency:
        remote = [o["latency_ms"] for d in decisions if d["model"] == model for o in d["options"]
                  if o["kind"] == "remote"]
        actual = [d["actual_latency_ms"] for d in decisions if d["model"] == model and d["target"] == "offload"]
        if remote:
            threshold[model] = statistics.fmean(remote)
        if actual:
            latency[model]["offload (actual)"] = statistics.fmean(actual)
    _print_summary(decisions, watch.latest.get("decisions/summary"), threshold, args.link)
    from edgeoffload_host.report.latency import plot_latency
    png = plot_latency(latency, threshold, out / "latency.png",
                       f"Latency per model and target; dashed: offload over {args.link}")
    (out / "decisions.json").write_text(json.dumps(decisions, indent=1))
    print(f"[demo] plot: {png}\n[demo] decisions: {out / 'decisions.json'}")
    print("next: edgeoffloadctl check-config conf/edgeoffloadd.yaml conf/policies/*.yaml")
    return 0


def _print_summary(decisions: list[dict], summary: dict | None, threshold: dict[str, float], link: str) -> None:
    print(f"\n[demo] {len(decisions)} requests decided and executed")
    by_target: dict[str, list[dict]] = {}
    for d in decisions:
        by_target.setdefault(d["target"], []).append(d)
    print(f"{'target':<10} {'requests':>8} {'fallbacks':>9} {'mean pred ms':>12} {'mean actual ms':>14}")
    for target, ds in sorted(by_target.items()):
        pred = [d["predicted_latency_ms"] for d in ds if d["predicted_latency_ms"] is not None]
        print(f"{target:<10} {len(ds):>8} {sum(d['fallback'] for d in ds):>9} "
              f"{statistics.fmean(pred) if pred else float('nan'):>12.2f} "
              f"{statistics.fmean(d['actual_latency_ms'] for d in ds):>14.2f}")
    for model, ms in threshold.items():
        print(f"[demo] {model}: offloading over {link} pays when local inference exceeds {ms:.1f} ms")
