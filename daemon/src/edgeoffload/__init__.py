"""edgeoffload: decide per inference where a neural network runs, and prove it with measurements."""

__version__ = "0.1.0"
