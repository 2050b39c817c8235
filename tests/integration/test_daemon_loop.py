"""The whole loop in one process: service + real endpoint over loopback + real mosquitto + real TFLite."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from loop_helpers import model_dir, write_config, write_policy  # noqa: E402

from edgeoffload.service import Service  # noqa: E402
from edgeoffload_host.serve.http import start_server  # noqa: E402

TOPIC = "edgeoffload/v1/test-board/"


@pytest.fixture
def models(tmp_path, tiny_models):
    return model_dir(tmp_path, tiny_models)


@pytest.fixture
def endpoint(models):
    server = start_server(models, port=0, workers=2, threads=1)
    yield server
    server.close()


@pytest.fixture
def service_factory(tmp_path, models, run_service):
    def make(endpoint_url=None, broker=None, **extra) -> Service:
        return run_service(write_config(tmp_path, models, endpoint_url=endpoint_url, broker=broker, **extra))

    return make


def image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def test_requests_are_decided_executed_and_reported(service_factory, endpoint, mosquitto, mqtt_probe):
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "#",))
    svc = service_factory(endpoint.url, (mosquitto.host, mosquitto.port))
    assert svc.reporter.wait_connected(5)
    outcomes = [svc.infer(m, image(i)) for i, m in enumerate(["tiny_16", "tiny_q_16"] * 5)]
    # Over the assumed Ethernet link (20 ms RTT) a 16x16 model runs locally; the decision says why.
    assert {o.target for o in outcomes} == {"cpu1"}
    assert all(o.output.shape == (1, 10) and abs(float(o.output.sum()) - 1) < 0.05 for o in outcomes)
    status = probe.wait_for(TOPIC + "status", lambda m: m.json()["state"] == "running").json()
    assert probe.wait_for(TOPIC + "availability").json()["state"] == "online"
    assert status["schema"] == 1 and status["energy_source"] == "modelled"
    # thermal zones and cpufreq as read now (this host's /sys: zones and policies may be absent, never an error)
    assert set(status["environment"]) == {"thermal", "cpufreq"}
    assert status["energy"]["label"] == "modelled" and status["energy"]["known"] is True
    targets = {t["name"]: t for t in status["targets"]}
    assert targets["cpu1"]["available"] and targets["offload"]["available"]
    assert not targets["npu"]["available"] and "no-such-delegate.so" in targets["npu"]["reason"]
    assert any("npu" in r for r in status["degraded"])
    profile = probe.wait_for(TOPIC + "profile").json()
    assert {(p["model"], p["target"]) for p in profile["profiles"]} == {("tiny_16", "cpu1"), ("tiny_q_16", "cpu1")}
    for p in profile["profiles"]:
        assert p["latency"]["n"] == 10 and p["warmup"]["n"] == 2 and p["energy_source"] == "modelled"
    deadline = time.monotonic() + 5
    while len(probe.messages(TOPIC + "decision")) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    decisions = [m.json() for m in probe.messages(TOPIC + "decision")]
    assert [d["seq"] for d in decisions] == list(range(1, 11))
    d = decisions[0]
    assert d["target"] == "cpu1" and d["reason"].startswith("cpu1: lowest latency")
    assert {o["target"] for o in d["options"]} == {"cpu1", "offload"}
    remote = next(o for o in d["options"] if o["kind"] == "remote")
    assert remote["rtt_ms"] < 20  # measured on loopback, no longer the Ethernet profile's 20 ms
    assert {"target": "npu"} .items() <= next(e for e in d["excluded"]).items()
    summary = probe.wait_for(TOPIC + "decisions/summary", lambda m: m.json()["requests"] == 10).json()
    assert summary["targets"]["cpu1"]["requests"] == 10


def test_offload_then_endpoint_stops_mid_run_and_no_request_is_lost(service_factory, endpoint, tmp_path,
                                                                    mosquitto, mqtt_probe):
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "#",))
    write_policy(tmp_path / "policy.yaml", allowed_targets=["offload"])
    svc = service_factory(endpoint.url, (mosquitto.host, mosquitto.port))
    assert svc.reporter.wait_connected(5)
    local_reference = svc.local["cpu1"].run("tiny_16", image(1)[None])
    first = [svc.infer("tiny_16", image(1)) for _ in range(5)]
    assert {o.target for o in first} == {"offload"} and not any(o.fallback for o in first)
    np.testing.assert_allclose(first[0].output, local_reference, atol=1e-5)  # same model, same answer
    assert svc.remote["offload"].describe()["server_ms"]["tiny_16"] > 0
    endpoint.close()
    after = [svc.infer(m, image(2)) for m in ["tiny_16", "tiny_q_16"] * 5]
    assert len(after) == 10 and all(o.output.shape == (1, 10) for o in after)
    assert all(o.target == "cpu1" and o.fallback for o in after)
    assert "offload to offload failed" in after[0].fallback_reason
    assert "ran locally: no usable target" in after[-1].fallback_reason
    assert svc.tally.summary()["targets"]["cpu1"]["fallbacks"] == 10
    assert not svc.remote["offload"].reachable
    # Every request was reported: 5 offloaded, then 10 answered locally and flagged as fallbacks.
    deadline = time.monotonic() + 5
    while len(probe.messages(TOPIC + "decision")) < 15 and time.monotonic() < deadline:
        time.sleep(0.02)
    reported = [m.json() for m in probe.messages(TOPIC + "decision")]
    assert [(d["target"], d["fallback"]) for d in reported] == [("offload", False)] * 5 + [("cpu1", True)] * 10
    assert reported[0]["actual_latency_ms"] > 0 and reported[5]["fallback_reason"]
    status = probe.wait_for(TOPIC + "status", lambda m: any(
        t["name"] == "offload" and not t["available"] for t in m.json()["targets"])).json()
    assert any(r.startswith("endpoint offload:") for r in status["degraded"])


def test_endpoint_down_at_start_comes_up_later(service_factory, models):
    from support import free_port
    port = free_port()
    svc = service_factory(f"http://127.0.0.1:{port}")
    assert not svc.remote["offload"].reachable
    assert svc.infer("tiny_16", image()).target == "cpu1"
    server = start_server(models, port=port)
    try:
        deadline = time.monotonic() + 5
        while not svc.remote["offload"].reachable and time.monotonic() < deadline:
            time.sleep(0.05)
        assert svc.remote["offload"].reachable
    finally:
        server.close()


def test_policy_hot_reload_and_a_bad_policy_keeps_the_previous(service_factory, tmp_path, mosquitto, mqtt_probe):
    probe = mqtt_probe(mosquitto.host, mosquitto.port, topics=(TOPIC + "#",))
    svc = service_factory(None, (mosquitto.host, mosquitto.port))
    assert svc.reporter.wait_connected(5)
    assert svc.policy.current.objective.value == "latency"
    write_policy(tmp_path / "policy.yaml", objective="energy", revision="r2")
    deadline = time.monotonic() + 5  # picked up by the file watcher (polls every second)
    while svc.policy.current.objective.value != "energy" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc.policy.current.revision == "r2"
    assert probe.wait_for(TOPIC + "events", lambda m: m.json()["event"] == "policy_applied")
    (tmp_path / "policy.yaml").write_text("version: 1\nobjective: fastest\nbogus: 1\n")
    assert svc.policy.reload() is False
    assert svc.policy.current.revision == "r2"  # still in force
    event = probe.wait_for(TOPIC + "events", lambda m: m.json()["event"] == "policy_rejected").json()
    assert "policy.yaml:2: objective" in event["error"] and "policy.yaml:3: bogus" in event["error"]
    status = probe.wait_for(TOPIC + "status", lambda m: m.json()["policy"]["error"] is not None).json()
    assert status["policy"]["revision"] == "r2"
    assert any(r.startswith("policy rejected") for r in status["degraded"])
    assert svc.infer("tiny_16", image()).decision.objective.value == "energy"


def test_profiles_persist_and_are_reused_after_a_restart(service_factory, tmp_path):
    first = service_factory(None)
    measured = {k: p.measured_unix_s for k, p in first.profiles.items()}
    first.stop()
    second = service_factory(None)
    assert {k: p.measured_unix_s for k, p in second.profiles.items()} == measured
    stored = json.loads((tmp_path / "state" / "profiles.json").read_text())
    assert stored["schema"] == 1 and len(stored["profiles"]) == 2
    forced = second.profile(model="tiny_16", force=True)
    assert len(forced) == 1 and forced[0].measured_unix_s > measured[("tiny_16", "cpu1")]


def test_a_corrupted_model_is_refused_and_the_rest_keeps_working(service_factory, models):
    data = bytearray((models / "tiny_q_16.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (models / "tiny_q_16.tflite").write_bytes(bytes(data))
    import hashlib
    good = hashlib.sha256((models / "tiny_16.tflite").read_bytes()).hexdigest()
    svc = service_factory(None, models=[
        {"name": "tiny_16", "file": str(models / "tiny_16.tflite"), "sha256": good},
        {"name": "tiny_q_16", "file": str(models / "tiny_q_16.tflite"), "sha256": good}])
    assert "tiny_q_16" in svc.model_errors and "sha256" in svc.model_errors["tiny_q_16"]
    assert svc.infer("tiny_16", image()).output.shape == (1, 10)
    from edgeoffload.errors import RequestError
    with pytest.raises(RequestError, match="unknown model 'tiny_q_16'"):
        svc.infer("tiny_q_16", image())
    with pytest.raises(RequestError, match=r"takes shape \[1, 16, 16, 3\], got \[8, 8, 3\]"):
        svc.infer("tiny_16", np.zeros((8, 8, 3), np.uint8))
