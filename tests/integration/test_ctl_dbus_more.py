"""`edgeoffloadctl policy`, `reload` and `watch` against a Service on a private bus, and the installed console
script as a real process (status, infer, policy set, watch; the bus named by --bus or EDGEOFFLOAD_BUS)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from dbus_helpers import ctl, ctl_script, one_error_line, wait_for_subscriber  # noqa: E402
from tinymodels import run_directly  # noqa: E402

from edgeoffload.config import load_policy  # noqa: E402
from edgeoffload.engine.images import load_tensor  # noqa: E402

SHAPE = [1, 16, 16, 3]
GOOD = "version: 1\nrevision: from-ctl\nobjective: energy\n"
BAD = "version: 1\nobjective: energy\nbogus: 1\n"
BAD_LINE = "3: bogus: unknown key; valid keys here: version, revision, objective"


def policy_files(tmp_path: Path) -> tuple[Path, Path]:
    (folder := tmp_path / "mine").mkdir()
    (good := folder / "good.yaml").write_text(GOOD)
    (bad := folder / "bad.yaml").write_text(BAD)
    return good, bad


def script(*argv: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed edgeoffloadctl as a process; EDGEOFFLOAD_BUS only when `env` sets it."""
    environ = {k: v for k, v in os.environ.items() if k != "EDGEOFFLOAD_BUS"}
    return subprocess.run([ctl_script(), *argv], capture_output=True, text=True, timeout=timeout,
                          env={**environ, **(env or {})})


def test_policy_show_check_and_set(dbus_service, dbus_session, dbus_client, tmp_path, capsys):
    dbus_service()
    good, _ = policy_files(tmp_path)
    in_force, before = tmp_path / "policy.yaml", dbus_client.properties()["PolicyVersion"]
    status, out, err = ctl(capsys, "policy", "show", "--bus", dbus_session)
    assert (status, err, out) == (0, "", in_force.read_text())
    digest = load_policy(good).digest
    status, out, err = ctl(capsys, "policy", "check", str(good))  # no daemon needed
    assert (status, err, out) == (0, "", f"{good}: ok (digest {digest}, objective energy)\n")
    status, out, err = ctl(capsys, "policy", "set", str(good), "--bus", dbus_session)
    assert (status, err, out) == (0, "", f"policy from {good} applied (digest {digest})\n")
    assert digest != before and dbus_client.properties()["PolicyVersion"] == digest
    assert in_force.read_text() == GOOD and dbus_client.properties()["Objective"] == "energy"
    status, out, err = ctl(capsys, "policy", "show", "--json", "--bus", dbus_session)
    assert (status, err) == (0, "")
    assert json.loads(out) == {"digest": digest, "objective": "energy", "error": None, "text": GOOD}
    status, out, err = ctl(capsys, "policy", "set", str(good), "--json", "--bus", dbus_session)
    assert (status, json.loads(out)) == (0, {"file": str(good), "digest": digest})


def test_a_bad_policy_is_refused_before_it_reaches_the_daemon(dbus_service, dbus_session, dbus_client, tmp_path,
                                                              capsys):
    dbus_service()
    _, bad = policy_files(tmp_path)
    in_force = tmp_path / "policy.yaml"
    text, version = in_force.read_bytes(), dbus_client.properties()["PolicyVersion"]
    for action in ("check", "set"):
        status, out, err = ctl(capsys, "policy", action, str(bad), "--bus", dbus_session)
        assert (status, out) == (2, ""), action
        assert one_error_line(err).startswith(f"edgeoffloadctl: {bad}:{BAD_LINE}"), action
    assert in_force.read_bytes() == text and dbus_client.properties()["PolicyVersion"] == version
    (two := tmp_path / "mine" / "two.yaml").write_text("version: 1\nobjective: fastest\nnever_offload: 3\n")
    status, out, err = ctl(capsys, "policy", "set", str(two), "--bus", dbus_session)
    assert status == 2 and err.splitlines() == [  # one line per problem, all of them
        f"edgeoffloadctl: {two}:2: objective: must be one of: latency, energy, edp; got string 'fastest'",
        f"edgeoffloadctl: {two}:3: never_offload: expected a list, got integer 3"]
    missing = tmp_path / "mine" / "missing.yaml"
    status, out, err = ctl(capsys, "policy", "set", str(missing), "--bus", dbus_session)
    assert status == 2
    one_error_line(err, f"edgeoffloadctl: {missing}:1: (file): cannot read the file: No such file or directory")
    for action in ("set", "check"):
        status, out, err = ctl(capsys, "policy", action, "--bus", dbus_session)
        assert (status, out) == (2, "")
        one_error_line(err, f"edgeoffloadctl: error: policy {action} needs a FILE")
    assert in_force.read_bytes() == text and dbus_client.properties()["PolicyVersion"] == version


