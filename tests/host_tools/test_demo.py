"""README command 1's main job, `edgeoffload-host demo`, end to end with the models the build test made."""

import json
import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_three_phases_and_ends_by_itself(built, tmp_path):
    models, _ = built
    shutil.copytree(models, tmp_path / "models")  # the demo builds only what is missing
    cmd = [sys.executable, "-m", "edgeoffload_host.cli", "demo", "--out", str(tmp_path), "--requests", "15"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "phase 2: operator pushes a policy allowing only the offload target" in out
    assert "phase 3: the offload endpoint goes down mid-run" in out
    assert "[demo] 15 requests decided and executed" in out
    assert "offloading over ethernet pays when local inference exceeds" in out
    assert out.rstrip().splitlines()[-1].startswith("next: ")
    decisions = json.loads((tmp_path / "decisions.json").read_text())
    assert [d["seq"] for d in decisions] == list(range(1, 16))  # none lost
    targets = [d["target"] for d in decisions]
    assert targets[0] in ("cpu1", "cpu2")  # the study's policy keeps 32 px models local on Ethernet
    assert "offload" in targets  # the pushed policy offloads
    first_fallback = next(i for i, d in enumerate(decisions) if d["fallback"])
    assert all(d["fallback"] and d["target"] != "offload" for d in decisions[first_fallback:])
    offloaded = [d for d in decisions if d["target"] == "offload"]
    assert all(15 < d["actual_latency_ms"] < 500 for d in offloaded)  # 20 ms emulated RTT and more
    assert (tmp_path / "latency.png").stat().st_size > 10_000
