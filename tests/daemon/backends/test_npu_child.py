"""The NPU probe child on real TFLite interpreters and the tiny models, with a fake delegate compiled from C
(tests/fixtures/delegates/fake_delegate.c) that hangs, crashes, refuses or works as its options say."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time

import pytest

from edgeoffload.backends.modelfile import load_model_file
from edgeoffload.backends.npu import check_delegate, probe_npu
from edgeoffload.backends.npu_child import delegation_of
from edgeoffload.backends.npu_probe import NpuProbeError, child_environment, run_child
from edgeoffload.errors import BackendError

FAST = {"timeout_s": 1.0, "term_grace_s": 0.5}  # a hang is declared after 1 s in a phase


@pytest.fixture
def q_model(tiny_models):
    return load_model_file(tiny_models["q"])


# --- delegation, from the interpreter's nodes -----------------------------------------------------------

OPS = [("QUANTIZE", [0], [5]), ("CONV_2D", [5, 4, 3], [6]), ("FULLY_CONNECTED", [6, 2, -1], [7]),
       ("QUANTIZE", [7], [8])]


def test_one_partition_fed_by_the_graph_input_and_constants_is_full():
    d = delegation_of(OPS + [("DELEGATE", [0, 2, 3, 4], [8])], [0], [8])
    assert d == {"status": "full", "partitions": 1, "model_ops": 4, "detail": "all 4 ops in one delegate partition"}


@pytest.mark.parametrize(("delegates", "partitions"), [
    ([("DELEGATE", [5, 2, 3, 4], [8])], 1),  # fed by the first QUANTIZE, left on the CPU
    ([("DELEGATE", [0, 3, 4], [6])], 1),  # does not produce the graph output
    ([("DELEGATE", [0], [5]), ("DELEGATE", [5, 2, 3, 4], [8])], 2),
])
def test_partitions_that_leave_ops_on_the_cpu_are_partial(delegates, partitions):
    d = delegation_of(OPS + delegates, [0], [8])
    assert (d["status"], d["partitions"], d["model_ops"]) == ("partial", partitions, 4)
    assert d["detail"] == f"{partitions} delegate partition(s); the other ops of 4 run on the CPU"


def test_no_partition_is_none():
    assert delegation_of(OPS, [0], [8]) == {"status": "none", "partitions": 0, "model_ops": 4,
                                            "detail": "no op of 4 taken: all run on the CPU"}


# --- the child on its own --------------------------------------------------------------------------------

def _run_child_module(request: dict | str, env: dict[str, str]) -> subprocess.CompletedProcess:
    text = request if isinstance(request, str) else json.dumps(request)
    return subprocess.run([sys.executable, "-m", "edgeoffload.backends.npu_child"], input=text, env=env,
                          capture_output=True, text=True, timeout=60)


def test_child_reports_each_phase_then_the_result_and_keeps_the_delegates_prints_out_of_it(fake_delegate, q_model):
    request = {"mode": "probe", "parent_pid": os.getpid(), "delegate": str(fake_delegate),
               "options": {"stdout": "CHATTER FROM THE DELEGATE"}, "model": q_model.name,
               "model_path": str(q_model.path), "sha256": q_model.sha256, "threads": 1, "warmup_runs": 2,
               "runs": 4, "duration_s": None}
    done = _run_child_module(request, child_environment(None))
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert [m.get("phase") for m in messages[:-1]] == ["load_delegate", "build_interpreter", "first_invoke",
                                                       "profiling"]
    assert messages[3]["first_invoke_ms"] == messages[-1]["result"]["first_invoke_ms"]
    result = messages[-1]["result"]
    assert result["latency"]["n"] == 4 and result["warmup"]["n"] == 2
    assert result["runtime_version"].startswith("ai_edge_litert ")
    assert "CHATTER FROM THE DELEGATE" in done.stderr and "CHATTER" not in done.stdout


@pytest.mark.parametrize(("request_text", "message"), [
    ("not json at all", "unreadable request: Expecting value: line 1 column 1 (char 0)"),
    ('{"mode": "fly"}', "unreadable request: expected an object with mode check or probe"),
    ("[1, 2]", "unreadable request: expected an object with mode check or probe"),
])
def test_child_answers_an_unreadable_request_with_an_error_line(request_text, message):
    done = _run_child_module(request_text, child_environment(None))
    assert done.returncode == 2
    assert json.loads(done.stdout) == {"error": message, "kind": "internal"}


# --- probe_npu: a working delegate -----------------------------------------------------------------------

@pytest.mark.parametrize(("which", "claim", "status", "partitions"), [
    ("q", "none", "none", 0), ("q", "all", "full", 1), ("q", "first", "partial", 1),
    ("float", "none", "none", 0), ("float", "all", "full", 1),  # a float model is measured like any other
])
def test_probe_measures_a_real_model_and_reports_what_the_delegate_took(fake_delegate, tiny_models, which, claim,
                                                                         status, partitions, no_leftover_children):
    model = load_model_file(tiny_models[which])
    result = probe_npu(model, delegate=fake_delegate, options={"claim": claim}, threads=2, warmup_runs=2, runs=5)
    assert (result.delegation.status, result.delegation.partitions) == (status, partitions)
    assert result.delegation.model_ops == (6 if which == "q" else 5)
    assert result.latency.n == 5 and result.warmup.n == 2 and result.latency.min_ms > 0
    assert (result.model, result.sha256, result.threads, result.target) == (model.name, model.sha256, 2, "npu")
    assert result.first_invoke_ms > 0 and result.runtime_version.startswith("ai_edge_litert ")
    assert result.to_dict()["delegation"]["status"] == status


def test_the_first_invoke_is_timed_apart_from_the_runs(fake_delegate, q_model):
    result = probe_npu(q_model, delegate=fake_delegate, options={"claim": "all", "compile_ms": "300"}, runs=3)
    assert result.first_invoke_ms >= 300
    assert result.latency.max_ms < 100 and result.warmup.first_ms < 100


def test_duration_mode_runs_for_the_given_time(fake_delegate, q_model):
    result = probe_npu(q_model, delegate=fake_delegate, warmup_runs=1, runs=1, duration_s=0.2)
    assert result.warmup.n == 1 and result.latency.n > 1
    assert result.latency.mean_ms * result.latency.n <= 200 + 50


def test_the_graph_cache_is_set_in_the_childs_environment(fake_delegate, q_model, tmp_path, monkeypatch):
    monkeypatch.delenv("VIV_VX_ENABLE_CACHE_GRAPH_BINARY", raising=False)
    monkeypatch.delenv("VIV_VX_CACHE_BINARY_GRAPH_DIR", raising=False)
    result = probe_npu(q_model, delegate=fake_delegate, cache_dir=tmp_path / "npu-cache", runs=1)
    assert result.cache_env == {"VIV_VX_ENABLE_CACHE_GRAPH_BINARY": "1",
                                "VIV_VX_CACHE_BINARY_GRAPH_DIR": str(tmp_path / "npu-cache")}
    assert probe_npu(q_model, delegate=fake_delegate, runs=1).cache_env == {}


def test_check_delegate_loads_it_in_a_child(fake_delegate, no_leftover_children):
    assert check_delegate(fake_delegate).startswith("ai_edge_litert ")


# --- probe_npu: hangs, crashes, refusals ---------------------------------------------------------------------

@pytest.mark.parametrize(("options", "phase", "label"), [
    ({"create": "hang"}, "load_delegate", "load delegate"),
    ({"prepare": "hang"}, "build_interpreter", r"build interpreter \(the delegate's prepare\)"),
    ({"claim": "all", "invoke": "hang"}, "first_invoke", r"first invoke \(graph compile\)"),
    ({"claim": "all", "invoke": "hang", "invoke_at": "4"}, "profiling", "profiling"),
    ({"create": "hang_ignoring_term"}, "load_delegate", "load delegate"),  # SIGTERM ignored: SIGKILL
])
def test_a_hang_is_killed_and_named_by_its_phase(fake_delegate, q_model, options, phase, label,
                                                 no_leftover_children):
    t0 = time.monotonic()
    with pytest.raises(NpuProbeError, match=rf"^NPU probe of tiny_q_16 hung for 1 s in {label}; target npu "
                                            rf"disabled: check the delegate {fake_delegate} and its "
                                            r"delegate_options, the NPU driver \(galcore\)") as info:
        probe_npu(q_model, delegate=fake_delegate, options=options, runs=5, **FAST)
    assert (info.value.phase, info.value.disables_target, info.value.detail) == (phase, True, None)
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize(("options", "signal_name", "label"), [
    ({"create": "segv"}, "SIGSEGV", "load delegate"),
    ({"create": "abort"}, "SIGABRT", "load delegate"),
    ({"prepare": "segv"}, "SIGSEGV", r"build interpreter \(the delegate's prepare\)"),
    ({"claim": "all", "invoke": "segv"}, "SIGSEGV", r"first invoke \(graph compile\)"),
    ({"claim": "all", "invoke": "abort", "invoke_at": "3"}, "SIGABRT", "profiling"),
])
def test_a_crash_names_the_signal_and_the_phase_and_logs_the_childs_stderr(fake_delegate, q_model, options,
                                                                          signal_name, label, caplog,
                                                                          no_leftover_children):
    caplog.set_level(logging.WARNING, logger="edgeoffload.backends.npu_probe")
    with pytest.raises(NpuProbeError, match=rf"^NPU probe of tiny_q_16 crashed with {signal_name} in {label}; "
                                            "target npu disabled: check the delegate") as info:
        probe_npu(q_model, delegate=fake_delegate, options=options, runs=5, **FAST)
    assert info.value.disables_target
    logged = caplog.text
    assert "NPU probe of tiny_q_16: last lines of the child's stderr:" in logged
    assert "Fatal Python error" in logged


def test_a_refusing_delegate_disables_the_target_with_its_own_message(fake_delegate, q_model, no_leftover_children):
    with pytest.raises(NpuProbeError, match=r"^NPU probe of tiny_q_16 failed in load delegate: Failed to load "
                                            rf"delegate from {fake_delegate} fake delegate: refused on purpose "
                                            r"\(create=refuse\); target npu disabled") as info:
        probe_npu(q_model, delegate=fake_delegate, options={"create": "refuse"}, **FAST)
    assert info.value.disables_target and info.value.phase == "load_delegate"
    assert info.value.detail.endswith("refused on purpose (create=refuse)")


def test_a_library_that_is_not_a_delegate_is_named(tmp_path, no_leftover_children):
    text = tmp_path / "libvx_delegate.so"
    text.write_text("not a shared library\n")
    with pytest.raises(NpuProbeError, match=rf"^NPU delegate check of {text} failed in load delegate: not a "
                                            r"loadable shared library \(.*\); target npu disabled") as info:
        check_delegate(text, timeout_s=5)
    assert info.value.disables_target and info.value.detail.startswith("not a loadable shared library (")


def test_a_model_changed_after_verification_fails_only_that_model(fake_delegate, tiny_models, tmp_path):
    path = tmp_path / "tiny_q_16.tflite"
    shutil.copyfile(tiny_models["q"], path)
    model = load_model_file(path)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(NpuProbeError, match=rf"^NPU probe of tiny_q_16 failed in build interpreter \(the "
                                            rf"delegate's prepare\): model {path} changed since it was verified "
                                            rf"\(sha256 [0-9a-f]{{64}}, expected {model.sha256}\): reload the "
                                            "model$") as info:
        probe_npu(model, delegate=fake_delegate, **FAST)
    assert not info.value.disables_target


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timeout_s": float("nan")}, "timeout_s must be a finite number of seconds > 0, got nan"),
    ({"timeout_s": 0}, "timeout_s must be a finite number of seconds > 0, got 0"),
    ({"duration_s": float("inf")}, "duration_s must be a finite number of seconds > 0, got inf"),
    ({"runs": 0}, "runs must be an integer >= 1, got 0"),
    ({"warmup_runs": -1}, "warmup_runs must be an integer >= 0, got -1"),
    ({"warmup_runs": 2.5}, "warmup_runs must be an integer >= 0, got 2.5"),
])
def test_bad_probe_settings_are_named(fake_delegate, q_model, kwargs, message, no_leftover_children):
    with pytest.raises(BackendError, match=rf"^NPU probe of tiny_q_16: {message}$"):
        probe_npu(q_model, delegate=fake_delegate, **kwargs)


# --- run_child: a child that misbehaves before it even starts -----------------------------------------------

@pytest.mark.parametrize(("startup", "message"), [
    ("import time\ntime.sleep(60)\n", r"hung for 1 s in start \(Python and the TFLite runtime importing\)"),
    ("import os\nos._exit(7)\n", r"exited with status 7 in start \(Python and the TFLite runtime importing\)"),
    ("import os\nos.write(1, b'garbage\\n')\n", r"failed in start \(Python and the TFLite runtime importing\): "
                                                 r"the child wrote an unreadable protocol line b'garbage' \("),
])
def test_a_child_that_misbehaves_at_startup_is_named_and_reaped(tmp_path, startup, message, no_leftover_children):
    (tmp_path / "sitecustomize.py").write_text(startup)  # runs in the child before its first line
    env = child_environment(None)
    env["PYTHONPATH"] = os.pathsep.join((str(tmp_path), env.get("PYTHONPATH", "")))
    with pytest.raises(NpuProbeError, match=rf"^probe of X {message}.*target npu disabled: check HINT$") as info:
        run_child({"mode": "check", "delegate": "/nonexistent"}, what="probe of X", target="npu", hint="HINT",
                  limit_s=lambda phase, progress: 1.0, env=env, term_grace_s=0.5)
    assert (info.value.phase, info.value.disables_target) == ("start", True)
