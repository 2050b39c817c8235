"""The one error `edgeoffload-host energy` raises on purpose (the CLI prints it as one line, exit 2)."""

from __future__ import annotations

from edgeoffload.errors import EdgeOffloadError


class EnergyError(EdgeOffloadError):
    """A recording or decision log cannot be used, they do not line up, or an output cannot be written."""
