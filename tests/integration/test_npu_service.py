"""The whole daemon with an NPU whose delegate misbehaves: a fake VX delegate compiled from C
(tests/fixtures/delegates/fake_delegate.c) on real TFLite interpreters and the tiny models.

A delegate that hangs or crashes at load or at a model's first invoke must not take the daemon with it:
the service starts in bounded time, says why the NPU is out, serves every model on the CPU with the same
answers, and leaves no probe child behind. A delegate that works gets its models probed and profiled.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fixtures.delegates.build import build_fake_delegate, child_pids  # noqa: E402
from loop_helpers import model_dir, write_config  # noqa: E402
from tinymodels import reference_scores  # noqa: E402

from edgeoffload.service import Service  # noqa: E402

PROBE_TIMEOUT_S = 1  # a phase that takes longer is a hang


@pytest.fixture(scope="module")
def fake_delegate(tmp_path_factory) -> Path:
    return build_fake_delegate(tmp_path_factory.mktemp("delegate"))


@pytest.fixture
def start_service(tmp_path, tiny_models, fake_delegate, monkeypatch, run_service):
    """start(**delegate_options) -> a started Service with cpu1 and an npu on the fake delegate; stopped after,
    and no child process may outlive it."""
    for name in ("VIV_VX_ENABLE_CACHE_GRAPH_BINARY", "VIV_VX_CACHE_BINARY_GRAPH_DIR"):
        monkeypatch.delenv(name, raising=False)  # the NPU target sets them process-wide
    before = child_pids()

    def start(**options: str) -> Service:
        targets = [{"name": "cpu1", "type": "tflite_cpu", "threads": 1},
                   {"name": "npu", "type": "tflite_npu", "delegate": str(fake_delegate), "delegate_options": options,
                    "probe_timeout_s": PROBE_TIMEOUT_S}]
        cfg = write_config(tmp_path, model_dir(tmp_path, tiny_models), endpoint_url=None, broker=None,
                           targets=targets)
        t0 = time.monotonic()
        svc = run_service(cfg)
        svc.start_s = time.monotonic() - t0
        return svc

    yield start
    run_service.stop_all()
    assert child_pids() - before == set(), "an NPU probe child outlived the service"


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)


def assert_serves_everything_on_the_cpu(svc: Service, tiny_models) -> None:
    for model, path in (("tiny_16", tiny_models["float"]), ("tiny_q_16", tiny_models["q"])):
        outcome = svc.infer(model, image())
        assert outcome.target == "cpu1", outcome
        np.testing.assert_allclose(outcome.output, reference_scores(path, image()), rtol=1e-6, atol=1e-7)
        assert svc.decide(model).target == "cpu1"


def npu_state(svc: Service) -> tuple[bool, str]:
    npu = next(t for t in svc.describe_targets() if t["name"] == "npu")
    return npu["available"], npu["reason"] or ""


@pytest.mark.parametrize(("options", "why"), [
    ({"create": "hang"}, "hung for 1 s in load delegate"),
    ({"create": "segv"}, "crashed with SIGSEGV in load delegate"),
])
def test_a_delegate_that_hangs_or_crashes_at_load(start_service, tiny_models, options, why):
    svc = start_service(**options)
    assert svc.state == "running" and svc.start_s < 60, svc.start_s
    available, reason = npu_state(svc)
    assert not available and why in reason, reason
    assert any(r.startswith("target npu: NPU delegate check of") and why in r for r in svc.degraded_reasons())
    assert_serves_everything_on_the_cpu(svc, tiny_models)
    assert {target for _, target in svc.profiles} == {"cpu1"}


@pytest.mark.parametrize(("options", "why"), [
    ({"claim": "all", "invoke": "hang"}, "hung for 1 s in first invoke (graph compile)"),
    ({"claim": "all", "invoke": "abort"}, "crashed with SIGABRT in first invoke (graph compile)"),
])
def test_a_delegate_that_hangs_or_crashes_in_a_models_first_invoke(start_service, tiny_models, options, why):
    svc = start_service(**options)
    assert svc.state == "running" and svc.start_s < 60, svc.start_s
    available, reason = npu_state(svc)
    assert not available and why in reason, reason
    probe_errors = {k: v for k, v in svc.model_errors.items() if k.endswith("@npu")}
    assert probe_errors and all(why in v for v in probe_errors.values()), svc.model_errors
    assert_serves_everything_on_the_cpu(svc, tiny_models)


def test_a_working_delegate_gets_its_models_probed_and_profiled(start_service, tiny_models):
    svc = start_service(claim="none")  # takes no node: the CPU kernels compute, so the answers are exact
    assert npu_state(svc) == (True, "")
    assert svc.model_errors == {}
    npu_profiles = {model: p for (model, target), p in svc.profiles.items() if target == "npu"}
    assert set(npu_profiles) == {"tiny_16", "tiny_q_16"}
    assert all(p.first_invoke_ms is not None and p.first_invoke_ms > 0 for p in npu_profiles.values())
    npu = svc.local["npu"]
    for model, path in (("tiny_16", tiny_models["float"]), ("tiny_q_16", tiny_models["q"])):
        assert npu.loaded(model)
        np.testing.assert_allclose(npu.run(model, image()), reference_scores(path, image()), rtol=1e-6, atol=1e-7)
