"""`edgeoffload-host energy`: energy per inference from a Joulescope recording (JLS) and the decision log.

Importing this package does not import pyjls or matplotlib; opening a recording and drawing the chart do.
"""

from edgeoffload_host.energy.command import EnergyCommand

__all__ = ["EnergyCommand"]
