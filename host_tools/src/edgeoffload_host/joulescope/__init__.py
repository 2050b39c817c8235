"""`edgeoffload-host joulescope`: a Joulescope's statistics and GPI-marked windows on MQTT for edgeoffloadd.

Importing this package does not import joulescope; `instrument` does, when a command opens one.
"""

from edgeoffload_host.joulescope.command import JoulescopeCommand

__all__ = ["JoulescopeCommand"]
