"""Start-up loading: the local targets opened, every configured model verified and loaded where it can run.

Nothing here gives up on the daemon for one bad model or target: the problem is logged and kept in
`errors` (by model name, or "model@target"), and the daemon runs degraded. A model no local target can
run is still served by offloading, with its input described by its manifest.
"""

from __future__ import annotations

import logging

import numpy as np

from edgeoffload.backends.modelfile import load_model_file
from edgeoffload.backends.registry import create_local_backend
from edgeoffload.engine.executor import ModelEntry
from edgeoffload.errors import EdgeOffloadError

log = logging.getLogger(__name__)


def open_local_targets(config) -> dict:
    """Every configured local target, opened; an unavailable one is kept (it says why) and logged."""
    cache = config.state_dir / "npu-cache"
    local = {}
    for tcfg in config.targets:
        kwargs = {"cache_dir": cache, "probe_timeout_s": tcfg.probe_timeout_s} if tcfg.type == "tflite_npu" else {}
        backend = create_local_backend(tcfg, **kwargs)
        backend.open()
        if not backend.available:
            log.warning("target %s unavailable: %s", tcfg.name, backend.unavailable_reason)
        local[tcfg.name] = backend
    return local


def load_models(config, local: dict, *, model_files: dict, errors: dict[str, str]) -> dict[str, ModelEntry]:
    """The models the daemon serves; each verified file goes into `model_files`, each problem into `errors`."""
    entries = {}
    for mcfg in config.models:
        try:
            mf = load_model_file(mcfg.file, manifest_path=mcfg.manifest, expected_sha256=mcfg.sha256)
        except EdgeOffloadError as exc:
            errors[mcfg.name] = str(exc)
            log.error("model %s not loaded: %s", mcfg.name, exc)
            continue
        model_files[mcfg.name] = mf
        spec = None
        for name, backend in local.items():
            if not backend.available:
                continue
            try:
                backend.load(mf, name=mcfg.name)
                spec = spec or backend.input_spec(mcfg.name)
            except EdgeOffloadError as exc:
                errors[f"{mcfg.name}@{name}"] = str(exc)
                log.error("model %s cannot run on %s: %s", mcfg.name, name, exc)
        if spec is not None:
            shape_dtype = (tuple(spec.shape), np.dtype(spec.dtype))
        else:
            shape_dtype = _offload_only(config, mcfg, mf, errors)
        if shape_dtype is None:
            continue
        entries[mcfg.name] = ModelEntry(mcfg.name, mf.sha256, mcfg.remote_name, *shape_dtype)
    return entries


def _offload_only(config, mcfg, mf, errors: dict[str, str]) -> tuple[tuple[int, ...], np.dtype] | None:
    """A model no local target can run is still served by offloading, with its input from the manifest."""
    inputs = mf.manifest.tensors.inputs if mf.manifest is not None else ()
    if not config.endpoints or len(inputs) != 1:
        why = "no endpoint is configured" if inputs else "its manifest does not describe one input tensor"
        errors.setdefault(mcfg.name, f"no local target could load it and it cannot be offloaded: {why}")
        return None
    errors.setdefault(mcfg.name, "no local target could load it: runs offload-only")
    log.warning("model %s: no local target can run it; offload-only (input %s %s from its manifest)",
                mcfg.name, list(inputs[0].shape), inputs[0].dtype)
    return tuple(inputs[0].shape), np.dtype(inputs[0].dtype)
