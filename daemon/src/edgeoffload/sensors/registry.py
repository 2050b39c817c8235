"""The one table of power sources: config `power.type` -> the class that reads it."""

from __future__ import annotations

from edgeoffload.sensors.modelled import ModelledPower

POWER_SOURCES = {
    "modelled": ModelledPower,
}


def create_power_source(config):
    """Build the power source named by `config.type` (validated by the config loader)."""
    return POWER_SOURCES[config.type](config)
