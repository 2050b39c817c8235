"""No local target can run a model (no TFLite runtime, no NPU, as in the QEMU image): the daemon says so
and serves it by offloading, with the input tensor described by the model's manifest."""

import hashlib
import json

import numpy as np
import pytest
from loop_helpers import model_dir, write_config

from edgeoffload.config import load_config
from edgeoffload.errors import BackendError
from edgeoffload.service import Service
from edgeoffload_host.serve.http import start_server

NO_LOCAL = [{"name": "npu", "type": "tflite_npu", "delegate": "/nonexistent/libvx_delegate.so"}]


def write_manifest(model, inputs):
    data = model.read_bytes()
    manifest = {"schema": 1, "name": model.stem, "file": model.name, "sha256": hashlib.sha256(data).hexdigest(),
                "size_bytes": len(data), "gzip_size_bytes": len(data), "format": "tflite", "parameters": 1,
                "depth": 1, "source": {}, "method": [], "seed": 0, "versions": {},
                "tensors": {"inputs": inputs, "outputs": []}, "evaluation": None,
                "created_utc": "2026-11-23T00:00:00Z"}
    model.with_name(model.name + ".manifest.json").write_text(json.dumps(manifest))


UINT8_INPUT = [{"name": "x", "shape": [1, 16, 16, 3], "dtype": "uint8", "quantization": None}]


@pytest.fixture
def models(tmp_path, tiny_models):
    return model_dir(tmp_path, tiny_models)


def start(tmp_path, models, url):
    svc = Service(load_config(write_config(tmp_path, models, endpoint_url=url, broker=None, targets=NO_LOCAL)))
    svc.start()
    return svc


def test_a_model_no_local_target_runs_is_offloaded(tmp_path, models):
    write_manifest(models / "tiny_16.tflite", UINT8_INPUT)
    server = start_server(models, port=0, workers=2, threads=1)
    svc = start(tmp_path, models, server.url)
    try:
        assert list(svc.executor.models) == ["tiny_16"]  # tiny_q_16 has no manifest: it cannot be served
        assert "runs offload-only" in svc.model_errors["tiny_16"]
        assert "cannot be offloaded: its manifest does not describe one input tensor" in svc.model_errors["tiny_q_16"]
        x = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        outcome = svc.infer("tiny_16", x)
        assert outcome.target == "offload" and not outcome.fallback
        assert outcome.output.shape == (1, 10)
        assert any("runs offload-only" in r for r in svc.degraded_reasons())
    finally:
        svc.stop()
        server.close()


def test_without_an_endpoint_such_a_model_is_not_served(tmp_path, models):
    write_manifest(models / "tiny_16.tflite", UINT8_INPUT)
    svc = Service(load_config(write_config(tmp_path, models, endpoint_url=None, broker=None, targets=NO_LOCAL)))
    svc.start()
    try:
        assert svc.executor.models == {}
        assert svc.model_errors["tiny_16"] == ("no local target could load it and it cannot be offloaded: "
                                               "no endpoint is configured")
    finally:
        svc.stop()


def test_an_unreachable_endpoint_is_a_clear_error_not_a_crash(tmp_path, models):
    from support import free_port

    write_manifest(models / "tiny_16.tflite", UINT8_INPUT)
    svc = start(tmp_path, models, f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(BackendError, match="no local target can run tiny_16 and offloading is not possible"):
            svc.infer("tiny_16", np.zeros((16, 16, 3), np.uint8))
    finally:
        svc.stop()
