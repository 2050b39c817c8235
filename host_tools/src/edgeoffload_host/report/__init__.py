"""Reports: the evaluation report (`edgeoffload-host report`) and the demo's latency plot.

Importing this package does not import matplotlib; the plotting modules do.
"""

from edgeoffload_host.report.command import ReportCommand

__all__ = ["ReportCommand"]