def test_policy_set_without_a_daemon_exits_1_after_checking_the_file(dbus_session, tmp_path, capsys):
    good, bad = policy_files(tmp_path)
    status, out, err = ctl(capsys, "policy", "set", str(good), "--bus", dbus_session)
    assert (status, out) == (1, "")
    one_error_line(err, "edgeoffloadctl: error: edgeoffloadd is not running on the ")
    status, out, err = ctl(capsys, "policy", "set", str(bad), "--bus", dbus_session)
    assert status == 2 and f"{bad}:{BAD_LINE}" in one_error_line(err)  # the file is the problem first


def test_reload_reports_restarts_and_a_rejected_policy(dbus_service, dbus_session, dbus_client, tmp_path, capsys):
    dbus_service()
    digest, config_file, policy_file = dbus_client.properties()["PolicyVersion"], tmp_path / "edgeoffloadd.yaml", \
        tmp_path / "policy.yaml"
    status, out, err = ctl(capsys, "reload", "--bus", dbus_session)
    assert (status, err, out) == (0, "", f"policy {digest} in force\n")
    config = yaml.safe_load(config_file.read_text())
    config["profiling"]["runs"] = 20
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    status, out, err = ctl(capsys, "reload", "--bus", dbus_session)
    assert (status, err, out) == (0, "", f"policy {digest} in force; restart to apply changes in: profiling\n")
    status, out, err = ctl(capsys, "reload", "--json", "--bus", dbus_session)
    assert (status, json.loads(out)) == (0, {"policy_digest": digest, "restart_needed": ["profiling"]})
    original = policy_file.read_text()
    policy_file.write_text(BAD)
    status, out, err = ctl(capsys, "reload", "--bus", dbus_session)
    assert (status, out) == (2, "")
    one_error_line(err, "edgeoffloadctl: error: PolicyInvalid: ", "the previous policy stays in force",
                   f"{policy_file}:{BAD_LINE}")
    status, out, err = ctl(capsys, "status", "--bus", dbus_session)  # the daemon says so too, and keeps going
    shown = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines())
    assert (status, err, shown["policy"]) == (0, "", f"{digest} (objective latency)")
    assert f"{policy_file}:{BAD_LINE}" in shown["policy error"]
    policy_file.write_text(original)  # the policy is read first: a good one, then a bad config
    config_file.write_text(config_file.read_text().replace("runs: 20", "runs: 0"))
    status, out, err = ctl(capsys, "reload", "--bus", dbus_session)
    assert (status, out) == (2, "")
    one_error_line(err, "edgeoffloadctl: error: ConfigInvalid: ",
                   f"{config_file}:", "profiling.runs: must be between 1 and 1000000, got 0")


