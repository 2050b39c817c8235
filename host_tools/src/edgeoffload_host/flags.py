"""Checks of command-line values shared by the host subcommands; errors start with the flag."""

from __future__ import annotations

from edgeoffload.errors import EdgeOffloadError


class UsageError(EdgeOffloadError):
    """A flag's value cannot be used; the message starts with the flag."""


def parse_integer(flag: str, text: str, low: int) -> int:
    """`text` as a whole number of at least `low`."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise UsageError(f"{flag}: {text!r} is not a whole number") from None
    if value < low:
        raise UsageError(f"{flag}: {value} is below the minimum {low}")
    return value
