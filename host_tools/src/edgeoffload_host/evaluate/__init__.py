"""``edgeoffload-host evaluate``: accuracy and latency of .tflite files on this machine.

Importing this package does not import TensorFlow (a folder dataset does, when one is used).
"""

from edgeoffload_host.evaluate.command import EvaluateCommand
from edgeoffload_host.evaluate.results import RESULTS_KIND, RESULTS_SCHEMA, read_results

__all__ = ["EvaluateCommand", "RESULTS_KIND", "RESULTS_SCHEMA", "read_results"]
