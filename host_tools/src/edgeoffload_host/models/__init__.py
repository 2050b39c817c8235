"""The study's models: architectures (zoo), data, export to .tflite/.keras with manifests, the build command.

Importing this package does not import TensorFlow; building does.
"""

from edgeoffload_host.models.build import BuildOptions, build_models
from edgeoffload_host.models.command import BuildCommand

__all__ = ["BuildCommand", "BuildOptions", "build_models"]
