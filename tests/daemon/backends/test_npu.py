"""NpuBackend: the delegate is checked and every model probed in a child before anything runs in-process.

The delegate is a fake compiled from tests/fixtures/delegates/fake_delegate.c; the models are real.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from edgeoffload.backends.modelfile import load_model_file
from edgeoffload.backends.npu import NpuBackend
from edgeoffload.backends.npu_probe import NpuProbeError
from edgeoffload.backends.tflite import TfliteSession
from edgeoffload.errors import BackendError


@dataclass
class Target:
    """Stands in for the config dataclass: only the attributes NpuBackend reads."""

    delegate: str
    delegate_options: dict[str, str] = field(default_factory=dict)
    name: str = "npu"
    threads: int = 2


@pytest.fixture(autouse=True)
def _restore_cache_environment(monkeypatch):
    """open() sets the VX cache variables process-wide: put them back after each test."""
    monkeypatch.delenv("VIV_VX_ENABLE_CACHE_GRAPH_BINARY", raising=False)
    monkeypatch.delenv("VIV_VX_CACHE_BINARY_GRAPH_DIR", raising=False)


def _backend(delegate: Path, tmp_path: Path | None = None, *, timeout_s: float = 60.0, **options: str
             ) -> NpuBackend:
    cache = tmp_path / "npu-cache" if tmp_path is not None else None
    return NpuBackend(Target(delegate=str(delegate), delegate_options=options), cache_dir=cache,
                      check_timeout_s=timeout_s, probe_timeout_s=timeout_s, term_grace_s=0.5)


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 1, 16, 16, 3), dtype=np.uint8)


def test_a_working_delegate_opens_after_its_check_in_a_child(fake_delegate, tmp_path, no_leftover_children):
    npu = _backend(fake_delegate, tmp_path)
    npu.open()
    assert (npu.available, npu.unavailable_reason) == (True, None)
    assert npu.runtime_version.startswith("ai_edge_litert ")
    assert os.environ["VIV_VX_CACHE_BINARY_GRAPH_DIR"] == str(tmp_path / "npu-cache")


@pytest.mark.parametrize(("options", "reason"), [
    ({"create": "hang"}, r"NPU delegate check of {d} hung for 1 s in load delegate; target npu disabled: check "
                         r"the delegate {d} and its delegate_options"),
    ({"create": "segv"}, r"NPU delegate check of {d} crashed with SIGSEGV in load delegate; target npu disabled"),
    ({"create": "abort"}, r"NPU delegate check of {d} crashed with SIGABRT in load delegate; target npu disabled"),
    ({"create": "refuse"}, r"delegate {d} failed to load: Failed to load delegate from {d} fake delegate: "
                           r"refused on purpose \(create=refuse\)$"),
])
def test_a_delegate_that_hangs_crashes_or_refuses_at_load_leaves_the_target_unavailable(
        fake_delegate, options, reason, no_leftover_children):
    npu = _backend(fake_delegate, timeout_s=1.0, **options)
    npu.open()  # in-process this would hang or kill the test run
    assert not npu.available
    assert "\n" not in npu.unavailable_reason
    assert re.match(reason.format(d=fake_delegate), npu.unavailable_reason), npu.unavailable_reason


def test_probe_measures_the_model_and_load_then_reuses_that_probe(fake_delegate, tiny_models, tmp_path,
                                                                 no_leftover_children):
    npu = _backend(fake_delegate, tmp_path)
    npu.open()
    model = load_model_file(tiny_models["q"])
    assert npu.probed(model) is None
    result = npu.probe(model, warmup_runs=1, runs=4)
    assert (result.latency.n, result.warmup.n, result.target, result.threads) == (4, 1, "npu", 2)
    assert result.delegation.status == "none" and result.delegation.model_ops == 6
    assert result.cache_env["VIV_VX_CACHE_BINARY_GRAPH_DIR"] == str(tmp_path / "npu-cache")
    npu.load(model)
    assert npu.probed(model) is result  # no second probe
    reference = TfliteSession(tiny_models["q"].read_bytes(), threads=1, name="ref")
    for x in _images(3):  # the fake takes no node: the in-process session runs on the CPU kernels
        np.testing.assert_array_equal(npu.run("tiny_q_16", x), reference.run(x))
    npu.close()
    assert npu.probed(model) is None and not npu.loaded("tiny_q_16")


def test_load_of_a_model_never_probed_probes_it_briefly_first(fake_delegate, tiny_models, no_leftover_children):
    npu = _backend(fake_delegate, claim="all")
    npu.open()
    model = load_model_file(tiny_models["float"])  # a float model on the NPU: measured like any other
    npu.load(model)
    probe = npu.probed(model)
    assert (probe.warmup.n, probe.latency.n, probe.delegation.status) == (0, 1, "full")
    assert npu.loaded("tiny_16")


@pytest.mark.parametrize(("options", "what"), [
    ({"claim": "all", "invoke": "hang"}, r"hung for 1 s in first invoke \(graph compile\)"),
    ({"claim": "all", "invoke": "segv"}, r"crashed with SIGSEGV in first invoke \(graph compile\)"),
    ({"prepare": "abort"}, r"crashed with SIGABRT in build interpreter \(the delegate's prepare\)"),
])
def test_a_model_whose_probe_hangs_or_crashes_is_never_loaded_in_process(fake_delegate, tiny_models, options,
                                                                       what, no_leftover_children):
    npu = _backend(fake_delegate, timeout_s=1.0, **options)
    npu.open()
    assert npu.available
    model = load_model_file(tiny_models["q"])
    with pytest.raises(NpuProbeError, match=rf"^NPU probe of tiny_q_16 {what}; target npu disabled"):
        npu.load(model)
    assert not npu.loaded("tiny_q_16") and npu.probed(model) is None
    assert not npu.available and npu.unavailable_reason.startswith(f"NPU probe of tiny_q_16 {what.split(' ')[0]}")
    with pytest.raises(BackendError, match=r"^target npu: cannot probe model tiny_q_16: target unavailable "
                                           r"\(NPU probe of tiny_q_16 "):
        npu.probe(model)


def test_a_model_that_fails_on_its_own_leaves_the_target_available(fake_delegate, tiny_models, tmp_path):
    npu = _backend(fake_delegate)
    npu.open()
    path = tmp_path / "tiny_q_16.tflite"
    shutil.copyfile(tiny_models["q"], path)
    model = load_model_file(path)
    path.write_bytes(b"")  # changed after it was verified
    with pytest.raises(NpuProbeError, match=rf"changed since it was verified .*: reload the model$"):
        npu.load(model)
    assert npu.available and not npu.loaded("tiny_q_16")
    npu.load(load_model_file(tiny_models["q"]))
    assert npu.loaded("tiny_q_16")


def test_probe_of_a_target_not_opened_says_so(fake_delegate, tiny_models):
    with pytest.raises(BackendError, match=r"^target npu: cannot probe model tiny_16: target unavailable "
                                           r"\(not opened\)$"):
        _backend(fake_delegate).probe(load_model_file(tiny_models["float"]))


@pytest.mark.npu
def test_the_real_vx_delegate_takes_the_int8_model(tiny_models, tmp_path):
    npu = NpuBackend(Target(delegate="/usr/lib/libvx_delegate.so"), cache_dir=tmp_path / "npu-cache")
    npu.open()
    assert npu.available, npu.unavailable_reason
    result = npu.probe(load_model_file(tiny_models["q"]), warmup_runs=2, runs=20)
    assert result.delegation.status in ("full", "partial"), result.delegation
    assert result.first_invoke_ms > result.latency.p50_ms
    assert any((tmp_path / "npu-cache").iterdir())  # the compiled graph was cached
