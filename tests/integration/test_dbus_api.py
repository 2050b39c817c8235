"""The D-Bus API of an in-process Service on a private bus, from pydbus and from clients that are not ours
(gdbus, busctl): introspection, every method and property, named errors, policy changes, signals."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from dbus_helpers import (  # noqa: E402
    ERROR, XML_FILE, Monitor, busctl, busctl_failure, busctl_members, call_error,
    gdbus_bytes, gdbus_call, gdbus_error, gdbus_value, interface_members, tool, wait_until,
)
from loop_helpers import model_dir, write_policy  # noqa: E402
from support import free_port  # noqa: E402
from tinymodels import run_directly  # noqa: E402

import edgeoffload  # noqa: E402
from edgeoffload.engine.profiles import utc_iso  # noqa: E402
from edgeoffload_host.serve.http import start_server  # noqa: E402

DEST = ["org.edgeoffload.Daemon1", "/org/edgeoffload/Daemon1", "org.edgeoffload.Daemon1"]
SHAPE = [1, 16, 16, 3]


def image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, SHAPE, dtype=np.uint8)


def decoded(output: bytes, shape, dtype: str) -> np.ndarray:
    assert dtype == "float32"
    return np.frombuffer(bytes(output), dtype="<f4").reshape(shape)


def test_introspection_matches_the_checked_in_xml(dbus_service, dbus_client, dbus_session):
    dbus_service()
    expected = interface_members(XML_FILE.read_text())
    assert len([k for k in expected if k.startswith("method")]) == 10 and "signal Decision" in expected
    assert interface_members(dbus_client.proxy().Introspect()) == expected
    xml = subprocess.run(
        [tool("gdbus"), "introspect", "--xml", "--address", dbus_session, "--dest", DEST[0], "--object-path",
         DEST[1]], capture_output=True, text=True, timeout=60, check=True).stdout
    assert interface_members(xml) == expected
    assert busctl_members(busctl(dbus_session, "introspect", *DEST, json_output=False)) == expected


def test_infer_answers_like_a_direct_tflite_run_for_every_client(dbus_service, dbus_client, dbus_session,
                                                                 tiny_models):
    dbus_service()
    x = image(1)
    reference = run_directly(tiny_models["float"], x)
    reply = dbus_client.proxy().Infer("tiny_16", x.tobytes(), SHAPE, "uint8")
    out, shape, dtype, target, latency_ms, energy_mj, source = reply
    assert (shape, dtype, target, source) == ([1, 10], "float32", "cpu1", "modelled")
    assert latency_ms > 0 and energy_mj > 0
    np.testing.assert_allclose(decoded(out, shape, dtype), reference, rtol=1e-6, atol=1e-7)
    # gdbus: the tensor as GVariant text, the batch of 1 left out of the shape
    got = gdbus_value(gdbus_call(dbus_session, "Infer", "tiny_16", gdbus_bytes(x.tobytes()), "@at [16, 16, 3]",
                                 "uint8"), "(ayatssdds)")
    assert got[1:4] == ([1, 10], "float32", "cpu1")
    np.testing.assert_allclose(decoded(got[0], got[1], got[2]), reference, rtol=1e-6, atol=1e-7)
    # busctl: the tensor as a counted list of numbers, the answer as JSON
    reply = busctl(dbus_session, "call", *DEST, "Infer", "sayats", "tiny_16", str(x.size),
                   *map(str, x.ravel()), "4", *map(str, SHAPE), "uint8")
    assert reply["type"] == "ayatssdds" and reply["data"][1:4] == [[1, 10], "float32", "cpu1"]
    np.testing.assert_allclose(decoded(bytes(reply["data"][0]), [1, 10], "float32"), reference, rtol=1e-6,
                               atol=1e-7)


def test_decide_list_models_policy_and_profiles(dbus_service, dbus_client, dbus_session, tmp_path):
    svc = dbus_service()
    target, reason, options = dbus_client.proxy().Decide("tiny_16")
    assert target == "cpu1" and reason.startswith("cpu1: lowest latency")
    assert [o[:2] for o in options] == [("cpu1", "local")] and options[0][2] > 0 and options[0][4] is True
    assert busctl(dbus_session, "call", *DEST, "Decide", "s", "tiny_q_16")["data"][0] == "cpu1"
    listed = gdbus_value(gdbus_call(dbus_session, "ListModels"), "(a(ssatss))")[0]
    assert listed == dbus_client.proxy().ListModels()
    assert listed == [(name, hashlib.sha256((tmp_path / "models" / f"{name}.tflite").read_bytes()).hexdigest(), SHAPE,
                       "uint8", "tiny_16") for name in ("tiny_16", "tiny_q_16")]
    assert dbus_client.proxy().GetPolicy() == (tmp_path / "policy.yaml").read_text()
    assert gdbus_value(gdbus_call(dbus_session, "GetPolicy"), "(s)")[0] == dbus_client.proxy().GetPolicy()
    profiles = dbus_client.proxy().GetProfiles()
    assert [p[:2] for p in profiles] == [("tiny_16", "cpu1"), ("tiny_q_16", "cpu1")]
    for p in profiles:
        mean, p50, p99, stdev, energy, first, runs, utc = p[2:]
        assert 0 < p50 <= p99 and mean > 0 and stdev >= 0 and energy > 0 and first > 0 and runs == 10
        assert utc == utc_iso(svc.profiles[(p[0], "cpu1")].measured_unix_s) and utc.endswith("Z")
    assert busctl(dbus_session, "call", *DEST, "GetProfiles")["data"][0] == [list(p) for p in profiles]


def test_profile_one_pair_and_everything(dbus_service, dbus_client):
    dbus_service()
    before = {p[0]: p[9] for p in dbus_client.proxy().GetProfiles()}
    one = dbus_client.proxy().Profile("tiny_16", "cpu1")
    assert [p[:2] for p in one] == [("tiny_16", "cpu1")] and one[0][8] == 10 and one[0][9] > before["tiny_16"]
    every = dbus_client.proxy().Profile("", "")  # npu is unavailable: only cpu1 is profiled
    assert sorted(p[:2] for p in every) == [("tiny_16", "cpu1"), ("tiny_q_16", "cpu1")]
    now = {p[0]: p[9] for p in dbus_client.proxy().GetProfiles()}
    assert now == {p[0]: p[9] for p in every} and now["tiny_q_16"] > before["tiny_q_16"]


def test_every_property_by_get_and_get_all(dbus_service, dbus_client, dbus_session, tmp_path):
    svc = dbus_service()
    proxy = dbus_client.proxy()
    npu_reason = f"delegate {tmp_path / 'no-such-delegate.so'} not found"
    expected = {
        "Status": "degraded", "DeviceId": "test-board", "Version": edgeoffload.__version__,
        "PolicyVersion": svc.policy.current.digest, "Objective": "latency", "PolicyError": "",
        "EnergySource": "modelled", "Models": ["tiny_16", "tiny_q_16"],
    }
    for name, value in expected.items():
        assert getattr(proxy, name) == value, name
    assert len(proxy.PolicyVersion) == 12 and int(proxy.PolicyVersion, 16) >= 0
    assert len(proxy.Degraded) == 1 and proxy.Degraded[0].startswith(f"target npu: {npu_reason}")
    (cpu, npu) = proxy.Targets
    assert cpu == ("cpu1", "local", True, "") and npu[:3] == ("npu", "local", False) and npu_reason in npu[3]
    everything = dbus_client.properties()
    assert set(everything) == {k.split()[1] for k in interface_members(XML_FILE.read_text()) if "property" in k}
    assert {k: everything[k] for k in expected} == expected and everything["Targets"] == proxy.Targets
    foreign = gdbus_value(gdbus_call(dbus_session, "GetAll", DEST[2], interface="org.freedesktop.DBus.Properties"),
                          "(a{sv})")[0]
    assert foreign == everything
    for name in ("Status", "Models", "PolicyVersion"):
        got = busctl(dbus_session, "get-property", *DEST, name)
        assert got["data"] == everything[name], name
    assert gdbus_value(gdbus_call(dbus_session, "Get", DEST[2], "Degraded",
                                  interface="org.freedesktop.DBus.Properties"), "(v)")[0] == proxy.Degraded


REFUSED = [  # (method, arguments, error, message fragments)
    ("Infer", ("nope", bytes(768), SHAPE, "uint8"), "UnknownModel",
     ["unknown model 'nope'; this daemon serves: tiny_16, tiny_q_16"]),
    ("Infer", ("tiny_16", bytes(768 * 4), SHAPE, "float32"), "InvalidArgument",
     ["model tiny_16 takes uint8 tensors, got float32", "nothing is cast silently"]),
    ("Infer", ("tiny_16", bytes(192), [8, 8, 3], "uint8"), "InvalidArgument",
     ["model tiny_16 takes shape [1, 16, 16, 3] (or [16, 16, 3]), got [8, 8, 3]"]),
    ("Infer", ("tiny_16", bytes(767), SHAPE, "uint8"), "InvalidArgument",
     ["tensor has 767 bytes but shape [1, 16, 16, 3] of uint8 needs 768"]),
    ("Infer", ("tiny_16", bytes(1 << 20), [16, 16, 3], "uint8"), "InvalidArgument",
     ["tensor has 1048576 bytes but shape [16, 16, 3] of uint8 needs 768"]),
    ("Infer", ("tiny_16", bytes(1), [1] * 9, "uint8"), "InvalidArgument",
     ["shape has 9 dimensions; model tiny_16 takes [1, 16, 16, 3]"]),
    ("Infer", ("tiny_16", bytes(768), SHAPE, "uint7"), "InvalidArgument",
     ["dtype 'uint7' is not one of bool, uint8, int8", "(model tiny_16 takes uint8)"]),
    ("Decide", ("nope",), "UnknownModel", ["unknown model 'nope'"]),
    ("Profile", ("nope", "cpu1"), "UnknownModel", ["unknown model 'nope'"]),
    ("Profile", ("tiny_16", "gpu9"), "InvalidArgument",
     ["no local target named 'gpu9' (local targets: cpu1, npu)", "endpoints are not profiled"]),
    ("Profile", ("tiny_16", "npu"), "BackendUnavailable",
     ["target npu is unavailable: delegate ", "no-such-delegate.so not found"]),
]


def test_refused_calls_get_named_errors_and_the_service_keeps_answering(dbus_service, dbus_client, dbus_session):
    dbus_service()
    proxy = dbus_client.proxy()
    for method, args, error, fragments in REFUSED:
        name, message = call_error(getattr(proxy, method), *args)
        assert name == ERROR + error, (method, args[:1], message)
        assert all(f in message for f in fragments), (method, message)
        assert proxy.Infer("tiny_16", image().tobytes(), SHAPE, "uint8")[3] == "cpu1"
    # the same refusals seen by foreign clients: gdbus shows the name, busctl the message
    name, message = gdbus_error(gdbus_call(dbus_session, "Infer", "tiny_16", gdbus_bytes(bytes(5)),
                                           "@at [16, 16, 3]", "uint8"))
    assert name == ERROR + "InvalidArgument" and "tensor has 5 bytes but shape [16, 16, 3]" in message
    name, message = gdbus_error(gdbus_call(dbus_session, "Decide", "nope"))
    assert name == ERROR + "UnknownModel" and "unknown model 'nope'" in message
    assert "target npu is unavailable" in busctl_failure(dbus_session, "call", *DEST, "Profile", "ss", "", "npu")
    assert proxy.Status == "degraded" and proxy.Decide("tiny_16")[0] == "cpu1"


BAD_POLICIES = [  # (text, fragments of the PolicyInvalid message: line, key path, problem)
    ("version: 1\nobjective: [latency\n", ["SetPolicy:3: (file): invalid YAML"]),
    ("version: 1\nobjective: energy\nbogus: 2\n", ["SetPolicy:3: bogus: unknown key; valid keys here: version"]),
    ("version: 1\nobjective: energy\nmodels:\n  tiny_16:\n    deadline_ms: -5\n",
     ["SetPolicy:5: models.tiny_16.deadline_ms: must be greater than 0, got -5"]),
    ("version: 1\nobjective: fastest\nnever_offload: 3\n",
     ["SetPolicy:2: objective: must be one of: latency, energy, edp; got string 'fastest'",
      "SetPolicy:3: never_offload: expected a list, got integer 3"]),
]


def test_a_bad_set_policy_changes_nothing(dbus_service, dbus_client, dbus_session, tmp_path):
    dbus_service()
    proxy, policy_file = dbus_client.proxy(), tmp_path / "policy.yaml"
    version, original = proxy.PolicyVersion, policy_file.read_bytes()
    for text, fragments in BAD_POLICIES:
        name, message = call_error(proxy.SetPolicy, text)
        assert name == ERROR + "PolicyInvalid", message
        assert all(f in message for f in fragments), message
        assert proxy.PolicyVersion == version and proxy.Objective == "latency"
        assert policy_file.read_bytes() == original
        assert proxy.Infer("tiny_16", image().tobytes(), SHAPE, "uint8")[3] == "cpu1"
    name, message = gdbus_error(gdbus_call(dbus_session, "SetPolicy", "version: 1\nobjective: energy\nx: 1\n"))
    assert name == ERROR + "PolicyInvalid" and "SetPolicy:3: x: unknown key" in message
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".policy")) == []


def test_a_good_set_policy_writes_the_file_and_signals(dbus_service, dbus_client, dbus_signals, dbus_session, tmp_path):
    dbus_service()
    proxy, policy_file = dbus_client.proxy(), tmp_path / "policy.yaml"
    before, listing = proxy.PolicyVersion, sorted(p.name for p in tmp_path.iterdir())
    monitor = Monitor(dbus_session)
    try:
        text = "version: 1\nrevision: via-dbus\nobjective: energy\n"
        digest = proxy.SetPolicy(text)
        assert monitor.wait_for(f"org.edgeoffload.Daemon1.PolicyChanged ('{digest}', 'energy')")
    finally:
        monitor.close()
    assert digest != before and len(digest) == 12
    assert policy_file.read_text() == text and sorted(p.name for p in tmp_path.iterdir()) == listing
    assert (proxy.PolicyVersion, proxy.Objective, proxy.GetPolicy()) == (digest, "energy", text)
    assert dbus_signals.wait_for("PolicyChanged") == (digest, "energy")
    changed = dbus_signals.wait_for("PropertiesChanged", lambda a: "PolicyVersion" in a[1])
    assert changed[0] == DEST[2] and changed[1]["PolicyVersion"] == digest
    assert gdbus_value(gdbus_call(dbus_session, "GetPolicy"), "(s)")[0] == text


def test_reload_config_rejects_a_bad_policy_file_and_reports_restarts(dbus_service, dbus_client, dbus_signals,
                                                                       tmp_path):
    dbus_service()
    proxy, policy_file = dbus_client.proxy(), tmp_path / "policy.yaml"
    version = proxy.PolicyVersion
    policy_file.write_text("version: 1\nobjective: energy\nbogus: 1\n")
    name, message = call_error(proxy.ReloadConfig)
    assert name == ERROR + "PolicyInvalid"
    assert "policy file rejected, the previous policy stays in force" in message
    assert f"{policy_file}:3: bogus: unknown key" in message
    assert f"{policy_file}:3: bogus" in dbus_signals.wait_for("PolicyRejected")[0]
    assert (proxy.PolicyVersion, proxy.Objective) == (version, "latency")
    assert f"{policy_file}:3: bogus" in proxy.PolicyError and any("policy rejected" in d for d in proxy.Degraded)
    write_policy(policy_file, objective="edp")
    digest, restart_needed = proxy.ReloadConfig()
    assert (digest, restart_needed, proxy.Objective, proxy.PolicyError) == (proxy.PolicyVersion, [], "edp", "")
    config_file = tmp_path / "edgeoffloadd.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["profiling"]["runs"] = 20
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    assert proxy.ReloadConfig() == (digest, ["profiling"])
    config_file.write_text(config_file.read_text().replace("runs: 20", "runs: 0"))
    name, message = call_error(proxy.ReloadConfig)
    assert name == ERROR + "ConfigInvalid"
    line = config_file.read_text().splitlines().index("  runs: 0") + 1
    assert f"{config_file}:{line}: profiling.runs: must be between 1 and 1000000, got 0" in message
    assert proxy.Infer("tiny_16", image().tobytes(), SHAPE, "uint8")[3] == "cpu1" and proxy.Objective == "edp"


def test_decision_signal_after_infer(dbus_service, dbus_client, dbus_signals):
    dbus_service()
    reply = dbus_client.proxy().Infer("tiny_q_16", image(2).tobytes(), SHAPE, "uint8")
    model, target, latency_ms, energy_mj, fallback, dropped = dbus_signals.wait_for("Decision")
    assert (model, target, fallback, dropped) == ("tiny_q_16", "cpu1", False, 0)
    assert (latency_ms, energy_mj) == (reply[4], reply[5])


def test_decision_signals_are_rate_limited_and_count_the_dropped(dbus_service, dbus_client, dbus_signals):
    dbus_service(dbus={"decision_signals_per_s": 2})
    proxy = dbus_client.proxy()
    for i in range(30):
        proxy.Infer("tiny_16", image(i).tobytes(), SHAPE, "uint8")
    calls, deadline = 30, time.monotonic() + 120
    while True:  # one call at a time until one is signalled again (the bucket refills at 2 per second)
        seen = len(dbus_signals.named("Decision"))  # a reply comes after the signals of earlier calls
        proxy.Infer("tiny_16", image().tobytes(), SHAPE, "uint8")
        calls += 1
        try:
            wait_until(lambda: len(dbus_signals.named("Decision")) > seen, 3, "a Decision signal")
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    decisions = dbus_signals.named("Decision")
    dropped = [d[5] for d in decisions]
    assert len(decisions) + sum(dropped) == calls, dropped  # every request is signalled or counted
    assert sum(dropped) >= 10 and len(decisions) <= 20 and dropped[0] == 0 and dropped[-1] > 0, dropped


def test_target_availability_changes_are_signalled(dbus_service, dbus_client, dbus_signals, tmp_path,
                                                   tiny_models):
    folder, port = model_dir(tmp_path, tiny_models), free_port()
    server = start_server(folder, port=port)
    try:
        dbus_service(f"http://127.0.0.1:{port}")
        proxy = dbus_client.proxy()
        assert ("offload", "remote", True, "") in proxy.Targets
        server.close()
        target, available, reason = dbus_signals.wait_for("TargetAvailabilityChanged")
        assert (target, available) == ("offload", False) and reason
        assert any(t[0] == "offload" and not t[2] and t[3] == reason for t in proxy.Targets)
        assert any(d.startswith("endpoint offload:") for d in proxy.Degraded)
        assert dbus_signals.wait_for("PropertiesChanged", lambda a: "Targets" in a[1])
        server = start_server(folder, port=port)
        assert dbus_signals.wait_for("TargetAvailabilityChanged", lambda a: a[1]) == ("offload", True, "")
        assert ("offload", "remote", True, "") in proxy.Targets
    finally:
        server.close()
