"""The study's models: architectures (zoo) or a user's model (sources), data, fine-tuning (train), pruning
and clustering (compress), export to .tflite/.keras (export, artifacts) with manifests, the build command.

Importing this package does not import TensorFlow; building does.
"""

from edgeoffload_host.models.build import VARIANTS, BuildOptions, build_models
from edgeoffload_host.models.command import BuildCommand

__all__ = ["VARIANTS", "BuildCommand", "BuildOptions", "build_models"]
