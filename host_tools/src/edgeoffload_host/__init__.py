"""edgeoffload-host: model builder, offload endpoint and reports (TensorFlow lives only here)."""

__version__ = "0.1.0"