def test_watch_prints_signals_until_count(dbus_service, dbus_session, dbus_client):
    dbus_service()
    proc = subprocess.Popen([ctl_script(), "watch", "--count", "3", "--bus", dbus_session],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_subscriber(dbus_session, proc.pid)
        digest = dbus_client.call("SetPolicy", GOOD)  # PolicyChanged + PropertiesChanged
        dbus_client.call("Infer", "tiny_16", bytes(768), SHAPE, "uint8")  # Decision
        out, err = proc.communicate(timeout=60)  # the third signal ends it
    finally:
        proc.kill()
        proc.communicate()
    assert (proc.returncode, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 3 and sorted(line.split()[1] for line in lines) == [
        "Decision", "PolicyChanged", "PropertiesChanged"], out
    assert f"PolicyChanged              digest={digest} objective=energy" in out
    assert f"PolicyVersion={digest} Objective=energy" in out
    (decision,) = [line for line in lines if " Decision " in line]
    assert "model=tiny_16 target=cpu1 latency_ms=" in decision and decision.endswith(" fallback=no dropped=0")


def test_watch_json_for_a_while_on_the_bus_from_the_environment(dbus_service, dbus_session, dbus_client):
    dbus_service()
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    proc = subprocess.Popen([ctl_script(), "watch", "--json", "--for", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**env, "EDGEOFFLOAD_BUS": dbus_session})
    try:
        wait_for_subscriber(dbus_session, proc.pid)
        digest = dbus_client.call("SetPolicy", GOOD)
        dbus_client.call("Infer", "tiny_q_16", bytes(768), SHAPE, "uint8")
        out, err = proc.communicate(timeout=60)  # --for 2: it stops by itself
    finally:
        proc.kill()
        proc.communicate()
    assert (proc.returncode, err) == (0, "")
    events = [json.loads(line) for line in out.splitlines()]
    assert all(set(e) >= {"signal", "unix_s"} for e in events)
    by_name = {e.pop("signal"): e for e in events}
    assert set(by_name) == {"PolicyChanged", "PropertiesChanged", "Decision"}
    assert {k: by_name["PolicyChanged"][k] for k in ("digest", "objective")} == {"digest": digest,
                                                                               "objective": "energy"}
    decision = by_name["Decision"]
    assert (decision["model"], decision["target"], decision["fallback"], decision["dropped"]) == (
        "tiny_q_16", "cpu1", False, 0)
    assert decision["latency_ms"] > 0 and decision["energy_mj"] > 0


def test_watch_in_process_stops_after_count(dbus_service, dbus_session, dbus_client, capsys):
    dbus_service()
    stop = threading.Event()

    def keep_inferring() -> None:  # until the watch has seen enough, however late it subscribed
        while not stop.wait(0.05):
            dbus_client.call("Infer", "tiny_16", bytes(768), SHAPE, "uint8")

    worker = threading.Thread(target=keep_inferring, daemon=True)
    worker.start()
    try:
        status, out, err = ctl(capsys, "watch", "--json", "--count", "2", "--for", "60", "--bus", dbus_session)
    finally:
        stop.set()
        worker.join(30)
    assert (status, err) == (0, "")
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["signal"], e["model"], e["target"]) for e in events] == [("Decision", "tiny_16", "cpu1")] * 2


def test_console_script_status_infer_and_policy(dbus_service, dbus_session, tiny_models, tmp_path):
    dbus_service()
    proc = script("status", "--bus", dbus_session)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert "state     degraded" in proc.stdout and "degraded  target npu: delegate " in proc.stdout
    img = np.random.default_rng(9).integers(0, 256, (20, 12, 3), dtype=np.uint8)
    (ppm := tmp_path / "in.ppm").write_bytes(b"P6 12 20 255\n" + img.tobytes())
    ref = run_directly(tiny_models["float"], load_tensor(ppm, tuple(SHAPE), np.dtype("uint8")))[0]
    proc = script("infer", "tiny_16", str(ppm), "--top", "1", "--bus", dbus_session)
    assert (proc.returncode, proc.stderr) == (0, "")
    first, header, top = proc.stdout.splitlines()
    assert first.startswith("tiny_16 ran on cpu1: ") and header.split() == ["CLASS", "SCORE"]
    assert top.split() == [str(int(np.argmax(ref))), f"{ref.max():.3f}"]
    good, bad = policy_files(tmp_path)
    proc = script("policy", "set", str(good), "--bus", dbus_session)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"policy from {good} applied (digest {load_policy(good).digest})\n"
    assert (tmp_path / "policy.yaml").read_text() == GOOD
    proc = script("policy", "set", str(bad), "--bus", dbus_session)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert one_error_line(proc.stderr).startswith(f"edgeoffloadctl: {bad}:{BAD_LINE}")
    proc = script("infer", "nope", str(ppm), "--bus", dbus_session)
    assert proc.returncode == 2 and "unknown model 'nope'" in one_error_line(proc.stderr)


def test_console_script_without_a_daemon_or_a_bus(dbus_session, tmp_path):
    proc = script("status", env={"EDGEOFFLOAD_BUS": dbus_session})
    assert (proc.returncode, proc.stdout) == (1, "")
    one_error_line(proc.stderr, f"edgeoffloadd is not running on the {dbus_session} bus")
    proc = script("watch", "--bus", f"unix:path={tmp_path / 'gone'}")
    assert (proc.returncode, proc.stdout) == (1, "")
    one_error_line(proc.stderr, f"edgeoffloadctl: error: cannot connect to the unix:path={tmp_path / 'gone'} bus")
    proc = script("decide")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(
        "edgeoffloadctl decide: error: the following arguments are required: model")
