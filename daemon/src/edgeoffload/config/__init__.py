"""Daemon config and policy: YAML loading with `file:line: key.path: message` problems, all at once.

    config = load_config("/etc/edgeoffload/edgeoffloadd.yaml")   # DaemonConfig, or ConfigError
    policy = load_policy(config.policy_file)                      # Policy, or ConfigError
"""

from .check import check_file, check_files
from .daemon import (
    DEFAULT_TARGETS, DaemonConfig, DbusConfig, EndpointConfig, LoggingConfig, ModelConfig, MqttConfig, ProfilingConfig,
    TargetConfig, WorkloadConfig, load_config,
)
from .policy import ModelPolicy, Policy, load_policy, parse_policy_text, policy_warnings
from .power import POWER_TYPES, ModelledPowerConfig, PowerConfig

__all__ = [
    "DEFAULT_TARGETS", "POWER_TYPES", "DaemonConfig", "DbusConfig", "EndpointConfig", "LoggingConfig", "ModelConfig",
    "ModelPolicy", "ModelledPowerConfig", "MqttConfig", "Policy", "PowerConfig", "ProfilingConfig",
    "TargetConfig", "WorkloadConfig", "check_file", "check_files", "load_config", "load_policy",
    "parse_policy_text", "policy_warnings",
]
