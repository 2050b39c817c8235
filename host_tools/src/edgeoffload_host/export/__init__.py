"""Export of built models for other servers: a Triton model repository (`edgeoffload-host export-triton`).

Importing this package imports neither TensorFlow nor the TFLite runtime; `--format savedmodel` imports TensorFlow.
"""

from edgeoffload_host.export.command import ExportTritonCommand

__all__ = ["ExportTritonCommand"]
