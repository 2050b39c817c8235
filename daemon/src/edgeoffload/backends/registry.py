"""The one table of local backends: config `targets[].type` -> the class that runs it."""

from __future__ import annotations

from edgeoffload.backends.npu import NpuBackend
from edgeoffload.backends.tflite import CpuBackend

LOCAL_BACKENDS = {
    "tflite_cpu": CpuBackend,
    "tflite_npu": NpuBackend,
}


def create_local_backend(target_config, **kwargs):
    """Build the backend named by `target_config.type` (validated by the config loader)."""
    return LOCAL_BACKENDS[target_config.type](target_config, **kwargs)


def target_signature(target_config) -> str:
    """What about a target changes its speed: part of the profile key."""
    if target_config.type == "tflite_npu":
        opts = ",".join(f"{k}={v}" for k, v in sorted(target_config.delegate_options.items()))
        return f"{target_config.name}:tflite_npu:threads={target_config.threads}:{target_config.delegate}:{opts}"
    return f"{target_config.name}:{target_config.type}:threads={target_config.threads}"
